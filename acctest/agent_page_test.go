package acctest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts Debian's Chromium, headless, for one test. Its only
// proxy is a closed loopback port: Chromium reaches loopback (the agent)
// directly and nothing else at all (no updates, no safe browsing).
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: run 'make deps' (Debian's chromium package)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // as root
		chromedp.WindowSize(1366, 860),
		chromedp.ProxyServer("http://127.0.0.1:9"),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// present reports whether the page has an element matching sel.
func present(t *testing.T, ctx context.Context, sel string) bool {
	t.Helper()
	return holds(t, ctx, fmt.Sprintf("!!document.querySelector(%q)", sel))
}

// holds evaluates a JavaScript condition on the page.
func holds(t *testing.T, ctx context.Context, js string) bool {
	t.Helper()
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
	if err != nil {
		t.Fatalf("page: %v", err)
	}
	return ok
}

// waitPresent waits until the page has sel, or stop is closed and it
// still has not; the agent's samples pace it, the deadline only bounds a
// stuck page.
func waitPresent(t *testing.T, ctx context.Context, sel string, stop <-chan struct{}) bool {
	t.Helper()
	return waitHolds(t, ctx, fmt.Sprintf("!!document.querySelector(%q)", sel), stop)
}

// waitHolds waits, as waitPresent, until the condition js holds.
func waitHolds(t *testing.T, ctx context.Context, js string, stop <-chan struct{}) bool {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !holds(t, ctx, js) {
		select {
		case <-stop:
			return holds(t, ctx, js)
		default:
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// waitText waits, as waitPresent, until the element sel has text in it.
func waitText(t *testing.T, ctx context.Context, sel, text string, stop <-chan struct{}) bool {
	t.Helper()
	return waitHolds(t, ctx, fmt.Sprintf("(document.querySelector(%q)?.textContent ?? '').includes(%q)", sel, text), stop)
}

// TestAgentPage opens the agent's live page in headless Chromium and
// watches, without a reload, a guest appear on its host, a live migration
// in flight, and the guest on its new host with the migration in the
// timeline. VIRTPOOL_SCREENSHOT=FILE saves the page during the migration
// (make screenshot: docs/agent.png).
func TestAgentPage(t *testing.T) {
	needLab(t)
	src, dst := hostsAB()
	ag := startAgent(t, agentInterval)
	g := startGuest(t, src, 256)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(ag.URL)); err != nil {
		t.Fatalf("open %s: %v", ag.URL, err)
	}
	// A marker that a reload would lose.
	loaded, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`window.loadedOnce = Math.random()`))
	if err != nil {
		t.Fatal(err)
	}
	// A row for the guest in a host's card (any state: the destination
	// of a migration shows it paused meanwhile), or only running.
	guestOn := func(h string) string { return fmt.Sprintf(`.card[data-host=%q] tr[data-guest=%q]`, h, g.Name) }
	runningOn := func(h string) string { return guestOn(h) + `[data-state="running"]` }
	if !waitPresent(t, ctx, runningOn(src.Name), nil) {
		t.Fatalf("the page never showed %s running on %s", g.Name, src.Name)
	}
	if !present(t, ctx, `#conn.badge:not(.down)`) {
		t.Error("the page does not say it is live")
	}

	writeMemory(t, ag, g, 64) // 64 MiB at 8 MiB/s: a migration of seconds
	o := labOpts
	o.BandwidthMiBs = 8
	done := make(chan struct{})
	var migErr error
	go func() {
		defer close(done)
		_, migErr = drv.Migrate(context.Background(), request(g, dst, o), nil)
	}()
	// In flight, with the source's progress ("… of … sent").
	inFlight := fmt.Sprintf(`#migrations [data-guest=%q]`, g.Name)
	if !waitPresent(t, ctx, inFlight, done) {
		t.Errorf("the page never showed %s migrating", g.Name)
	} else if !waitText(t, ctx, inFlight, " sent, ", done) {
		t.Errorf("the page showed %s migrating, but never its progress", g.Name)
	} else if path := os.Getenv("VIRTPOOL_SCREENSHOT"); path != "" {
		// A third of the way, for a picture that shows it.
		waitHolds(t, ctx, fmt.Sprintf("+(document.querySelector(%q)?.dataset.progress ?? 1) >= 0.33", inFlight), done)
		if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err != nil {
			t.Errorf("screenshot: %v", err)
		} else if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Error(err)
		} else {
			t.Logf("screenshot of the page during the migration: %s", path)
		}
	}
	<-done
	if migErr != nil {
		t.Fatalf("migrate %s %s→%s: %v", g.Name, src.Name, dst.Name, migErr)
	}
	g.Host = dst
	g.assertOnlyOn(t, dst.Name)
	// Running on the destination and gone from the source, in one state.
	moved := fmt.Sprintf(`#hosts:has(%s):not(:has(%s))`, runningOn(dst.Name), guestOn(src.Name))
	if !waitPresent(t, ctx, moved, nil) {
		t.Errorf("the page never showed %s running on %s only (on %s: %v; on %s: %v)", g.Name, dst.Name,
			dst.Name, present(t, ctx, runningOn(dst.Name)), src.Name, present(t, ctx, guestOn(src.Name)))
	}
	if !waitPresent(t, ctx, `#events li[data-kind="migration_finished"]`, nil) {
		t.Error("the timeline has no finished migration")
	}
	if !waitText(t, ctx, fmt.Sprintf(`#finished tr[data-guest=%q]`, g.Name), " ms", nil) {
		t.Error("the finished migrations do not list the migration with its downtime")
	}
	if still, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`window.loadedOnce`)); err != nil || still != loaded {
		t.Errorf("the page was reloaded (marker %v, then %v, %v)", loaded, still, err)
	}
}
