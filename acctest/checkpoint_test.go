package acctest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/checkpoint/ship"
	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/lab/probe"
)

// TestAccCheckpointRestore checkpoints a running guest on h1 through the
// driver process (CheckpointDomain: a live snapshot of its memory into
// h1's own directory), twice, 2 s apart, and ships each image to a
// receiver of package ship keeping h2's own directory (the first image
// whole, the second as its new chunks), destroys the guest on h1 and
// restores it on h2 from the receiver's image (RestoreDomain): the guest
// must answer there with its memory as at the last checkpoint (its clock
// and its sequence file go on from it), and run on h2 only. Issue 14: the
// hot standby builds on these calls. The receiver runs in this process,
// on h2's directory, not as a helper on h2 yet.
func TestAccCheckpointRestore(t *testing.T) {
	needLab(t)
	ctx := context.Background()
	h1, h2 := theLab.Hosts[0], theLab.Hosts[1]
	srcDir, dstDir := ckptDir(t, h1), ckptDir(t, h2)
	rc := &ship.Receiver{Dir: dstDir}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	sender := &ship.Sender{Client: srv.Client(), URL: srv.URL}

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

	// Two checkpoints 2 s apart, as protection takes them; each shipped.
	var (
		cp        driver.Checkpoint
		sent      [2]ship.Stats
		before    probe.GuestClock
		seqBefore int
		err       error
	)
	for i := range sent {
		if i > 0 {
			time.Sleep(2 * time.Second)
		}
		if before, err = client.Clock(requestCtx(), g.IP); err != nil {
			t.Fatal(err)
		}
		if seqBefore, err = client.Sequence(requestCtx(), g.IP); err != nil {
			t.Fatal(err)
		}
		image := filepath.Join(srcDir, fmt.Sprintf("%s-%d.img", g.Name, i))
		if cp, err = drv.CheckpointDomain(ctx, h1.URI, g.Name, driver.CheckpointOptions{Path: image}); err != nil {
			t.Fatal(err)
		}
		if cp.Elapsed <= 0 || cp.Bytes == 0 {
			t.Fatalf("checkpoint reports %+v: no time or no memory written", cp)
		}
		// The guest ran on through the capture.
		if err := client.WaitReady(ctx, g.IP, 10*time.Second); err != nil {
			t.Fatalf("%s after its checkpoint: %v", g.Name, err)
		}
		if sent[i], err = sender.Send(ctx, g.Name, image); err != nil {
			t.Fatal(err)
		}
	}
	if sent[1].WireBytes >= sent[0].WireBytes/2 {
		t.Errorf("the second image cost %d bytes on the wire, the first (whole) %d: not incremental", sent[1].WireBytes, sent[0].WireBytes)
	}
	target := rc.ImagePath(g.Name)
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
	const ramMiB = 128
	pct := func(b int64) float64 { return 100 * float64(b) / (ramMiB << 20) }
	t.Logf("checkpoint of a %d MiB guest: capture %s, downtime %s, memory written %.1f MiB, image %.1f MiB; "+
		"shipped %s → %s: first image %.1f MiB on the wire (%d chunks), the next, 2 s later, %.2f MiB = %.2f %% of RAM "+
		"(%d of %d chunks new, manifest included); restore %s, answering after %s; sequence 1…%d continuous (%d at the checkpoint)",
		ramMiB, cp.Elapsed.Round(time.Millisecond), downtime, float64(cp.Bytes)/(1<<20), float64(sent[1].ImageBytes)/(1<<20),
		h1.Name, h2.Name, float64(sent[0].WireBytes)/(1<<20), sent[0].NewChunks,
		float64(sent[1].WireBytes)/(1<<20), pct(sent[1].WireBytes), sent[1].NewChunks, sent[1].Chunks,
		restore.Round(time.Millisecond), answers.Round(time.Millisecond), seq, seqBefore)
}
