package acctest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/labtest"
)

// BenchmarkAgent measures the agent on the lab (make bench-agent):
//   - the cost of one sample of a host against the number of guests on it
//     (up to 500, paused: they cost memory, not CPU), through the driver
//     process as every sampler does, and libvirt's bulk stats alone in
//     this process, the baseline of the ratio;
//   - the CPU and memory of a `virtpool agent` process (and its driver)
//     sampling the 3 lab hosts every second, with 1 guest and with 500.
func BenchmarkAgent(b *testing.B) {
	needLab(b)
	const calls = 10
	h := theLab.Hosts[0]
	conn, err := lv.NewConnect(h.URI)
	if err != nil {
		b.Fatal(err)
	}
	// Domains started with AUTODESTROY go with this connection, whatever
	// happens to the benchmark.
	defer conn.Close()

	type row struct {
		guests              int
		driver, direct      time.Duration
		agentCPU, driverCPU float64 // cores
		agentRSS, driverRSS uint64  // bytes
	}
	var rows []row
	var groups []string // libvirt's cost of each stats group at 500 guests
	n := 0
	for _, want := range []int{1, 100, 250, 500} {
		for ; n < want; n++ {
			if err := startIdle(conn, fmt.Sprintf("bench-%03d", n+1)); err != nil {
				b.Fatalf("guest %d of %d on %s: %v", n+1, want, h.Name, err)
			}
		}
		r := row{guests: n}
		r.driver = labtest.Median(b, calls, func() error {
			st, err := drv.Stats(context.Background(), h.URI)
			if err == nil && len(st.Domains) < n {
				err = fmt.Errorf("%d domains, want %d", len(st.Domains), n)
			}
			return err
		})
		r.direct = labtest.Median(b, calls, func() error {
			all, err := conn.GetAllDomainStats(nil, lv.DOMAIN_STATS_STATE|lv.DOMAIN_STATS_CPU_TOTAL|lv.DOMAIN_STATS_BALLOON|
				lv.DOMAIN_STATS_VCPU|lv.DOMAIN_STATS_INTERFACE|lv.DOMAIN_STATS_BLOCK, lv.CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)
			for _, s := range all {
				_ = s.Domain.Free()
			}
			return err
		})
		if n == 1 || n == 500 {
			r.agentCPU, r.driverCPU, r.agentRSS, r.driverRSS = measureAgent(b, 20*time.Second)
		}
		if n == 500 { // what each group of libvirt's bulk stats costs
			for _, g := range []struct {
				name string
				flag lv.DomainStatsTypes
			}{{"state", lv.DOMAIN_STATS_STATE}, {"cpu-total", lv.DOMAIN_STATS_CPU_TOTAL}, {"balloon", lv.DOMAIN_STATS_BALLOON},
				{"vcpu", lv.DOMAIN_STATS_VCPU}, {"interface", lv.DOMAIN_STATS_INTERFACE}, {"block", lv.DOMAIN_STATS_BLOCK}} {
				d := labtest.Median(b, calls, func() error {
					all, err := conn.GetAllDomainStats(nil, g.flag, lv.CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)
					for _, s := range all {
						_ = s.Domain.Free()
					}
					return err
				})
				groups = append(groups, fmt.Sprintf("%s %s", g.name, d.Round(time.Millisecond)))
			}
		}
		b.Logf("%d guests on %s: one sample %s through the driver, %s libvirt alone", n, h.Name, r.driver, r.direct)
		rows = append(rows, r)
	}
	var sb strings.Builder
	w := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "guests on h1\tone sample (driver)\tlibvirt bulk stats alone\tratio\tper guest\tagent CPU\tagent RSS\tdriver CPU\tdriver RSS\t")
	for _, r := range rows {
		agentCols := "\t\t\t\t"
		if r.agentRSS > 0 {
			agentCols = fmt.Sprintf("%.1f%%\t%d MiB\t%.1f%%\t%d MiB\t", 100*r.agentCPU, r.agentRSS>>20, 100*r.driverCPU, r.driverRSS>>20)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%.2f\t%s\t%s\n", r.guests, r.driver.Round(10*time.Microsecond), r.direct.Round(10*time.Microsecond),
			float64(r.driver)/float64(r.direct), (r.driver / time.Duration(r.guests)).Round(time.Microsecond), agentCols)
	}
	w.Flush()
	fmt.Printf("\nvirtpool agent on the lab (3 hosts sampled every second; %d calls per median; guests paused, %d MiB each; agent CPU in %% of a core):\n%s",
		calls, idleGuestMiB, sb.String())
	fmt.Printf("libvirt's bulk stats of 500 guests, one group at a time: %s\n", strings.Join(groups, ", "))
}

// idleGuestMiB is the memory of the benchmark's paused guests.
const idleGuestMiB = 16

// startIdle starts a small paused guest (no disk, no NIC) that lives as
// long as conn.
func startIdle(conn *lv.Connect, name string) error {
	x, err := (&libvirtxml.Domain{
		Type:   "qemu",
		Name:   name,
		Memory: &libvirtxml.DomainMemory{Value: idleGuestMiB, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS:     &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm", Arch: "x86_64"}},
		Devices: &libvirtxml.DomainDeviceList{
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none"}},
			MemBalloon:  &libvirtxml.DomainMemBalloon{Model: "virtio"},
		},
	}).Marshal()
	if err != nil {
		return err
	}
	dom, err := conn.DomainCreateXML(x, lv.DOMAIN_START_PAUSED|lv.DOMAIN_START_AUTODESTROY)
	if err != nil {
		return err
	}
	return dom.Free()
}

// median runs f calls times and returns the median duration.
// measureAgent runs `virtpool agent` over the lab's hosts, sampling every
// second, and returns the CPU (cores) and resident memory of it and of its
// driver process over d, after a warm-up of five samples.
func measureAgent(b *testing.B, d time.Duration) (agentCPU, driverCPU float64, agentRSS, driverRSS uint64) {
	b.Helper()
	ag := startAgent(b, time.Second)
	defer ag.Proc.Stop()
	ag.After(b, 5)
	pid := ag.Proc.Pid()
	child := driverChild(b, pid)
	a0, c0 := cpuSeconds(b, pid), cpuSeconds(b, child)
	time.Sleep(d) // the measurement window, not a wait for something
	a1, c1 := cpuSeconds(b, pid), cpuSeconds(b, child)
	return (a1 - a0) / d.Seconds(), (c1 - c0) / d.Seconds(), rss(b, pid), rss(b, child)
}

// driverChild is the pid of the virtpool-driver process that pid started.
func driverChild(b *testing.B, pid int) int {
	b.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f := lab.ProcStatFields(string(data))
		if len(f) > 2 && f[1] == strconv.Itoa(pid) && strings.Contains(string(data), "(virtpool-driver") {
			n, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return n
		}
	}
	b.Fatalf("no virtpool-driver child of the agent (pid %d)", pid)
	return 0
}

// cpuSeconds is a process's user + system CPU time.
func cpuSeconds(b *testing.B, pid int) float64 {
	b.Helper()
	d, err := lab.ProcessCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	return d.Seconds()
}

// rss is a process's resident memory.
func rss(b *testing.B, pid int) uint64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	b.Fatalf("no VmRSS for pid %d", pid)
	return 0
}
