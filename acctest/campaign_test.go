package acctest

import (
	"fmt"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/lab/probe"
)

// R-T1: a guest live-migrated from A to B runs on B, not on A, with the same
// UUID, and is never seen running on both.
func TestRT1LiveMigration(t *testing.T) {
	needLab(t)
	a, b := hostsAB()
	g := startGuest(t, a, 128)
	g.assertOnlyOn(t, a.Name)
	m := migrate(t, g, b, labOpts)
	if m.ProgressCalls == 0 && m.Elapsed > 300*time.Millisecond {
		t.Errorf("no progress reported during a %s migration", m.Elapsed)
	}
	if err := g.waitReady(10 * time.Second); err != nil {
		t.Fatalf("guest does not answer after migration: %v", err)
	}
	t.Logf("R-T1 %s→%s: elapsed %s downtime %s bytes %d", m.From, m.To, m.Elapsed, m.Downtime, m.Bytes)
}

// R-T2 and R-T3: an HTTP stream and a raw TCP stream from the guest survive
// two migrations (A→B→A) with no byte lost, and the file the guest appends
// 1,2,3,… to has no gap and no repeat.
func TestRT2RT3StreamsAndSequenceSurviveTwoMigrations(t *testing.T) {
	needLab(t)
	a, b := hostsAB()
	g := startGuest(t, a, 128)
	httpS, err := client.FollowHTTP(g.IP)
	if err != nil {
		t.Fatal(err)
	}
	tcpS, err := client.FollowTCP(g.IP)
	if err != nil {
		t.Fatal(err)
	}
	waitStreamAdvance(t, g, httpS, 20)
	waitStreamAdvance(t, g, tcpS, 20)
	before := g.seqCheck(t)
	for _, to := range []struct{ name string }{{b.Name}, {a.Name}} {
		h, _ := theLab.Host(to.name)
		m := migrate(t, g, h, labOpts)
		waitStreamAdvance(t, g, httpS, 50)
		waitStreamAdvance(t, g, tcpS, 50)
		t.Logf("%s→%s: elapsed %s, downtime %s", m.From, m.To, m.Elapsed, m.Downtime)
	}
	after := g.seqCheck(t)
	hr, tr := httpS.Stop(), tcpS.Stop()
	for name, r := range map[string]probe.StreamResult{"HTTP": hr, "TCP": tr} {
		if r.Err != nil {
			t.Errorf("R-T2 %s stream: %v", name, r.Err)
		}
		t.Logf("R-T2 %s stream: %d lines, %d bytes, longest stall %s, no loss", name, r.Lines, r.Bytes, r.MaxStall.Round(time.Millisecond))
	}
	if after <= before {
		t.Errorf("R-T3: sequence did not grow across migrations: %d then %d", before, after)
	}
	t.Logf("R-T3 sequence 1..%d continuous (was 1..%d before the migrations)", after, before)
}

// R-T4: migration at several CPU loads and under memory dirtying; streams
// and the sequence file still hold, and the migration converges
// (auto-converge, or post-copy, which must really switch).
func TestRT4MigrationUnderLoad(t *testing.T) {
	needLab(t)
	autoConverge := func(o *driver.MigrateOptions) { o.AutoConverge = true }
	runLoadCases(t, []loadCase{
		{"idle", 0, 0, nil},
		{"cpu 50%", 50, 0, nil},
		{"cpu 100%", 100, 0, nil},
		{"cpu 100%, auto-converge", 100, 0, autoConverge},
		{"dirty 32 MiB, auto-converge", 0, 32, autoConverge},
		{"cpu 100% + dirty 32 MiB, auto-converge", 100, 32, autoConverge},
		{"dirty 64 MiB, post-copy after 300 ms", 0, 64, func(o *driver.MigrateOptions) {
			o.PostCopy, o.PostCopyAfter = true, 300*time.Millisecond
		}},
	})
}

type loadCase struct {
	name     string
	cpu, mem int
	opts     func(o *driver.MigrateOptions)
}

// runLoadCases migrates one guest back and forth between A and B, once per
// load case, following its TCP stream throughout.
func runLoadCases(t *testing.T, cases []loadCase) {
	a, b := hostsAB()
	g := startGuest(t, a, 128)
	var rows []string
	s, err := client.FollowTCP(g.IP)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	for i, c := range cases {
		g.setLoad(t, c.cpu, c.mem)
		time.Sleep(500 * time.Millisecond) // let the load settle
		o := labOpts
		if c.opts != nil {
			c.opts(&o)
		}
		to := b
		if i%2 == 1 {
			to = a
		}
		t.Logf("R-T4 %s: migrating %s→%s", c.name, g.Host.Name, to.Name)
		m := migrate(t, g, to, o)
		if o.PostCopyAfter > 0 && !m.PostCopy {
			t.Errorf("R-T4 %s: the migration did not switch to post-copy", c.name)
		}
		waitStreamAdvance(t, g, s, 20)
		rows = append(rows, fmt.Sprintf("%-40s %-6s %10s %10s %12d %v", c.name, m.From+"→"+m.To,
			m.Elapsed, m.Downtime, m.Bytes, m.PostCopy))
	}
	g.setLoad(t, 0, 0)
	n := g.seqCheck(t)
	if r := s.Stop(); r.Err != nil {
		t.Fatalf("stream under load: %v", r.Err)
	}
	t.Logf("R-T4 (sequence 1..%d continuous, TCP stream unbroken)\n%-40s %-6s %10s %10s %12s %s\n%s", n,
		"load", "move", "elapsed", "downtime", "bytes", "postcopy", joinLines(rows))
}

func joinLines(rows []string) string {
	s := ""
	for _, r := range rows {
		s += r + "\n"
	}
	return s
}
