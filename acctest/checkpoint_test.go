package acctest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
)

// TestAccCheckpointRestore checkpoints a running guest on h1 through the
// driver process (CheckpointDomain: a live snapshot of its memory into
// h1's own directory), ships the image to h2's own directory over
// libvirt's storage streams, destroys the guest on h1 and restores it on
// h2 (RestoreDomain): the guest must answer there with its memory as at
// the checkpoint (its clock and its sequence file go on from it), and run
// on h2 only. Issue 14's first step: the hot standby builds on these calls.
func TestAccCheckpointRestore(t *testing.T) {
	needLab(t)
	ctx := context.Background()
	h1, h2 := theLab.Hosts[0], theLab.Hosts[1]
	srcDir, dstDir := ckptDir(t, h1), ckptDir(t, h2)
	src, dst := connectTo(t, h1), connectTo(t, h2)
	srcPool, dstPool := storagePool(t, src, srcDir), storagePool(t, dst, dstDir)

	g := startGuest(t, h1, 128)
	t.Cleanup(func() { // the restored guest is h2's (transient) domain
		if err := drv.ShutdownDomain(context.Background(), h2.URI, g.Name, 0); err != nil {
			t.Errorf("remove %s from %s: %v", g.Name, h2.Name, err)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			err  func() error
			want string
		}{
			{"missing directory", func() error {
				_, err := drv.CheckpointDomain(ctx, h1.URI, g.Name, driver.CheckpointOptions{Path: filepath.Join(srcDir, "no-such-dir", "x.img")})
				return err
			}, "its directory must exist on the host"},
			{"missing file", func() error { return drv.RestoreDomain(ctx, h2.URI, filepath.Join(dstDir, "no-such.img")) },
				"restore domain on " + h2.URI + ": from " + filepath.Join(dstDir, "no-such.img")},
		} {
			if err := tc.err(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.want)
			}
		}
	})

	before, err := client.Clock(requestCtx(), g.IP)
	if err != nil {
		t.Fatal(err)
	}
	seqBefore, err := client.Sequence(requestCtx(), g.IP)
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(srcDir, g.Name+".img")
	cp, err := drv.CheckpointDomain(ctx, h1.URI, g.Name, driver.CheckpointOptions{Path: image})
	if err != nil {
		t.Fatal(err)
	}
	if cp.Elapsed <= 0 || cp.Bytes == 0 {
		t.Fatalf("checkpoint reports %+v: no time or no memory written", cp)
	}
	// The guest ran on through the capture.
	if err := client.WaitReady(ctx, g.IP, 10*time.Second); err != nil {
		t.Fatalf("%s after its checkpoint: %v", g.Name, err)
	}

	img, down := download(t, src, srcPool, image)
	target := filepath.Join(dstDir, filepath.Base(image))
	up := upload(t, dst, dstPool, target, img)
	at, err := client.Clock(requestCtx(), g.IP)
	if err != nil {
		t.Fatal(err)
	}
	if err := drv.ShutdownDomain(ctx, h1.URI, g.Name, 0); err != nil { // its host failed
		t.Fatal(err)
	}
	start := time.Now()
	if err := drv.RestoreDomain(ctx, h2.URI, target); err != nil {
		t.Fatal(err)
	}
	restore := time.Since(start)
	if err := client.WaitReady(ctx, g.IP, 30*time.Second); err != nil {
		t.Fatalf("%s restored on %s: %v", g.Name, h2.Name, err)
	}
	answers := time.Since(start)

	c, err := client.Clock(requestCtx(), g.IP)
	if err != nil {
		t.Fatal(err)
	}
	// Its clock goes on from the checkpoint, past the guest's clock before
	// the capture: its memory came with it (a new boot starts near 0).
	// How far past depends on how fast it answered, not a thing to assert.
	if c.Mono < before.Mono {
		t.Errorf("restored clock %s: the capture began at %s (the guest was destroyed at %s): not the checkpoint's memory", c.Mono, before.Mono, at.Mono)
	}
	seq, err := client.Sequence(requestCtx(), g.IP)
	if err != nil {
		t.Fatalf("sequence file after the restore: %v", err)
	}
	if seq < seqBefore {
		t.Errorf("sequence file ends at %d, before the checkpoint it was at %d", seq, seqBefore)
	}
	for _, h := range []struct {
		uri     string
		running bool
	}{{h1.URI, false}, {h2.URI, true}} {
		doms, err := drv.ListDomains(ctx, h.uri)
		if err != nil {
			t.Fatal(err)
		}
		running := false
		for _, d := range doms {
			running = running || (d.Name == g.Name && d.State == driver.StateRunning)
		}
		if running != h.running {
			t.Errorf("%s running on %s: %v, want %v", g.Name, h.uri, running, h.running)
		}
	}
	downtime := "not reported"
	if cp.Downtime >= 0 {
		downtime = cp.Downtime.String()
	}
	mib := float64(len(img)) / (1 << 20)
	t.Logf("checkpoint of a 128 MiB guest: capture %s, downtime %s, memory written %.1f MiB, image %.1f MiB; "+
		"shipped %s → %s: download %s, upload %s; restore %s, answering after %s; sequence 1…%d continuous (%d at the checkpoint)",
		cp.Elapsed.Round(time.Millisecond), downtime, float64(cp.Bytes)/(1<<20), mib, h1.Name, h2.Name,
		down.Round(time.Millisecond), up.Round(time.Millisecond), restore.Round(time.Millisecond),
		answers.Round(time.Millisecond), seq, seqBefore)
}
