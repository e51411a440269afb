// Command bench-scheduler compares the scheduler's Consolidate and Balance
// with first-fit decreasing and greedy baselines on generated traces and
// prints one table (make bench-scheduler).
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/virtpool/virtpool/scheduler"
	"github.com/virtpool/virtpool/scheduler/internal/schedbench"
)

func main() {
	runs := flag.Int("runs", 5, "timed runs per algorithm and trace (median reported)")
	strict := flag.Bool("strict", false, "exit 1 when a goal is missed")
	flag.Parse()
	pol := scheduler.DefaultPolicy()
	fmt.Printf("policy: high cpu %.2f mem %.2f, target cpu %.2f mem %.2f, hysteresis %.2f, vcpu ratio %.1f\n\n",
		pol.HighCPU, pol.HighMem, pol.TargetCPU, pol.TargetMem, pol.Hysteresis, pol.VCPURatio)
	ok := schedbench.Report(os.Stdout, schedbench.Specs(), pol, *runs,
		schedbench.Goals{MaxTime: 200 * time.Millisecond, HostsFactor: 1.05})
	if !ok && *strict {
		os.Exit(1)
	}
}
