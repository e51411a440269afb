package acctest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/probe"
)

// guest is one lab guest started for a test.
type guest struct {
	Name string
	IP   string
	UUID string
	Host lab.Host // where it was started
	n    int
}

var guestSeq struct {
	sync.Mutex
	n int
}

// startGuest starts a lab guest (one vCPU) on host and waits until it answers
// on the network. It is destroyed and undefined when the test ends, wherever
// it is.
func startGuest(t testing.TB, host lab.Host, memMiB uint64) *guest {
	t.Helper()
	return startGuestSpec(t, host, memMiB, "")
}

// startGuestWithDisk is startGuest for a guest with a disk, its /dev/vda:
// a qcow2 overlay (virtio-blk) of the lab's empty base disk (labDisk), made
// beside it by the driver and removed with the guest.
func startGuestWithDisk(t testing.TB, host lab.Host, memMiB uint64) *guest {
	t.Helper()
	return startGuestSpec(t, host, memMiB, labDisk(t))
}

// labDiskMiB is the size of the lab's base disk, labDisk.
const labDiskMiB = 64

// labDisk returns the lab's base disk for guests with one, an empty qcow2
// image of labDiskMiB in the shared image directory (where every host sees
// it, and the lab's teardown removes it), made by the first test that asks.
func labDisk(t testing.TB) string {
	t.Helper()
	path := filepath.Join(theLab.ImageDir, fmt.Sprintf("disk-%dm.qcow2", labDiskMiB))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	tmp := path + ".tmp"
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", tmp, fmt.Sprintf("%dM", labDiskMiB)).CombinedOutput(); err != nil {
		t.Fatalf("base disk: qemu-img create: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func startGuestSpec(t testing.TB, host lab.Host, memMiB uint64, baseImage string) *guest {
	t.Helper()
	guestSeq.Lock()
	guestSeq.n++
	n := guestSeq.n
	guestSeq.Unlock()
	name := fmt.Sprintf("acc-%d", n)
	spec := theLab.GuestSpec(name, n, host, memMiB, 1, map[string]string{"role": "acctest", "test": t.Name()})
	spec.BaseImage = baseImage
	ctx := context.Background()
	start := time.Now()
	dom, err := drv.CreateDomain(ctx, host.URI, spec)
	if err != nil {
		t.Fatalf("start guest: %v", err)
	}
	g := &guest{Name: name, IP: lab.GuestIP(n), UUID: dom.UUID, Host: host, n: n}
	t.Cleanup(func() { removeEverywhere(t, name) })
	if err := g.waitReady(60 * time.Second); err != nil {
		t.Fatalf("guest %s on %s: %v", name, host.Name, err)
	}
	t.Logf("guest %s (%s) ready on %s in %s", name, g.IP, host.Name, time.Since(start).Round(time.Millisecond))
	return g
}

// removeEverywhere destroys and undefines a guest on every lab host.
func removeEverywhere(t testing.TB, name string) {
	ctx := context.Background()
	for _, h := range theLab.Hosts {
		if err := drv.ShutdownDomain(ctx, h.URI, name, 0); err != nil {
			t.Errorf("cleanup: stop %s on %s: %v", name, h.Name, err)
		}
		if err := drv.UndefineDomain(ctx, h.URI, name, driver.UndefineOptions{}); err != nil {
			t.Errorf("cleanup: undefine %s on %s: %v", name, h.Name, err)
		}
	}
}

// client reaches guests from the lab's client namespace, like an outside
// user of their services would.
var client *probe.Client

// requestCtx bounds one request to a guest.
func requestCtx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = cancel // released by the timer; tests are short-lived
	return ctx
}

func (g *guest) waitReady(timeout time.Duration) error {
	return client.WaitReady(context.Background(), g.IP, timeout)
}

func (g *guest) setLoad(t testing.TB, cpu, memMiB int) {
	t.Helper()
	if err := client.SetLoad(requestCtx(), g.IP, cpu, memMiB); err != nil {
		t.Fatal(err)
	}
}

// setDiskLoad has a guest with a disk read and write it at these MiB/s.
func (g *guest) setDiskLoad(t testing.TB, readMiBs, writeMiBs int) {
	t.Helper()
	if err := client.SetDiskLoad(requestCtx(), g.IP, readMiBs, writeMiBs); err != nil {
		t.Fatal(err)
	}
}

// disk is what the guest's disk load has read and written, as it counts.
func (g *guest) disk(t testing.TB) probe.DiskBytes {
	t.Helper()
	d, err := client.Disk(requestCtx(), g.IP)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fill writes mib MiB of the guest's memory once, then dirties it at only
// 1 MiB/s, so that a migration has that much non-zero memory to copy. The
// first pass is taken as over when QEMU's resident memory has grown by 7/8
// of mib (under TCG the guest takes seconds to fault the pages in): some
// of the pages the guest takes were resident already (touched at boot),
// so growth by all of mib happens only on some runs.
func (g *guest) fill(t testing.TB, mib int) {
	t.Helper()
	rss := func() uint64 {
		st, err := drv.Stats(context.Background(), g.Host.URI)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range st.Domains {
			if d.Name == g.Name {
				return d.RSSKiB >> 10
			}
		}
		t.Fatalf("%s not on %s", g.Name, g.Host.Name)
		return 0
	}
	before := rss()
	if _, err := client.Get(requestCtx(), g.IP, fmt.Sprintf("/load?mem=%d&rate=0", mib)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	want := uint64(mib) * 7 / 8
	for rss() < before+want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: resident memory %d MiB, not %d MiB more than %d after a minute", g.Name, rss(), want, before)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := client.Get(requestCtx(), g.IP, "/load?rate=1"); err != nil {
		t.Fatal(err)
	}
}

// seqCheck checks the guest's sequence file (no gap, no repeat) and
// returns its last number.
func (g *guest) seqCheck(t testing.TB) int {
	t.Helper()
	n, err := client.Sequence(requestCtx(), g.IP)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// where returns the lab hosts on which the guest is running.
func (g *guest) where(t testing.TB) []string {
	t.Helper()
	var on []string
	for _, h := range theLab.Hosts {
		doms, err := drv.ListDomains(context.Background(), h.URI)
		if err != nil {
			t.Fatalf("list %s: %v", h.Name, err)
		}
		for _, d := range doms {
			if d.Name == g.Name && d.State == driver.StateRunning {
				if d.UUID != g.UUID {
					t.Fatalf("%s on %s has UUID %s, want %s", g.Name, h.Name, d.UUID, g.UUID)
				}
				on = append(on, h.Name)
			}
		}
	}
	return on
}

// states maps each host that has the guest defined to its state there.
func (g *guest) states(t testing.TB) map[string]string {
	t.Helper()
	st := map[string]string{}
	for _, h := range theLab.Hosts {
		doms, err := drv.ListDomains(context.Background(), h.URI)
		if err != nil {
			t.Fatalf("list %s: %v", h.Name, err)
		}
		for _, d := range doms {
			if d.Name == g.Name {
				st[h.Name] = d.State
			}
		}
	}
	return st
}

// assertOnlyOn fails unless the guest runs on exactly that host.
func (g *guest) assertOnlyOn(t testing.TB, host string) {
	t.Helper()
	if on := g.where(t); len(on) != 1 || on[0] != host {
		t.Fatalf("%s runs on %v, want exactly [%s]", g.Name, on, host)
	}
}
