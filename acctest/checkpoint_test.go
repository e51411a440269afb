package acctest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/checkpoint/ship"
	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/probe"
)

// TestAccCheckpointRestore checkpoints a running guest on h1 through the
// driver process (CheckpointDomain: a live snapshot of its memory into
// h1's checkpoint directory), twice, 2 s apart, and has h1's checkpoint
// helper ('virtpool ship serve', as the lab runs one on every host) send
// each image to h2's helper, host to host over mutual TLS (the first image
// whole, the second as its new chunks), destroys the guest on h1 and
// restores it on h2 from the image h2's helper keeps (RestoreDomain): the
// guest must answer there with its memory as at the last checkpoint (its
// clock and its sequence file go on from it), and run on h2 only. Issue
// 14: the hot standby builds on these calls.
func TestAccCheckpointRestore(t *testing.T) {
	needLab(t)
	ctx := context.Background()
	h1, h2 := theLab.Hosts[0], theLab.Hosts[1]
	if h1.ShipBin == "" {
		t.Fatal("the lab's hosts run no checkpoint helper: set VIRTPOOL_BIN (make testacc does)")
	}
	srcDir := filepath.Join(h1.ShipDir(), "out", "acc") // the helper keeps out/ itself
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	tlsConf, err := lab.ShipClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	helper := &ship.Client{Base: h1.ShipURL(), TLS: tlsConf}

	g := startGuest(t, h1, 128)
	standby := ship.StandbyImage(h2.ShipDir(), g.Name)
	t.Cleanup(func() { // the restored guest is h2's domain
		if err := drv.ShutdownDomain(context.Background(), h2.URI, g.Name, 0); err != nil {
			t.Errorf("stop %s on %s: %v", g.Name, h2.Name, err)
		}
		if err := drv.UndefineDomain(context.Background(), h2.URI, g.Name, driver.UndefineOptions{}); err != nil && !driver.IsNotFound(err) {
			t.Errorf("remove %s from %s: %v", g.Name, h2.Name, err)
		}
		_ = os.RemoveAll(srcDir)
		_ = os.RemoveAll(filepath.Dir(standby))
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
			{"missing file", func() error { return drv.RestoreDomain(ctx, h2.URI, filepath.Join(h2.ShipDir(), "no-such.img")) },
				"restore domain on " + h2.URI + ": from " + filepath.Join(h2.ShipDir(), "no-such.img")},
			{"image outside the helper's directory", func() error {
				_, err := helper.Send(ctx, g.Name, "/etc/passwd", h2.ShipPeerURL())
				return err
			}, `path "/etc/passwd": outside`},
		} {
			if err := tc.err(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.want)
			}
		}
	})

	// Two checkpoints 2 s apart, as protection takes them; each shipped.
	var (
		cp        driver.Checkpoint
		sent      [2]ship.Sent
		before    probe.GuestClock
		seqBefore int
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
		if sent[i], err = helper.Send(ctx, g.Name, image, h2.ShipPeerURL()); err != nil {
			t.Fatal(err)
		}
	}
	if sent[1].WireBytes >= sent[0].WireBytes/2 {
		t.Errorf("the second image cost %d bytes on the wire, the first (whole) %d: not incremental", sent[1].WireBytes, sent[0].WireBytes)
	}
	at, err := client.Clock(requestCtx(), g.IP)
	if err != nil {
		t.Fatal(err)
	}
	if err := drv.ShutdownDomain(ctx, h1.URI, g.Name, 0); err != nil { // its host failed
		t.Fatal(err)
	}
	start := time.Now()
	if err := drv.RestoreDomain(ctx, h2.URI, standby); err != nil {
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
			if d.Name == g.Name && h.running && !d.Persistent {
				t.Errorf("%s restored on %s is transient, want it defined there", g.Name, h.uri)
			}
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
		"shipped %s → %s by the hosts' helpers (mutual TLS): first image %.1f MiB on the wire (%d chunks) in %s, the next, 2 s later, %.2f MiB = %.2f %% of RAM "+
		"(%d of %d chunks new, manifest included) in %s; restore %s, answering after %s; sequence 1…%d continuous (%d at the checkpoint)",
		ramMiB, cp.Elapsed.Round(time.Millisecond), downtime, float64(cp.Bytes)/(1<<20), float64(sent[1].ImageBytes)/(1<<20),
		h1.Name, h2.Name, float64(sent[0].WireBytes)/(1<<20), sent[0].NewChunks, sent[0].Elapsed.Round(time.Millisecond),
		float64(sent[1].WireBytes)/(1<<20), pct(sent[1].WireBytes), sent[1].NewChunks, sent[1].Chunks, sent[1].Elapsed.Round(time.Millisecond),
		restore.Round(time.Millisecond), answers.Round(time.Millisecond), seq, seqBefore)
}
