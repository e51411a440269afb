package acctest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkMigrationDelay is seed 002's R-T6: the delay a migration adds
// to a program running in the guest, against the migration's time. The
// guest runs a fixed computation (GET /work: CPU only, ~6 s alone), timed
// from the client, alone and with a live migration started half a second
// into it, in turn.
func BenchmarkMigrationDelay(b *testing.B) {
	needLab(b)
	const runs = 5
	const target = 6 * time.Second // longer than any migration here
	cases := []struct {
		memMiB         uint64
		load           string
		dirtyMiB, fill int
	}{
		{128, "idle", 0, 0}, {256, "idle", 0, 0}, {512, "384 MiB data", 0, 384},
		{128, "dirty 32 MiB", 32, 0}, {256, "dirty 32 MiB", 32, 0},
	}
	var rows []string
	for _, c := range cases {
		b.Run(fmt.Sprintf("%dMiB/%s", c.memMiB, c.load), func(b *testing.B) {
			a, h2 := hostsAB()
			for i := 0; i < b.N; i++ {
				g := startGuest(b, a, c.memMiB)
				if c.fill > 0 {
					g.fill(b, c.fill)
				}
				g.setLoad(b, 0, c.dirtyMiB)
				work := func(n int64) time.Duration {
					d, err := client.Work(context.Background(), g.IP, n)
					if err != nil {
						b.Fatal(err)
					}
					return d
				}
				// Calibrate: rounds for ~target alone (twice: the
				// first run also warms TCG's translation cache).
				n := int64(20_000_000)
				for range 2 {
					n = int64(float64(n) * float64(target) / float64(work(n)))
				}
				// Alone and with a migration in turn, so that drifts of the
				// machine's speed fall on both; the delay is the median of
				// each pair's difference.
				var alone, with, delays, mig, down []time.Duration
				o := labOpts
				o.AutoConverge = c.dirtyMiB > 0
				for r := 0; r < runs; r++ {
					alone = append(alone, work(n))
					to := h2
					if g.Host.Name == h2.Name {
						to = a
					}
					done := make(chan time.Duration, 1)
					go func() {
						d, err := client.Work(context.Background(), g.IP, n)
						if err != nil {
							b.Error(err)
						}
						done <- d
					}()
					time.Sleep(500 * time.Millisecond)
					m := migrate(b, g, to, o)
					with, mig, down = append(with, <-done), append(mig, m.Elapsed), append(down, m.Downtime)
					delays = append(delays, with[r]-alone[r])
				}
				ma, _ := medianMax(alone)
				mw, _ := medianMax(with)
				mm, _ := medianMax(mig)
				md, _ := medianMax(down)
				delay, _ := medianMax(delays) // (a median: signed values are fine)
				b.ReportMetric(float64(delay.Milliseconds()), "delay-ms")
				rows = append(rows, fmt.Sprintf("%d MiB\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t",
					c.memMiB, c.load, mm, md, ma, mw, delay, float64(delay)/float64(mm)))
			}
		})
	}
	printTable([]string{fmt.Sprintf("R-T6: delay a live migration adds to a fixed computation in the guest (median of %d; TCG, one vCPU, unshaped veth)", runs),
		"guest RAM\tload\tmigration\tdowntime\twork alone\twork with a migration\tdelay\tdelay / migration time\t"}, rows)
}
