package acctest

import (
	"context"
	"fmt"
	"os"
	"sort"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/virtpool/virtpool/lab/probe"
)

// BenchmarkMigration measures live migration on the lab (make
// bench-migration): per guest size, load and bandwidth cap, the median
// migration time and downtime (libvirt's and from 10 ms pings) over several
// migrations, and the ratio of migration time to a raw TCP transfer of the
// same bytes over the same link, measured right after each migration.
func BenchmarkMigration(b *testing.B) {
	needLab(b)
	const runs = 5
	type load struct {
		name           string
		cpu, mem, fill int // % of a vCPU, MiB dirtied continuously, MiB written once
	}
	idle, busy, dirty := load{name: "idle"}, load{name: "cpu 100%", cpu: 100}, load{name: "dirty 32 MiB", mem: 32}
	filled := load{name: "384 MiB data", fill: 384}
	// A dirtier rewrites memory faster than 100 MiB/s: such a migration
	// converges only once auto-converge has throttled the guest almost to
	// a stop, which measures the throttle, not the migration. So dirty
	// loads run with the 2000 MiB/s cap only.
	cases := []struct {
		memMiB uint64
		ld     load
		bw     uint64
	}{
		{128, idle, 2000}, {128, idle, 100}, {128, busy, 2000}, {128, busy, 100}, {128, dirty, 2000},
		{256, idle, 2000}, {256, idle, 100}, {256, busy, 2000}, {256, busy, 100}, {256, dirty, 2000},
		{512, filled, 2000}, {512, filled, 100},
	}
	var rows []string
	for _, c := range cases {
		memMiB, ld, bw := c.memMiB, c.ld, c.bw
		name := fmt.Sprintf("%dMiB/%s/%dMiBs", memMiB, ld.name, bw)
		b.Run(name, func(b *testing.B) {
			// A failed case still gets its row, so the table is whole.
			defer func() {
				if b.Failed() {
					rows = append(rows, fmt.Sprintf("%d MiB\t%s\t%d MiB/s\tFAILED (see its log above)\t\t\t\t\t\t\t", memMiB, ld.name, bw))
				}
			}()
			for i := 0; i < b.N; i++ {
				a, h2 := theLab.Hosts[0], theLab.Hosts[1]
				g := startGuest(b, a, memMiB)
				g.setLoad(b, ld.cpu, ld.mem)
				if ld.fill > 0 {
					g.fill(b, ld.fill)
				}
				o := labOpts
				o.BandwidthMiBs = bw
				o.AutoConverge = ld.mem > 0
				var el, wall, dj, dp []time.Duration
				var ratios, callRatios []float64
				var bytes uint64
				for r := 0; r < runs; r++ {
					to, from := h2, g.Host
					if from.Name == h2.Name {
						to = a
					}
					p, err := client.StartPing(g.IP)
					if err != nil {
						b.Fatalf("%v; the guest: %s", err, g.describe(b))
					}
					m := migrate(b, g, to, o)
					pr, err := p.Stop()
					if err != nil {
						b.Fatal(err)
					}
					raw, err := probe.RawTransfer(context.Background(), from.Namespace, to.Namespace, to.IP, int64(m.Bytes))
					if err != nil {
						b.Fatal(err)
					}
					el, wall = append(el, m.Elapsed), append(wall, m.Wall)
					dj, dp = append(dj, m.Downtime), append(dp, pr.Downtime)
					ratios = append(ratios, float64(m.Elapsed)/float64(raw))
					callRatios = append(callRatios, float64(m.Wall)/float64(raw))
					bytes += m.Bytes
				}
				mel, _ := medianMax(el)
				mwall, _ := medianMax(wall)
				mdj, xdj := medianMax(dj)
				mdp, xdp := medianMax(dp)
				ratio := medianFloat(ratios)
				b.ReportMetric(float64(mel.Milliseconds()), "migration-ms")
				b.ReportMetric(float64(mdj.Milliseconds()), "downtime-ms")
				b.ReportMetric(ratio, "x-raw")
				rows = append(rows, fmt.Sprintf("%d MiB\t%s\t%d MiB/s\t%s\t%s\t%s (max %s)\t%s (max %s)\t%d MiB\t%.2f\t%.2f\t",
					memMiB, ld.name, bw, mel, mwall.Round(time.Millisecond), mdj, xdj, mdp, xdp, bytes/runs>>20,
					ratio, medianFloat(callRatios)))
			}
		})
	}
	printTable([]string{fmt.Sprintf("migration benchmark: median of %d migrations each (TCG guests; accelerator chosen by the driver)", runs),
		"migration time: libvirt's job statistics; call: the whole driver call, as a caller waits for it.",
		"guest RAM\tload\tbandwidth cap\tmigration time\tcall\tdowntime (libvirt)\tdowntime (pings)\tdata\tvs raw transfer\tcall vs raw\t"}, rows)
}

// printTable prints a benchmark's table: its title lines, the last one the
// columns' names, then the rows (cells ending with a tab), right-aligned.
func printTable(head, rows []string) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w)
	for _, l := range append(head, rows...) {
		fmt.Fprintln(w, l)
	}
	w.Flush()
}

func medianFloat(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
