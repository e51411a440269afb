package acctest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/virtpool/virtpool/checkpoint"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/probe"
)

// BenchmarkCheckpoint measures what libvirt 9.0 and QEMU 7.2 can do to
// checkpoint a running guest (issue 14, make bench-checkpoint): for each
// way of capturing the lab's 128 MiB guest on h1, idle and under a
// memory-dirtying load, a capture every 2 s, and for each capture
//   - the guest's pause: the longest silence of 10 ms pings from the
//     client, how long the guest's clock stood still (a paused guest's
//     clock stops) and how late the guest's own 10 ms timer woke (a stall
//     of its vCPU while its clock runs), GET /clock in lab/guest/vpguest.c;
//   - the capture's time and its image's size;
//   - what the image adds to the one 2 s before: guest pages that changed,
//     new content-defined chunks (restic's chunker, ~5 KiB) and their
//     manifest, and fixed 4 KiB blocks of the file that changed in place.
//
// Then the last image is shipped to h2 through libvirt's storage streams
// (h1 → this process → h2, virStorageVolDownload and virStorageVolUpload),
// the guest on h1 is destroyed and the image restored on h2
// (virDomainRestoreFlags), which must answer with its clock and sequence
// file going on from the checkpoint.
//
// It calls libvirt itself, as BenchmarkAgent does, not through the driver
// process: these are measurements to choose a method, and the driver's
// interface gets the calls of the method chosen (see
// docs/guides/continuity.md).
func BenchmarkCheckpoint(b *testing.B) {
	needLab(b)
	const (
		captures = 12
		interval = 2 * time.Second
		memMiB   = 128
	)
	h1, h2 := theLab.Hosts[0], theLab.Hosts[1]
	src, dst := connectTo(b, h1), connectTo(b, h2)
	// Each host's own directory, not the shared image directory: what a
	// failed host held is lost with it.
	srcDir, dstDir := ckptDir(b, h1), ckptDir(b, h2)
	srcPool, dstPool := storagePool(b, src, srcDir), storagePool(b, dst, dstDir)

	// The dirtier writes one word of each page it dirties, or all of it:
	// chunks of a page that did not change are found again, so the first
	// flatters content-defined chunking.
	loads := []ckptLoad{{name: "idle"}, {name: "dirty 16 MiB/s, a word a page", mem: 64, rate: 16, page: 8},
		{name: "dirty 16 MiB/s, whole pages", mem: 64, rate: 16, page: checkpoint.PageSize}}
	var rows, restores []string
	for _, m := range checkpointMethods() {
		b.Run(m.name, func(b *testing.B) {
			defer func() {
				if b.Failed() {
					rows = append(rows, fmt.Sprintf("%s\tFAILED (see its log above)\t\t\t\t\t\t\t\t\t\t", m.name))
				}
			}()
			g := startGuest(b, h1, memMiB)
			cg := &ckptGuest{guest: g, conn: src, dir: srcDir}
			if m.setup != nil {
				if err := m.setup(cg); err != nil {
					b.Fatalf("%s: %v", m.name, err)
				}
			}
			defer cg.close()
			var last ckptSample
			for _, ld := range loads {
				if ld.mem > 0 {
					if _, err := client.Get(requestCtx(), g.IP, fmt.Sprintf("/load?mem=%d&rate=%d&page=%d", ld.mem, ld.rate, ld.page)); err != nil {
						b.Fatal(err)
					}
					// The dirtier's first pass over its buffer, at its rate.
					time.Sleep(time.Duration(ld.mem/ld.rate+1) * time.Second)
				}
				var ss []ckptSample
				start := time.Now()
				for i := range captures {
					time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
					path := filepath.Join(srcDir, fmt.Sprintf("%s-%s-%d.img", m.file, ld.file(), i))
					ss = append(ss, measureCapture(b, cg, m, path))
				}
				r := analyse(b, ss, memMiB)
				rows = append(rows, r.row(m.name, ld.name))
				b.Logf("%s, %s: %s", m.name, ld.name, r.detail)
				last = ss[len(ss)-1]
				for _, s := range ss[:len(ss)-1] {
					_ = os.Remove(s.path)
				}
			}
			restores = append(restores, restoreElsewhere(b, cg, m.name, last, srcPool, dstPool, dst, dstDir))
		})
	}
	printTable([]string{
		fmt.Sprintf("checkpoint benchmark: the lab's %d MiB guest (TCG, one vCPU) on %s, a capture every %s, %d captures per row (p50/p95)", memMiB, h1.Name, interval, captures),
		"pause: pings (10 ms) from the client; clock: the guest's clock stood still; stall: the guest's 10 ms timer woke that late; downtime: QEMU's or libvirt's own figure.",
		"shipped per checkpoint against the image before, in % of RAM: changed guest pages (by address); new content-defined chunks (~5 KiB) plus the manifest; changed 4 KiB blocks of the file (in place).",
		"method\tload\tpause (pings)\tclock stopped\tstall\tdowntime\tcapture\timage\tpages changed\tCDC new+manifest\tfixed 4 KiB in place\t",
	}, rows)
	printTable([]string{
		fmt.Sprintf("restore of the last image elsewhere: shipped %s → this process → %s over libvirt's storage streams, the guest on %s destroyed, restored on %s", h1.Name, h2.Name, h1.Name, h2.Name),
		"method\timage\tdownload\tupload\trestore\tanswers after\tclock from checkpoint\tsequence file\t",
	}, restores)
}

// ckptLoad is the guest's load during a series of captures.
type ckptLoad struct {
	name      string
	mem, rate int // MiB dirtied over and over, at rate MiB/s (GET /load)
	page      int // bytes of each page written
}

func (l ckptLoad) file() string {
	if l.mem == 0 {
		return "idle"
	}
	return fmt.Sprintf("dirty%d-%d", l.rate, l.page)
}

// ckptGuest is a guest being checkpointed, with the libvirt connection to
// its host and the host's directory for images.
type ckptGuest struct {
	*guest
	conn *lv.Connect
	dir  string
	// For QEMU's background snapshot: where QEMU sends its stream.
	sock string
	ln   *net.UnixListener
}

// close stops listening for QEMU's streams.
func (g *ckptGuest) close() {
	if g.ln != nil {
		_ = g.ln.Close()
	}
}

func (g *ckptGuest) domain(tb testing.TB) *lv.Domain {
	tb.Helper()
	dom, err := g.conn.LookupDomainByName(g.Name)
	if err != nil {
		tb.Fatalf("look up %s: %v", g.Name, err)
	}
	return dom
}

// captured is what one capture reports besides its image.
type captured struct {
	downtime time.Duration // the hypervisor's own figure (-1: none)
	extra    time.Duration // a restore that is part of the pause (save)
}

// ckptMethod is one way of capturing a running guest's memory into a file.
type ckptMethod struct {
	name, file string
	setup      func(*ckptGuest) error
	capture    func(tb testing.TB, g *ckptGuest, path string) captured
}

func checkpointMethods() []ckptMethod {
	return []ckptMethod{
		{name: "live external snapshot", file: "snap", capture: captureSnapshot},
		{name: "live external snapshot, max downtime 20 ms", file: "snap20", setup: func(g *ckptGuest) error {
			// QEMU's downtime-limit (300 ms unless told) is what it stops
			// the guest for at most at the end; libvirt sets it outside a
			// migration too.
			dom, err := g.conn.LookupDomainByName(g.Name)
			if err != nil {
				return err
			}
			defer dom.Free()
			return dom.MigrateSetMaxDowntime(20, 0)
		}, capture: captureSnapshot},
		{name: "save + restore", file: "save", capture: func(tb testing.TB, g *ckptGuest, path string) captured {
			return captureSave(tb, g, path, 0)
		}},
		{name: "save + restore, bypass cache", file: "savedirect", capture: func(tb testing.TB, g *ckptGuest, path string) captured {
			return captureSave(tb, g, path, lv.DOMAIN_SAVE_BYPASS_CACHE)
		}},
		{name: "QEMU background-snapshot", file: "bg", setup: setupBackground, capture: captureBackground},
	}
}

// captureSnapshot takes a live external snapshot with a memory file and
// no disk (the guest has none) and no metadata: libvirt 9.0 migrates the
// memory to the file while the guest runs, pauses it for the last dirty
// pages and the devices, and resumes it.
func captureSnapshot(tb testing.TB, g *ckptGuest, path string) captured {
	tb.Helper()
	x, err := (&libvirtxml.DomainSnapshot{
		Name:   strings.TrimSuffix(filepath.Base(path), ".img"),
		Memory: &libvirtxml.DomainSnapshotMemory{Snapshot: "external", File: path},
		Disks:  &libvirtxml.DomainSnapshotDisks{},
	}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	dom := g.domain(tb)
	defer dom.Free()
	snap, err := dom.CreateSnapshotXML(x, lv.DOMAIN_SNAPSHOT_CREATE_LIVE|lv.DOMAIN_SNAPSHOT_CREATE_NO_METADATA)
	if err != nil {
		tb.Fatalf("live snapshot of %s: %v", g.Name, err)
	}
	_ = snap.Free()
	c := captured{downtime: -1}
	if js, err := dom.GetJobStats(lv.DOMAIN_JOB_STATS_COMPLETED); err == nil && js.DowntimeSet {
		c.downtime = time.Duration(js.Downtime) * time.Millisecond
	}
	return c
}

// captureSave saves the guest (libvirt pauses it for the whole write and
// stops it) and restores it on the same host from the file: the pause of
// a checkpoint taken this way is both.
func captureSave(tb testing.TB, g *ckptGuest, path string, flags lv.DomainSaveRestoreFlags) captured {
	tb.Helper()
	dom := g.domain(tb)
	defer dom.Free()
	// SaveParams: SaveFlags passes libvirt an empty XML, never none.
	if err := dom.SaveParams(lv.DomainSaveRestoreParams{FileSet: true, File: path}, flags); err != nil {
		tb.Fatalf("save %s: %v", g.Name, err)
	}
	start := time.Now()
	if err := g.conn.DomainRestoreFlags(path, "", flags|lv.DOMAIN_SAVE_RUNNING); err != nil {
		tb.Fatalf("restore %s on %s: %v", g.Name, g.Host.Name, err)
	}
	return captured{downtime: -1, extra: time.Since(start)}
}

// setupBackground turns on QEMU's background-snapshot capability (QEMU
// 6.0+: RAM write-protected with userfaultfd, each page copied before the
// guest's first write to it) and lifts QEMU's bandwidth cap, through the
// QEMU monitor (libvirt 9.0 has no API for it), and listens for QEMU's
// stream on a unix socket in the host's directory.
func setupBackground(g *ckptGuest) error {
	dom, err := g.conn.LookupDomainByName(g.Name)
	if err != nil {
		return err
	}
	defer dom.Free()
	caps, err := qmp(dom, "query-migrate-capabilities", nil)
	if err != nil {
		return err
	}
	if !strings.Contains(string(caps), `"background-snapshot"`) {
		return fmt.Errorf("QEMU offers no background-snapshot capability: %s", caps)
	}
	if _, err := qmp(dom, "migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{{"capability": "background-snapshot", "state": true}}}); err != nil {
		return fmt.Errorf("background-snapshot refused: %w", err)
	}
	if _, err := qmp(dom, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(10) << 30}); err != nil {
		return err
	}
	g.sock = filepath.Join(g.dir, g.Name+".sock")
	_ = os.Remove(g.sock)
	g.ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: g.sock, Net: "unix"})
	return err
}

// captureBackground has QEMU write a background snapshot to the unix
// socket (migrate unix:…), where this process writes it into a file after
// a libvirt save-image header, so that virDomainRestoreFlags restores it.
func captureBackground(tb testing.TB, g *ckptGuest, path string) captured {
	tb.Helper()
	dom := g.domain(tb)
	defer dom.Free()
	xml, err := dom.GetXMLDesc(lv.DOMAIN_XML_SECURE | lv.DOMAIN_XML_MIGRATABLE)
	if err != nil {
		tb.Fatal(err)
	}
	received := make(chan error, 1)
	go func() { received <- receiveImage(g.ln, path, xml) }()
	if _, err := qmp(dom, "migrate", map[string]any{"uri": "unix:" + g.sock}); err != nil {
		_ = g.ln.SetDeadline(time.Now()) // the receiver gives up
		tb.Fatalf("background snapshot of %s: %v (receiving: %v)", g.Name, err, <-received)
	}
	var st struct {
		Status   string `json:"status"`
		Downtime int64  `json:"downtime"`
		Error    string `json:"error-desc"`
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		out, err := qmp(dom, "query-migrate", nil)
		if err == nil {
			err = json.Unmarshal(out, &st)
		}
		if err != nil {
			tb.Fatal(err)
		}
		if st.Status == "completed" || st.Status == "failed" || st.Status == "cancelled" || time.Now().After(deadline) {
			break
		}
	}
	if err := <-received; err != nil || st.Status != "completed" {
		tb.Fatalf("background snapshot of %s: QEMU says %s %s; receiving: %v", g.Name, st.Status, st.Error, err)
	}
	return captured{downtime: time.Duration(st.Downtime) * time.Millisecond}
}

// receiveImage takes one stream from ln into path, after a save-image
// header for the domain xml.
func receiveImage(ln *net.UnixListener, path, xml string) error {
	_ = ln.SetDeadline(time.Now().Add(time.Minute))
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := checkpoint.WriteSaveHeader(f, xml, true); err != nil {
		f.Close()
		return err
	}
	if _, err := io.Copy(f, c); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// qmp runs a QMP command through libvirt and returns its "return".
func qmp(dom *lv.Domain, cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	out, err := dom.QemuMonitorCommand(string(b), lv.DOMAIN_QEMU_MONITOR_COMMAND_DEFAULT)
	if err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
		Error  *struct {
			Desc string `json:"desc"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return nil, fmt.Errorf("QMP %s: %w: %s", cmd, err, out)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("QMP %s: %s", cmd, resp.Error.Desc)
	}
	return resp.Return, nil
}

// ckptSample is one capture, as measured.
type ckptSample struct {
	path                  string
	ping, stopped, stall  time.Duration
	downtime, took, extra time.Duration
	before                probe.GuestClock // just before the capture
}

// measureCapture takes one capture with pings running and the guest's
// clock read just before and just after.
func measureCapture(tb testing.TB, g *ckptGuest, m ckptMethod, path string) ckptSample {
	tb.Helper()
	p, err := client.StartPing(g.IP)
	if err != nil {
		tb.Fatalf("%v; the guest: %s", err, g.describe(tb))
	}
	c0, err := client.Clock(requestCtx(), g.IP)
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	c := m.capture(tb, g, path)
	took := time.Since(start) - c.extra
	c1, err := client.Clock(requestCtx(), g.IP)
	if err != nil {
		tb.Fatalf("%v; the guest: %s", err, g.describe(tb))
	}
	pr, err := p.Stop()
	if err != nil {
		tb.Fatal(err)
	}
	return ckptSample{path: path, ping: pr.Downtime, stopped: max(0, c1.Stopped(c0)), stall: c1.Lag,
		downtime: c.downtime, took: took, extra: c.extra, before: c0}
}

// ckptRow is a series of captures, summed up.
type ckptRow struct {
	ping, stopped, stall, downtime, took [2]time.Duration // p50, p95
	imageMiB                             float64
	pages, cdc, fixed                    [2]float64 // % of RAM per checkpoint
	detail                               string
}

// analyse reads each image of a series and what it adds to the one
// before.
func analyse(tb testing.TB, ss []ckptSample, memMiB int) ckptRow {
	tb.Helper()
	var r ckptRow
	col := func(f func(ckptSample) time.Duration) [2]time.Duration {
		var ds []time.Duration
		for _, s := range ss {
			if d := f(s); d >= 0 {
				ds = append(ds, d)
			}
		}
		if len(ds) == 0 {
			return [2]time.Duration{-1, -1}
		}
		return [2]time.Duration{quantile(ds, 0.5), quantile(ds, 0.95)}
	}
	r.ping = col(func(s ckptSample) time.Duration { return s.ping })
	r.stopped = col(func(s ckptSample) time.Duration { return s.stopped })
	r.stall = col(func(s ckptSample) time.Duration { return s.stall })
	r.downtime = col(func(s ckptSample) time.Duration { return s.downtime })
	r.took = col(func(s ckptSample) time.Duration { return s.took })
	ram := float64(memMiB << 20)
	pct := func(n int64) float64 { return 100 * float64(n) / ram }
	var sizes, pages, cdc, fixed []float64
	var prevRAM *checkpoint.RAM
	var prevCDC, prevFixed checkpoint.Manifest
	var resent, restores []string
	for _, s := range ss {
		img, err := os.ReadFile(s.path)
		if err != nil {
			tb.Fatal(err)
		}
		rd := bytes.NewReader(img)
		if _, err := checkpoint.ReadSaveHeader(rd); err != nil {
			tb.Fatalf("%s: %v", s.path, err)
		}
		mem, err := checkpoint.ReadRAM(rd)
		if err != nil {
			tb.Fatalf("%s: RAM at byte %d of its stream: %v", s.path, mem.Bytes, err)
		}
		if !mem.Complete() || !mem.Device {
			tb.Fatalf("%s: %d pages of %d MiB, device state %t: not a whole image", s.path, len(mem.Pages), mem.Size()>>20, mem.Device)
		}
		cut, err := checkpoint.SmallCDC.Cut(bytes.NewReader(img))
		if err != nil {
			tb.Fatal(err)
		}
		fx, err := checkpoint.CutFixed(bytes.NewReader(img), checkpoint.PageSize)
		if err != nil {
			tb.Fatal(err)
		}
		sizes = append(sizes, float64(len(img))/(1<<20))
		resent = append(resent, fmt.Sprintf("%d", mem.Records-len(mem.Pages)))
		if s.extra > 0 {
			restores = append(restores, s.extra.Round(time.Millisecond).String())
		}
		if prevRAM != nil {
			_, n := cut.New(prevCDC)
			_, f := fx.Changed(prevFixed)
			pages = append(pages, pct(int64(mem.Changed(prevRAM))*checkpoint.PageSize))
			cdc = append(cdc, pct(n+cut.ManifestBytes()))
			fixed = append(fixed, pct(f))
		}
		prevRAM, prevCDC, prevFixed = mem, cut, fx
	}
	r.imageMiB = quantile(sizes, 0.5)
	r.pages = [2]float64{quantile(pages, 0.5), quantile(pages, 0.95)}
	r.cdc = [2]float64{quantile(cdc, 0.5), quantile(cdc, 0.95)}
	r.fixed = [2]float64{quantile(fixed, 0.5), quantile(fixed, 0.95)}
	r.detail = fmt.Sprintf("pages sent twice or more per image: %s", strings.Join(resent, " "))
	if len(restores) > 0 {
		r.detail += "; restores in the pause: " + strings.Join(restores, " ")
	}
	return r
}

func (r ckptRow) row(method, load string) string {
	ds := func(d [2]time.Duration) string {
		if d[0] < 0 {
			return "-"
		}
		return fmt.Sprintf("%s/%s", d[0].Round(time.Millisecond), d[1].Round(time.Millisecond))
	}
	ps := func(p [2]float64) string { return fmt.Sprintf("%.2f/%.2f%%", p[0], p[1]) }
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f MiB\t%s\t%s\t%s\t", method, load, ds(r.ping), ds(r.stopped), ds(r.stall),
		ds(r.downtime), ds(r.took), r.imageMiB, ps(r.pages), ps(r.cdc), ps(r.fixed))
}

// restoreElsewhere ships the image at path (on g's host) to the other
// host over libvirt's storage streams, destroys the guest and restores it
// there from the image, and checks that it goes on from the checkpoint.
func restoreElsewhere(tb testing.TB, g *ckptGuest, method string, last ckptSample, srcPool, dstPool *lv.StoragePool, dst *lv.Connect, dstDir string) string {
	tb.Helper()
	img, down := download(tb, g.conn, srcPool, last.path)
	target := filepath.Join(dstDir, filepath.Base(last.path))
	up := upload(tb, dst, dstPool, target, img)
	if _, err := checkpoint.ReadSaveHeader(bytes.NewReader(img)); err != nil {
		tb.Fatalf("shipped image: %v", err)
	}
	at, err := client.Clock(requestCtx(), g.IP)
	if err != nil {
		tb.Fatal(err)
	}
	dom := g.domain(tb)
	if err := dom.Destroy(); err != nil {
		tb.Fatal(err)
	}
	dom.Free()
	start := time.Now()
	if err := dst.DomainRestoreFlags(target, "", lv.DOMAIN_SAVE_RUNNING); err != nil {
		tb.Fatalf("restore %s on the other host: %v", g.Name, err)
	}
	restore := time.Since(start)
	if err := client.WaitReady(context.Background(), g.IP, 30*time.Second); err != nil {
		tb.Fatalf("%s restored: %v", g.Name, err)
	}
	answers := time.Since(start)
	c, err := client.Clock(requestCtx(), g.IP)
	if err != nil {
		tb.Fatal(err)
	}
	// The clock goes on from the checkpoint: past the guest's clock just
	// before the capture, behind the destroyed guest's (not a new boot).
	clock := fmt.Sprintf("yes, %s past the capture's start", (c.Mono - last.before.Mono).Round(10*time.Millisecond))
	if c.Mono < last.before.Mono || c.Mono > at.Mono {
		clock = fmt.Sprintf("NO: %s, capture began at %s, destroyed at %s", c.Mono, last.before.Mono, at.Mono)
	}
	var seq string
	if n, err := client.Sequence(requestCtx(), g.IP); err != nil {
		seq = "BROKEN: " + err.Error()
	} else {
		seq = fmt.Sprintf("continuous, 1…%d", n)
	}
	if strings.HasPrefix(clock, "NO") || strings.HasPrefix(seq, "BROKEN") {
		tb.Errorf("%s restored on the other host: clock %s, sequence %s", method, clock, seq)
	}
	mib := float64(len(img)) / (1 << 20)
	rate := func(d time.Duration) string {
		return fmt.Sprintf("%s (%.0f MiB/s)", d.Round(time.Millisecond), mib/d.Seconds())
	}
	return fmt.Sprintf("%s\t%.1f MiB\t%s\t%s\t%s\t%s\t%s\t%s\t", method, mib, rate(down), rate(up),
		restore.Round(time.Millisecond), answers.Round(time.Millisecond), clock, seq)
}

// download reads the volume at path through a libvirt stream.
func download(tb testing.TB, c *lv.Connect, pool *lv.StoragePool, path string) ([]byte, time.Duration) {
	tb.Helper()
	start := time.Now()
	if err := pool.Refresh(0); err != nil {
		tb.Fatal(err)
	}
	vol, err := c.LookupStorageVolByPath(path)
	if err != nil {
		tb.Fatalf("volume %s: %v", path, err)
	}
	defer vol.Free()
	st, err := c.NewStream(0)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = st.Free() }()
	if err := vol.Download(st, 0, 0, 0); err != nil {
		tb.Fatalf("download %s: %v", path, err)
	}
	var out bytes.Buffer
	buf := make([]byte, 1<<20)
	for {
		n, err := st.Recv(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			_ = st.Abort()
			tb.Fatalf("download %s: %v", path, err)
		}
		out.Write(buf[:n])
	}
	if err := st.Finish(); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes(), time.Since(start)
}

// upload writes img into a new volume at path through a libvirt stream.
func upload(tb testing.TB, c *lv.Connect, pool *lv.StoragePool, path string, img []byte) time.Duration {
	tb.Helper()
	start := time.Now()
	x, err := (&libvirtxml.StorageVolume{
		Name:     filepath.Base(path),
		Capacity: &libvirtxml.StorageVolumeSize{Value: uint64(len(img)), Unit: "B"},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "raw"}},
	}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	vol, err := pool.StorageVolCreateXML(x, 0)
	if err != nil {
		tb.Fatalf("volume %s: %v", path, err)
	}
	defer vol.Free()
	st, err := c.NewStream(0)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = st.Free() }()
	if err := vol.Upload(st, 0, uint64(len(img)), 0); err != nil {
		tb.Fatalf("upload %s: %v", path, err)
	}
	for off := 0; off < len(img); {
		n, err := st.Send(img[off:min(off+1<<20, len(img))])
		if err != nil {
			_ = st.Abort()
			tb.Fatalf("upload %s: %v", path, err)
		}
		off += n
	}
	if err := st.Finish(); err != nil {
		tb.Fatal(err)
	}
	return time.Since(start)
}

// connectTo opens a libvirt connection to h for the benchmark's length.
func connectTo(tb testing.TB, h lab.Host) *lv.Connect {
	tb.Helper()
	c, err := lv.NewConnect(h.URI)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _, _ = c.Close() })
	return c
}

// ckptDir is the directory for images of the host's own (its libvirt
// state directory), emptied and removed afterwards.
func ckptDir(tb testing.TB, h lab.Host) string {
	tb.Helper()
	dir := filepath.Join(h.StateDir, "lib", "checkpoints")
	if err := os.RemoveAll(dir); err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// storagePool is a transient directory pool over dir, stopped afterwards.
func storagePool(tb testing.TB, c *lv.Connect, dir string) *lv.StoragePool {
	tb.Helper()
	const name = "virtpool-checkpoints"
	if old, err := c.LookupStoragePoolByName(name); err == nil { // a killed run's
		_ = old.Destroy()
		old.Free()
	}
	x, err := (&libvirtxml.StoragePool{
		Type:   "dir",
		Name:   name,
		Target: &libvirtxml.StoragePoolTarget{Path: dir},
	}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	p, err := c.StoragePoolCreateXML(x, 0)
	if err != nil {
		tb.Fatalf("storage pool for %s: %v", dir, err)
	}
	tb.Cleanup(func() {
		if err := p.Destroy(); err != nil {
			tb.Errorf("stop storage pool %s: %v", dir, err)
		}
		p.Free()
	})
	return p
}

// quantile is the q-quantile of xs by the nearest rank.
func quantile[T time.Duration | float64 | int64](xs []T, q float64) T {
	if len(xs) == 0 {
		return 0
	}
	s := append([]T(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[max(0, int(math.Ceil(q*float64(len(s))))-1)]
}
