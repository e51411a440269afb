package agent

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/pool"
)

// The shared storage of TestRestartKeepsDisk: a base image and the
// overlay directory every host sees.
const (
	sharedBase     = "/shared/images/base.qcow2"
	sharedOldBase  = "/shared/images/old.qcow2"
	sharedOverlays = "/shared/overlays"
	soloDisk       = sharedOverlays + "/solo.qcow2"
)

// TestRestartKeepsDisk: solo, a single domain with a disk (an overlay of
// a base image on storage every host shares, one path for all its copies)
// and failover host h1, runs on h3 and writes to its disk. h3 is fenced:
// solo is restarted on h1 on that same overlay, with what it wrote (not a
// new one, not refused as existing), and writes on. h3 back, its stale
// copy of solo is removed and the overlay stays, the one h1's copy runs
// on, with h1's writes; removing solo everywhere then deletes it. An
// overlay that is not of solo's base image, or whose base image is gone,
// is not reused: the restart fails naming both paths, and nothing touches
// the disk.
func TestRestartKeepsDisk(t *testing.T) {
	const h1, h3 = "test:///h1", "test:///h3"
	tpl := pool.Template{VCPUs: 1, MemoryMiB: 256, BaseImage: sharedBase, OverlayDir: sharedOverlays}
	tests := []struct {
		name string
		// running: the fence leaves h3's guests running (the stale copy is
		// destroyed once h3 is back, rather than found stopped).
		running bool
		// made is the base image solo's overlay was made from (sharedBase
		// unless set); gone, a base image taken off the storage before h3
		// fails.
		made, gone string
		// failed: words of solo's restore_failed; empty, it restarts.
		failed []string
	}{
		{name: "the fence powers h3 off"},
		{name: "the fence leaves solo running on h3", running: true},
		{name: "the overlay is of another base image", made: sharedOldBase,
			failed: []string{"overlay " + soloDisk + " exists but is backed by " + sharedOldBase +
				", not by the domain's base image " + sharedBase + ": not reused"}},
		{name: "the base image is gone", gone: sharedBase,
			failed: []string{"overlay " + soloDisk + " exists but its base image " + sharedBase + " is missing: not reused"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var l *failLab
			l = newFailLab(t, func([]string) error {
				if !tc.running {
					l.d.PowerOff(h3)
				}
				return nil
			})
			l.d.AddImage(sharedBase)
			l.d.AddImage(sharedOldBase)
			tplJSON, err := json.Marshal(tpl)
			if err != nil {
				t.Fatal(err)
			}
			labels := map[string]string{pool.LabelRole: pool.RoleDomain, pool.LabelTemplate: string(tplJSON), pool.LabelFailoverHosts: "h1"}
			made := tpl
			if tc.made != "" {
				made.BaseImage = tc.made
			}
			spec, err := made.DomainSpec("solo", 0, labels)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.d.CreateDomain(ctx, h3, spec); err != nil {
				t.Fatal(err)
			}
			if got := l.d.Overlay(h3, "solo"); got != soloDisk {
				t.Fatalf("solo's overlay on h3 %q, want %s", got, soloDisk)
			}
			if err := l.d.WriteDisk(h3, "solo", "written on h3"); err != nil {
				t.Fatal(err)
			}
			if tc.gone != "" {
				l.d.RemoveImage(tc.gone)
			}
			disk := func(when, want string) {
				t.Helper()
				if got := l.d.Disks(); !slices.Equal(got, []string{soloDisk}) {
					t.Errorf("%s: overlays %q, want solo's alone, %s", when, got, soloDisk)
				}
				if dk, ok := l.d.Disk(soloDisk); !ok || dk.Data != want {
					t.Errorf("%s: solo's overlay holds %q (exists: %v), want %q", when, dk.Data, ok, want)
				}
			}

			l.steps(t, 1)
			l.d.Host(h3).Down = true
			l.steps(t, 4) // fenced at the grace period's end
			var restarted bool
			var failure string
			for _, e := range l.a.Events().Since(0) {
				restarted = restarted || (e.Kind == event.GuestRestarted && e.Guest == "solo")
				if e.Kind == event.RestoreFailed && e.Guest == "solo" {
					failure = e.Message
				}
			}
			if len(tc.failed) > 0 {
				for _, w := range tc.failed {
					if !strings.Contains(failure, w) {
						t.Errorf("solo's restore_failed says %q, want %q in it", failure, w)
					}
				}
				if restarted || l.d.Where("solo")[h1] != "" {
					t.Errorf("solo restarted on %v, want it left on h3", l.d.Where("solo"))
				}
				disk("after the failed restart", "written on h3")
			} else {
				if !restarted || failure != "" {
					t.Fatalf("solo restarted: %v, restore_failed %q; want it restarted on h1", restarted, failure)
				}
				if got := l.d.Overlay(h1, "solo"); got != soloDisk {
					t.Errorf("solo on h1 runs on %q, want its overlay %s", got, soloDisk)
				}
				disk("after the restart on h1", "written on h3")
				if err := l.d.WriteDisk(h1, "solo", "written on h1"); err != nil {
					t.Fatal(err)
				}
			}

			l.d.Host(h3).Down = false
			l.steps(t, 2)
			if len(tc.failed) > 0 {
				// solo runs nowhere else: its copy on h3 stays, on its disk.
				if w := l.d.Where("solo"); len(w) != 1 || w[h3] == "" || l.d.Overlay(h3, "solo") != soloDisk {
					t.Errorf("solo once h3 is back: %v on %q, want left on h3 on %s", w, l.d.Overlay(h3, "solo"), soloDisk)
				}
				disk("once h3 is back", "written on h3")
				return
			}
			if w := l.d.Where("solo"); len(w) != 1 || w[h1] != driver.StateRunning {
				t.Errorf("solo once h3 is back: %v, want running on h1 only", w)
			}
			if got := l.d.Overlay(h1, "solo"); got != soloDisk {
				t.Errorf("solo on h1 runs on %q once h3 is back, want %s", got, soloDisk)
			}
			disk("once h3's stale copy is removed", "written on h1")

			// Removed everywhere (terraform destroy): its disk goes too.
			if err := l.a.ops(l.a.fleet.Topology(), "").RemoveGuest(ctx, "h1", "solo"); err != nil {
				t.Fatal(err)
			}
			if got := l.d.Disks(); len(got) > 0 {
				t.Errorf("overlays once solo is removed everywhere: %q, want none", got)
			}
		})
	}
}
