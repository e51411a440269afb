package lab_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/driver/virt"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/labtest"
	"github.com/virtpool/virtpool/lab/probe"
)

// The host failure modes on the real lab: a partitioned host's libvirtd
// does not answer and its guests cannot be reached, yet they run on and
// come back unchanged after Heal; a crashed or fenced host runs nothing,
// and a started one has lost its guests.
func TestHostFailures(t *testing.T) {
	if os.Getenv("VIRTPOOL_ACC") != "1" || os.Geteuid() != 0 {
		t.Skip("acceptance test: needs root and the lab; run as root with VIRTPOOL_ACC=1 (make testacc)")
	}
	ctx := context.Background()
	log := hclog.New(&hclog.LoggerOptions{Name: "lab-fail", Level: hclog.LevelFromString(labtest.EnvOr("VIRTPOOL_LOG", "warn"))})
	l, down, err := labtest.Up(ctx, "lab-fail", true, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(down)
	f := &failTest{lab: l, drv: virt.New(log.Named("driver")), client: probe.New(l.ClientNamespace)}
	// Cleanups run last first: this one, before the lab goes down, leaves
	// a lab that stays up (VIRTPOOL_LAB_KEEP=1) whole, whatever failed.
	t.Cleanup(f.cleanup(t))
	h1, h2 := l.Hosts[0], l.Hosts[1]

	g := f.startGuest(t, 61, h1)
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"partition and heal", func(t *testing.T) { f.partitionAndHeal(t, g) }},
		{"crash, fence, start", func(t *testing.T) { f.crashFenceStart(t, g) }},
		{"fence a partitioned host", func(t *testing.T) {
			g2 := f.startGuest(t, 62, h2)
			f.do(t, h2, "down, partitioned", "partition", "fence", "fence")
			f.assertNothingRuns(t, h2)
			// Power on, cable still pulled: it stays cut off until healed.
			f.do(t, h2, "partitioned", "start", "start")
			if st, err := h2.State(); err != nil || !st.Frozen {
				t.Fatalf("%s started while partitioned: %+v, %v; want its libvirtd stopped", h2.Name, st, err)
			}
			f.do(t, h2, "up", "heal")
			f.waitShutoff(t, g2)
		}},
	}
	for _, s := range steps {
		// Each step starts from where the last one left the hosts.
		if !t.Run(s.name, s.run) {
			t.FailNow()
		}
	}
}

type failTest struct {
	lab    *lab.Lab
	drv    *virt.Driver
	client *probe.Client
	guests []*failGuest
}

type failGuest struct {
	name, ip string
	host     lab.Host
}

// cleanup heals and starts every host, then removes the test's guests.
func (f *failTest) cleanup(t *testing.T) func() {
	return func() {
		ctx := context.Background()
		for _, h := range f.lab.Hosts {
			if err := lab.Heal(ctx, h); err != nil {
				t.Errorf("cleanup: %v", err)
			}
			if err := lab.Start(ctx, h); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		for _, g := range f.guests {
			if err := f.drv.ShutdownDomain(ctx, g.host.URI, g.name, 0); err != nil {
				t.Errorf("cleanup: stop %s: %v", g.name, err)
			}
			if err := f.drv.UndefineDomain(ctx, g.host.URI, g.name, driver.UndefineOptions{}); err != nil {
				t.Errorf("cleanup: undefine %s: %v", g.name, err)
			}
		}
		f.drv.Close()
	}
}

// startGuest starts lab guest n on h and waits until it answers.
func (f *failTest) startGuest(t *testing.T, n int, h lab.Host) *failGuest {
	t.Helper()
	g := &failGuest{name: fmt.Sprintf("fail-%d", n), ip: lab.GuestIP(n), host: h}
	start := time.Now()
	spec := f.lab.GuestSpec(g.name, n, h, 128, 1, map[string]string{"role": "lab-fail"})
	if _, err := f.drv.CreateDomain(context.Background(), h.URI, spec); err != nil {
		t.Fatalf("start guest %s on %s: %v", g.name, h.Name, err)
	}
	f.guests = append(f.guests, g)
	if err := f.client.WaitReady(context.Background(), g.ip, 90*time.Second); err != nil {
		t.Fatalf("guest %s on %s: %v", g.name, h.Name, err)
	}
	t.Logf("guest %s (%s) ready on %s in %s", g.name, g.ip, h.Name, time.Since(start).Round(time.Millisecond))
	return g
}

// ops are the failure modes and repairs, by name.
var ops = map[string]func(context.Context, lab.Host) error{
	"crash": lab.Crash, "fence": lab.Fence, "partition": lab.Partition, "heal": lab.Heal, "start": lab.Start,
}

// do applies the named ops to h in turn (naming one twice checks it is
// idempotent) and then checks the host's state.
func (f *failTest) do(t *testing.T, h lab.Host, want string, names ...string) {
	t.Helper()
	for _, name := range names {
		start := time.Now()
		if err := ops[name](context.Background(), h); err != nil {
			t.Fatalf("%s %s: %v", name, h.Name, err)
		}
		t.Logf("%s %s: %s", name, h.Name, time.Since(start).Round(time.Millisecond))
	}
	st, err := h.State()
	if err != nil {
		t.Fatal(err)
	}
	if st.String() != want {
		t.Fatalf("%s is %s (%+v) after %v, want %s", h.Name, st, st, names, want)
	}
}

// partitionAndHeal: while h is partitioned, libvirt calls on it hang and
// its guest cannot be reached but runs on; after Heal the calls answer and
// the guest is the same, not restarted.
func (f *failTest) partitionAndHeal(t *testing.T, g *failGuest) {
	h := g.host
	pid := qemuPID(t, h, g.name)
	up0 := f.uptime(t, g)
	seq0, err := f.client.Sequence(reqCtx(5*time.Second), g.ip)
	if err != nil {
		t.Fatal(err)
	}
	cpu0, err := lab.ProcessCPU(pid)
	if err != nil {
		t.Fatal(err)
	}

	f.do(t, h, "partitioned", "partition", "partition")
	partitioned := time.Now()
	// Calls on the host, each in a goroutine of its own; each ends after
	// Heal, so none is left stuck.
	calls := []struct {
		name string
		call func() error
	}{
		{"ListDomains on the open connection", func() error {
			doms, err := f.drv.ListDomains(context.Background(), h.URI)
			if err == nil && !hasRunning(doms, g.name) {
				err = fmt.Errorf("%s not running in %v", g.name, doms)
			}
			return err
		}},
		{"ListDomains on a new connection", func() error {
			d := virt.New(nil)
			defer d.Close()
			_, err := d.ListDomains(context.Background(), h.URI)
			return err
		}},
	}
	done := make([]chan error, len(calls))
	for i, c := range calls {
		done[i] = make(chan error, 1)
		go func() { done[i] <- c.call() }()
	}
	for _, o := range []struct{ host, want string }{{f.lab.Hosts[1].Name, "up"}, {f.lab.Hosts[2].Name, "up"}} {
		other, _ := f.lab.Host(o.host)
		if st, err := other.State(); err != nil || st.String() != o.want {
			t.Errorf("%s is %v (%v), want %s: partitioning %s touched another host", o.host, st, err, o.want, h.Name)
		}
	}
	if _, err := f.client.Get(reqCtx(time.Second), g.ip, "/health"); err == nil {
		t.Errorf("the client reaches %s on partitioned %s", g.name, h.Name)
	}
	time.Sleep(time.Until(partitioned.Add(2 * time.Second)))
	for i, c := range calls {
		select {
		case err := <-done[i]:
			t.Errorf("%s answered within 2 s of the partition: %v", c.name, err)
			done[i] <- err // for the wait below
		default:
		}
	}
	if p := qemuPID(t, h, g.name); p != pid {
		t.Errorf("QEMU of %s is %d, was %d", g.name, p, pid)
	}
	if cpu, err := lab.ProcessCPU(pid); err != nil || cpu <= cpu0 {
		t.Errorf("QEMU of %s used no CPU while partitioned (%s, then %s, %v): its guest does not run", g.name, cpu0, cpu, err)
	}

	f.do(t, h, "up", "heal", "heal")
	t.Logf("partitioned for %s", time.Since(partitioned).Round(time.Millisecond))
	for i, c := range calls {
		select {
		case err := <-done[i]:
			if err != nil {
				t.Errorf("%s after Heal: %v", c.name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s: no answer 30 s after Heal", c.name)
		}
	}
	if err := f.client.WaitReady(context.Background(), g.ip, 10*time.Second); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
	// The same guest: same QEMU, uptime on, its sequence file continued.
	if p := qemuPID(t, h, g.name); p != pid {
		t.Errorf("after Heal QEMU of %s is %d, was %d", g.name, p, pid)
	}
	if up := f.uptime(t, g); up <= up0 {
		t.Errorf("after Heal %s has been up %s, had been %s before: it restarted", g.name, up, up0)
	}
	if seq, err := f.client.Sequence(reqCtx(5*time.Second), g.ip); err != nil || seq <= seq0 {
		t.Errorf("after Heal the sequence of %s is at %d (%v), was %d", g.name, seq, err, seq0)
	}
}

// crashFenceStart: a crashed host runs nothing and refuses connections,
// fencing it is a no-op, and starting it brings its libvirtd back without
// its guest.
func (f *failTest) crashFenceStart(t *testing.T, g *failGuest) {
	h := g.host
	f.do(t, h, "down", "crash")
	f.assertNothingRuns(t, h)
	if c, err := net.Dial("unix", h.Socket()); err == nil {
		c.Close()
		t.Errorf("%s's libvirtd socket accepts after the crash", h.Name)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s's libvirtd socket: %v, want connection refused", h.Name, err)
	}
	if _, err := f.client.Get(reqCtx(time.Second), g.ip, "/health"); err == nil {
		t.Errorf("the client reaches %s on crashed %s", g.name, h.Name)
	}
	// A crashed host, unlike a partitioned one, fails at once.
	start := time.Now()
	if _, err := f.drv.ListDomains(context.Background(), h.URI); err == nil {
		t.Errorf("ListDomains on crashed %s succeeded", h.Name)
	} else if took := time.Since(start); took > 5*time.Second {
		t.Errorf("ListDomains on crashed %s took %s to fail", h.Name, took)
	}
	f.do(t, h, "down", "fence", "fence")
	f.assertNothingRuns(t, h)

	f.do(t, h, "up", "start", "start")
	f.waitShutoff(t, g)
	if _, err := os.Stat(filepath.Join(h.StateDir, "run", "qemu", g.name+".xml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s's libvirtd kept the state of dead %s: %v", h.Name, g.name, err)
	}
}

// assertNothingRuns fails unless h runs no process at all.
func (f *failTest) assertNothingRuns(t *testing.T, h lab.Host) {
	t.Helper()
	ps, err := h.Processes()
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) > 0 {
		t.Fatalf("%s still runs %+v", h.Name, ps)
	}
}

// waitShutoff waits until g's host has it defined but shut off: its QEMU
// died with the host, and the restarted libvirtd has noticed.
func (f *failTest) waitShutoff(t *testing.T, g *failGuest) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		doms, err := f.drv.ListDomains(context.Background(), g.host.URI)
		if err != nil {
			t.Fatal(err)
		}
		var state string
		for _, d := range doms {
			if d.Name == g.name {
				state = d.State
			}
		}
		if state == driver.StateShutoff {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s is %q after a power cycle, want %s", g.name, g.host.Name, state, driver.StateShutoff)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// uptime is how long the guest's kernel has been up (/stat's uptime line).
func (f *failTest) uptime(t *testing.T, g *failGuest) time.Duration {
	t.Helper()
	body, err := f.client.Get(reqCtx(5*time.Second), g.ip, "/stat")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, "uptime: "); ok {
			if fs := strings.Fields(rest); len(fs) > 0 {
				s, err := strconv.ParseFloat(fs[0], 64)
				if err == nil {
					return time.Duration(s * float64(time.Second))
				}
			}
		}
	}
	t.Fatalf("no uptime in %s's /stat: %q", g.name, body)
	return 0
}

// qemuPID is the PID of the guest's QEMU process on h.
func qemuPID(t *testing.T, h lab.Host, name string) int {
	t.Helper()
	p, err := h.QEMU(name)
	if err != nil {
		t.Fatal(err)
	}
	if p.Stopped() {
		t.Errorf("QEMU of %s (%d) is stopped", name, p.PID)
	}
	return p.PID
}

func hasRunning(doms []driver.Domain, name string) bool {
	for _, d := range doms {
		if d.Name == name && d.State == driver.StateRunning {
			return true
		}
	}
	return false
}

// reqCtx bounds one request to a guest; the timer releases it.
func reqCtx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	_ = cancel
	return ctx
}
