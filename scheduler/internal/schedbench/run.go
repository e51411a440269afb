package schedbench

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/virtpool/virtpool/scheduler"
)

// Algorithm is one contender: ours or a baseline.
type Algorithm struct {
	Name     string
	Baseline string // name of the baseline ours is compared with; "" for baselines
	Run      func(*scheduler.Cluster, scheduler.Policy) (*scheduler.Cluster, error)
}

// Algorithms returns the scheduler's Consolidate and Balance and the two
// baselines.
func Algorithms() []Algorithm {
	ours := func(f func(*scheduler.Cluster, scheduler.Policy) (scheduler.Plan, error)) func(*scheduler.Cluster, scheduler.Policy) (*scheduler.Cluster, error) {
		return func(c *scheduler.Cluster, pol scheduler.Policy) (*scheduler.Cluster, error) {
			p, err := f(c, pol)
			if err != nil {
				return nil, err
			}
			return c.Apply(p, pol) // validates every step
		}
	}
	base := func(f func(*scheduler.Cluster, scheduler.Policy) *scheduler.Cluster) func(*scheduler.Cluster, scheduler.Policy) (*scheduler.Cluster, error) {
		return func(c *scheduler.Cluster, pol scheduler.Policy) (*scheduler.Cluster, error) { return f(c, pol), nil }
	}
	return []Algorithm{
		{Name: "consolidate", Baseline: "ffd", Run: ours(func(c *scheduler.Cluster, p scheduler.Policy) (scheduler.Plan, error) { return c.Consolidate(0, p) })},
		{Name: "ffd", Run: base(FirstFitDecreasing)},
		{Name: "balance", Baseline: "greedy", Run: ours((*scheduler.Cluster).Balance)},
		{Name: "greedy", Run: base(GreedyBalance)},
	}
}

// plannerOnly returns the function whose time is measured: planning
// without validation.
func plannerOnly(a Algorithm) func(*scheduler.Cluster, scheduler.Policy) {
	switch a.Name {
	case "consolidate":
		return func(c *scheduler.Cluster, p scheduler.Policy) { _, _ = c.Consolidate(0, p) }
	case "balance":
		return func(c *scheduler.Cluster, p scheduler.Policy) { _, _ = c.Balance(p) }
	}
	return func(c *scheduler.Cluster, p scheduler.Policy) { _, _ = a.Run(c, p) }
}

// Evaluate runs a on c, validating the result and timing the planning
// (median of runs).
func Evaluate(a Algorithm, c *scheduler.Cluster, pol scheduler.Policy, runs int) Metrics {
	after, err := a.Run(c, pol)
	if err != nil {
		return Metrics{Err: err}
	}
	plan := plannerOnly(a)
	times := make([]time.Duration, runs)
	for i := range times {
		start := time.Now()
		plan(c, pol)
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	return Measure(c, after, pol, times[len(times)/2])
}

// Goals are the targets of the issue.
type Goals struct {
	MaxTime     time.Duration // for the largest trace
	HostsFactor float64       // hosts used / lower bound
}

// Report runs every algorithm on every spec and writes the table and goal
// verdicts to w. It returns whether all goals were met.
func Report(w io.Writer, specs []Spec, pol scheduler.Policy, runs int, g Goals) bool {
	algs := Algorithms()
	fmt.Fprintf(w, "%-18s %-11s %9s %5s %4s %6s %6s %9s %6s %6s | ratio   %6s %6s %6s %6s %6s %6s\n",
		"trace", "algorithm", "time", "hosts", "lb", "h/lb", "migr", "GiB", "maxU", "stdU",
		"time", "hosts", "migr", "bytes", "maxU", "stdU")
	ok := true
	var verdicts []string
	largest := 0
	for _, s := range specs {
		largest = max(largest, s.Guests)
	}
	for _, s := range specs {
		c := Generate(s)
		res := map[string]Metrics{}
		for _, a := range algs {
			res[a.Name] = Evaluate(a, c, pol, runs)
		}
		for _, a := range algs {
			m := res[a.Name]
			if m.Err != nil {
				fmt.Fprintf(w, "%-18s %-11s INVALID: %v\n", s, a.Name, m.Err)
				ok = false
				continue
			}
			fmt.Fprintf(w, "%-18s %-11s %9s %5d %4d %6.3f %6d %9.1f %6.3f %6.3f",
				s, a.Name, m.Time.Round(10*time.Microsecond), m.Hosts, m.LowerBound,
				float64(m.Hosts)/float64(max(m.LowerBound, 1)), m.Migrations, float64(m.Bytes)/float64(gib), m.MaxUtil, m.StdUtil)
			if b, found := res[a.Baseline]; found {
				fmt.Fprintf(w, " | %-7s %6s %6s %6s %6s %6s %6s", a.Baseline,
					ratio(float64(m.Time), float64(b.Time)), ratio(float64(m.Hosts), float64(b.Hosts)),
					ratio(float64(m.Migrations), float64(b.Migrations)), ratio(float64(m.Bytes), float64(b.Bytes)),
					ratio(m.MaxUtil, b.MaxUtil), ratio(m.StdUtil, b.StdUtil))
			}
			fmt.Fprintln(w)
		}
		check := func(name string, pass bool, detail string) {
			if !pass {
				ok = false
				verdicts = append(verdicts, fmt.Sprintf("MISS %-18s %s: %s", s, name, detail))
			}
		}
		con, ffd, bal, gr := res["consolidate"], res["ffd"], res["balance"], res["greedy"]
		if s.Guests == largest {
			check("time", con.Time <= g.MaxTime && bal.Time <= g.MaxTime,
				fmt.Sprintf("consolidate %v, balance %v > %v", con.Time, bal.Time, g.MaxTime))
		}
		check("hosts", float64(con.Hosts) <= g.HostsFactor*float64(con.LowerBound),
			fmt.Sprintf("%d hosts > %.2f x lower bound %d", con.Hosts, g.HostsFactor, con.LowerBound))
		check("migrations", con.Migrations <= ffd.Migrations,
			fmt.Sprintf("%d > ffd %d", con.Migrations, ffd.Migrations))
		check("max util", bal.MaxUtil <= gr.MaxUtil+1e-9,
			fmt.Sprintf("balance %.3f > greedy %.3f", bal.MaxUtil, gr.MaxUtil))
	}
	fmt.Fprintf(w, "\ngoals: largest trace planned in <= %v, consolidate hosts <= %.2f x lower bound, consolidate migrations <= ffd, balance max utilisation <= greedy\n",
		g.MaxTime, g.HostsFactor)
	for _, v := range verdicts {
		fmt.Fprintln(w, v)
	}
	if ok {
		fmt.Fprintln(w, "all goals met")
	}
	return ok
}

func ratio(a, b float64) string {
	if b == 0 {
		if a == 0 {
			return "1.00"
		}
		return "inf"
	}
	return fmt.Sprintf("%.2f", a/b)
}
