package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/agent"
	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/driver/plugin"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/fleet"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/autoscaler"
	"github.com/virtpool/virtpool/lab/probe"
	"github.com/virtpool/virtpool/pool"
)

// storyLabHosts is the lab the story brings up: it must be up before
// terraform can plan (the configuration reads the lab's lab.json), so it
// cannot come from the configuration's outputs; the story checks, after
// apply, that the pool's hosts are in it.
const storyLabHosts = 3

// storyCmd tells the whole story on the lab: terraform applies a pool and
// its migration policy (examples/autoscaler/demo), the Nomad Autoscaler
// runs the example policies with virtpool's plugins, the pool's load goes
// up and down, and a timeline shows load, decisions, migrations (with
// their downtime), the pool's size and the hosts in use. Then everything
// is torn down.
func storyCmd(ctx context.Context, log hclog.Logger, args []string) (err error) {
	fs := newFlags("story")
	keep := fs.Bool("keep", false, "leave the lab, the pool and the agent's log")
	dir := fs.String("dir", "examples/autoscaler/demo", "the demo's Terraform configuration, agent configuration and policies")
	binDir := fs.String("bin", "", "directory with nomad-autoscaler, plugins/ and terraformrc (default: beside this binary)")
	phase := fs.Duration("phase", 45*time.Second, "how long each load phase lasts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	step := func(format string, a ...any) { fmt.Printf("==> "+format+"\n", a...) }
	if *binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		*binDir = filepath.Dir(exe)
	}
	demoDir, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	for _, f := range []string{"nomad-autoscaler", "plugins/virtpool-apm", "plugins/virtpool-target", "plugins/virtpool-driver", "terraformrc"} {
		if _, err := os.Stat(filepath.Join(*binDir, f)); err != nil {
			return fmt.Errorf("%s missing (run make, make terraformrc): %w", filepath.Join(*binDir, f), err)
		}
	}

	step("bringing the lab up (%d hosts)", storyLabHosts)
	_, loadErr := lab.Load()
	l, err := lab.Up(ctx, lab.Config{Hosts: storyLabHosts, Log: log.Named("lab")})
	if err != nil {
		return err
	}
	if !*keep && loadErr != nil {
		defer func() {
			step("tearing the lab down")
			err = errors.Join(err, lab.Down(context.Background(), log.Named("lab")))
		}()
	}
	proc, err := plugin.Start(filepath.Join(*binDir, "plugins", plugin.BinaryName), log)
	if err != nil {
		return err
	}
	defer proc.Close()
	drv := proc.Driver

	// Terraform: the pool and its migration policy.
	tfDir, err := os.MkdirTemp("", "virtpool-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tfDir)
	src, err := os.ReadFile(filepath.Join(demoDir, "main.tf"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tfDir, "main.tf"), src, 0o644); err != nil {
		return err
	}
	tfCmd := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(context.WithoutCancel(ctx), "terraform", append([]string{"-chdir=" + tfDir}, args...)...)
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+filepath.Join(*binDir, "terraformrc"), "TF_IN_AUTOMATION=1")
		return cmd
	}
	tf := func(args ...string) error {
		out, err := tfCmd(args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("terraform %s: %w\n%s", args[0], err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "Apply complete") || strings.Contains(line, "Destroy complete") {
				fmt.Println("    " + line)
			}
		}
		return nil
	}
	step("terraform apply %s", *dir)
	if err := tf("apply", "-auto-approve", "-input=false", "-no-color"); err != nil {
		return err
	}
	if !*keep {
		defer func() {
			step("terraform destroy")
			err = errors.Join(err, tf("destroy", "-auto-approve", "-input=false", "-no-color"))
		}()
	}
	// What was applied, from the configuration's outputs: the pool the
	// story drives and shows (stdout is the JSON alone; stderr goes into
	// the error).
	out, err := tfCmd("output", "-json", "-no-color").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("terraform output: %w\n%s", err, ee.Stderr)
		}
		return fmt.Errorf("terraform output: %w", err)
	}
	demo, err := parseStoryOutputs(out)
	if err != nil {
		return err
	}
	fmt.Println("    " + demo.String())
	if err := demo.checkHosts(l.Inventory()); err != nil {
		return err
	}
	ops := &pool.Ops{Hosts: l.Inventory(), Driver: func(context.Context) (driver.Driver, error) { return drv, nil }}
	defer func() { // the autoscaler's standby marks go with the demo
		for _, h := range l.Hosts {
			_ = ops.SetAutoStandby(context.Background(), h.Name, false) // best effort on the way out
		}
	}()

	// The autoscaler agent with virtpool's plugins, under the demo's
	// configuration with an event log for the target: the timeline's
	// decisions are its records. Both files stay with -keep.
	logPath := filepath.Join(os.TempDir(), "virtpool-demo-agent.log")
	eventLog := filepath.Join(os.TempDir(), "virtpool-demo-events.jsonl")
	if err := os.WriteFile(eventLog, nil, 0o644); err != nil { // the last run's records are not this one's
		return fmt.Errorf("event log: %w", err)
	}
	agentHCL := filepath.Join(demoDir, "agent.hcl")
	cfg, err := os.ReadFile(agentHCL)
	if err != nil {
		return err
	}
	if cfg, err = withPluginKey(cfg, agentHCL, "target", "virtpool-target", "event_log", eventLog); err != nil {
		return err
	}
	cfgPath := filepath.Join(tfDir, "agent.hcl") // the run's directory; the agent still runs in the demo's (its policies)
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return err
	}
	step("starting nomad-autoscaler (file policies %s/policies, no Nomad server); its log: %s, the target's events: %s",
		*dir, logPath, eventLog)
	port, err := autoscaler.FreePort()
	if err != nil {
		return err
	}
	ag, err := autoscaler.Start(autoscaler.Config{Bin: filepath.Join(*binDir, "nomad-autoscaler"),
		Args: []string{"agent", "-config", cfgPath, "-plugin-dir", filepath.Join(*binDir, "plugins"),
			"-http-bind-port", strconv.Itoa(port)},
		Dir: demoDir, LogFile: logPath, Log: log.Named("autoscaler")})
	if err != nil {
		return err
	}
	defer ag.Stop()

	// virtpool's own agent: the live page, and the events the timeline
	// shows.
	// Its events are the timeline's rows: its log says only what goes wrong.
	va, err := startStoryAgent(ctx, l, drv, hclog.New(&hclog.LoggerOptions{Name: "virtpool.agent", Level: hclog.Warn}))
	if err != nil {
		return err
	}
	step("live view: %s (virtpool agent: the page, /api/v1, /metrics)", va.url)

	c := probe.New(l.ClientNamespace)
	tl := &storyTimeline{pool: demo, ops: ops, drv: drv, eventLog: eventLog, events: va.Events(), start: time.Now()}
	run := func(name string, total int, d time.Duration) {
		step("%s for %s", name, d)
		tl.header()
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			tl.spread(ctx, c, total)
			time.Sleep(2 * time.Second)
			tl.row(ctx)
		}
	}
	// The work, in units of a host's capacity (the lab's hosts are
	// budgets of a fraction of a core): 1.2 hosts' worth needs more than
	// one member and more than one host under the demo's policies.
	const workHosts = 1.2
	work := int(math.Round(workHosts * 100 * l.Hosts[0].CPUs)) // % of a member's one vCPU
	run("idle (no load)", 0, *phase)
	run(fmt.Sprintf("load up (%.0f%% of a host, %d%% of a vCPU, spread over the members)", 100*workHosts, work), work, *phase)
	run("load down", 0, *phase)
	tl.summary()
	return ctx.Err()
}

// storyTimeline prints one row every couple of seconds.
type storyTimeline struct {
	pool     storyPool
	ops      *pool.Ops
	drv      driver.Driver
	eventLog string        // the target's: its scale decisions
	events   *agent.Events // what changed on the hosts
	start    time.Time
	read     int64 // how far eventLog is read
	seq      int64 // the last event shown

	prev       map[string][2]float64 // member → (cpu ns, s)
	migrations int
	downtimes  []time.Duration
	decisions  int
	maxSize    int
	lastState  string
	quiet      int
}

func (tl *storyTimeline) header() {
	tl.lastState = ""
	fmt.Printf("    %6s  %-5s %-9s %-16s %s\n", "time", "load", "members", "hosts in use", "events")
}

// spread sets every running member's load to total/members percent.
func (tl *storyTimeline) spread(ctx context.Context, c *probe.Client, total int) {
	ms, err := tl.ops.Members(ctx, tl.pool.Name)
	if err != nil || len(ms) == 0 {
		return
	}
	per := min(100, total/len(ms))
	var wg sync.WaitGroup
	for _, m := range ms {
		n := m.Index
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if ip, err := tl.pool.memberIP(n); err == nil {
				_ = c.SetLoad(cctx, ip, per, 0) // a booting member does not answer yet
			}
		}()
	}
	wg.Wait()
}

func (tl *storyTimeline) row(ctx context.Context) {
	ms, _ := tl.ops.Members(ctx, tl.pool.Name)
	names := map[string]bool{}
	for _, m := range ms {
		names[m.Name] = true
	}
	tl.maxSize = max(tl.maxSize, len(names))
	// Load: members' average CPU, % of their vCPU, since the last row.
	cur := map[string][2]float64{}
	for _, h := range tl.pool.Hosts {
		st, err := tl.drv.Stats(ctx, tl.ops.Hosts[h].URI)
		if err != nil {
			continue
		}
		for _, d := range st.Domains {
			if d.Labels[pool.LabelPool] == tl.pool.Name && d.State == driver.StateRunning {
				cur[d.Name] = [2]float64{float64(d.CPUTimeNs), float64(st.Time.UnixNano()) / 1e9}
			}
		}
	}
	var sum float64
	n := 0
	for name, x := range cur {
		if y, ok := tl.prev[name]; ok && x[0] >= y[0] && x[1] > y[1] {
			sum += 100 * (x[0] - y[0]) / 1e9 / (x[1] - y[1])
			n++
		}
	}
	tl.prev = cur
	load := "  -"
	if n > 0 {
		load = fmt.Sprintf("%3.0f%%", sum/float64(n))
	}
	var inUse []string
	for _, h := range tl.pool.Hosts {
		if st, err := tl.ops.HostState(ctx, h); err == nil && !st.InStandby() {
			inUse = append(inUse, h)
		}
	}
	var events []string
	recs, read, err := event.ReadFile(tl.eventLog, tl.read)
	tl.read = read
	if err != nil {
		events = append(events, err.Error())
	}
	for _, e := range recs {
		if s := tl.decision(e); s != "" {
			events = append(events, s)
		}
	}
	for _, e := range tl.events.Since(tl.seq) {
		tl.seq = e.Seq
		if s := tl.event(e); s != "" {
			events = append(events, s)
		}
	}
	// Quiet rows only now and then.
	state := fmt.Sprintf("%d %v", len(names), inUse)
	tl.quiet++
	if len(events) == 0 && state == tl.lastState && tl.quiet < 5 {
		return
	}
	tl.quiet, tl.lastState = 0, state
	fmt.Printf("    %5.0fs  %-5s %-9d %-16s %s\n", time.Since(tl.start).Seconds(), load, len(names),
		strings.Join(inUse, ","), strings.Join(events, "; "))
}

// decision is how the timeline shows one of the target's records ("" for
// those it does not show: its migrations are the agent's events too).
func (tl *storyTimeline) decision(e event.Event) string {
	switch e.Kind {
	case event.ScaleRequested:
		tl.decisions++
		return fmt.Sprintf("decision: %s→%d", e.Dimension, e.Count)
	case event.ScaleFailed:
		return fmt.Sprintf("scale %s failed: %s", e.Dimension, e.Error)
	}
	return ""
}

// event is how the timeline shows one of the agent's events of the pool
// and its hosts ("" for the others).
func (tl *storyTimeline) event(e event.Event) string {
	inPool := e.Pool == tl.pool.Name
	switch {
	case e.Kind == event.MigrationFinished && inPool:
		tl.migrations++
		d := time.Duration(e.DowntimeMs) * time.Millisecond
		tl.downtimes = append(tl.downtimes, d)
		return fmt.Sprintf("moved %s %s→%s (downtime %s)", e.Guest, e.From, e.To, d)
	case e.Kind == event.GuestStarted && inPool:
		return fmt.Sprintf("created %s on %s", e.Guest, e.Host)
	case e.Kind == event.GuestStopped && inPool:
		return "removed " + e.Guest
	case e.Kind == event.HostState && e.State == agent.HostStandby:
		return e.Host + " on standby"
	case e.Kind == event.HostState && e.State == agent.HostActive:
		return e.Host + " back in use"
	}
	return ""
}

func (tl *storyTimeline) summary() {
	sort.Slice(tl.downtimes, func(i, j int) bool { return tl.downtimes[i] < tl.downtimes[j] })
	fmt.Printf("\n%d scale decisions, %d live migrations", tl.decisions, tl.migrations)
	if n := len(tl.downtimes); n > 0 {
		median := (tl.downtimes[(n-1)/2] + tl.downtimes[n/2]) / 2
		fmt.Printf(" (downtime median %s, max %s)", median, tl.downtimes[n-1])
	}
	fmt.Printf(", largest pool size %d\n", tl.maxSize)
}

// storyAgent is the virtpool agent the story runs beside the autoscaler.
type storyAgent struct {
	*agent.Agent
	url string
}

// startStoryAgent runs a virtpool agent over the lab's hosts (through the
// story's driver process), sampling every second, on 127.0.0.1:8480 or,
// if that is taken, a free port. It stops with ctx.
func startStoryAgent(ctx context.Context, l *lab.Lab, drv driver.Driver, log hclog.Logger) (*storyAgent, error) {
	var seeds []fleet.Seed
	for _, h := range l.Hosts {
		seeds = append(seeds, fleet.Seed{Name: h.Name, URI: h.URI, Capacity: h.Capacity()})
	}
	cfg := agent.Config{Config: fleet.Config{Seeds: seeds, SampleInterval: time.Second, Retention: 15 * time.Minute,
		MaxSamples: 1000}, Listen: agent.DefaultListen, MaxEvents: agent.DefaultEvents}
	if ln, err := net.Listen("tcp", cfg.Listen); err != nil {
		cfg.Listen = "127.0.0.1:0"
	} else {
		ln.Close()
	}
	f := fleet.New(cfg.Config, func(context.Context) (driver.Driver, error) { return drv, nil }, log)
	a := &storyAgent{Agent: agent.New(cfg, f, log)}
	addr := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- a.Serve(ctx, func(s string) { addr <- s }) }()
	select {
	case s := <-addr:
		a.url = "http://" + s + "/"
		return a, nil
	case err := <-errc:
		return nil, fmt.Errorf("virtpool agent: %w", err)
	}
}
