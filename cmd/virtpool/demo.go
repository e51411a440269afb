package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/driver/plugin"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/probe"
)

// demoOpts: a bandwidth cap far above what TCG guests produce (libvirt's
// default cap is low), a tight downtime target, and a definition that
// follows the guest.
var demoOpts = driver.MigrateOptions{
	BandwidthMiBs:  2000,
	MaxDowntime:    50 * time.Millisecond,
	Persistent:     true,
	UndefineSource: true,
}

// demoCmd brings the lab up, starts a guest on host A, live-migrates it
// A→B→A through the driver plugin while a client streams from it and pings
// it, prints what happened, and tears everything down again.
func demoCmd(ctx context.Context, log hclog.Logger, args []string) (err error) {
	fs := newFlags("demo")
	keep := fs.Bool("keep", false, "leave the lab and the guest running")
	hosts := fs.Int("hosts", 2, "lab hosts to bring up (a lab already up is used as it is)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	step := func(format string, a ...any) { fmt.Printf("==> "+format+"\n", a...) }

	// A lab that is already up is used as it is, and left up.
	l, loadErr := lab.Load()
	if loadErr == nil {
		*hosts = len(l.Hosts)
		step("using the lab that is up (%d hosts)", *hosts)
	} else {
		step("bringing the lab up (%d hosts, a client, a shared segment)", *hosts)
	}
	cfg := lab.Config{Hosts: *hosts, Log: log.Named("lab")}
	if loadErr == nil {
		cfg.NoBudgets = !l.Budgets // as it is
	}
	if l, err = lab.Up(ctx, cfg); err != nil {
		return err
	}
	if !*keep && loadErr != nil {
		defer func() {
			step("tearing the lab down")
			err = errors.Join(err, lab.Down(context.Background(), log.Named("lab")))
		}()
	}
	bin, err := plugin.FindBinary(os.Getenv("VIRTPOOL_DRIVER"))
	if err != nil {
		return err
	}
	proc, err := plugin.Start(bin, log)
	if err != nil {
		return err
	}
	defer proc.Close()
	drv := proc.Driver
	a, b := l.Hosts[0], l.Hosts[1]
	for _, h := range l.Hosts {
		hi, err := drv.HostInfo(ctx, h.URI)
		if err != nil {
			return err
		}
		fmt.Printf("    host %s: %s %s, %d CPUs, %d MiB, uuid %s, accelerators %v\n",
			h.Name, hi.Hypervisor, hi.HypervisorVersion, hi.CPUs, hi.MemoryBytes>>20, hi.UUID, hi.Accelerators)
	}

	const name = "demo-1"
	step("starting guest %s on %s (128 MiB, 1 vCPU)", name, a.Name)
	start := time.Now()
	if _, err := drv.CreateDomain(ctx, a.URI, l.GuestSpec(name, 1, a, 128, 1, map[string]string{"role": "demo"})); err != nil {
		return err
	}
	if !*keep {
		defer func() { // best effort, on every host: the guest is on one of them
			for _, h := range l.Hosts {
				_ = drv.ShutdownDomain(context.Background(), h.URI, name, 0)
				_ = drv.UndefineDomain(context.Background(), h.URI, name, driver.UndefineOptions{})
			}
		}()
	}
	c := probe.New(l.ClientNamespace)
	ip := lab.GuestIP(1)
	if err := c.WaitReady(ctx, ip, time.Minute); err != nil {
		return err
	}
	fmt.Printf("    %s answers at http://%s/ after %s\n", name, ip, time.Since(start).Round(time.Millisecond))

	step("client %s streams http://%s/stream and tcp %s:9000, pings every 10 ms", l.ClientIP, ip, ip)
	hs, err := c.FollowHTTP(ip)
	if err != nil {
		return err
	}
	ts, err := c.FollowTCP(ip)
	if err != nil {
		return err
	}
	type row struct {
		from, to      string
		res           driver.MigrateResult
		pingDown      time.Duration
		lost          int
		httpOK, tcpOK bool
	}
	var rows []row
	from := a
	for _, to := range []lab.Host{b, a} {
		step("live-migrating %s %s → %s", name, from.Name, to.Name)
		p, err := c.StartPing(ip)
		if err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
		last := time.Time{}
		res, err := drv.Migrate(ctx, lab.MigrateRequest(name, from, to, demoOpts), func(p driver.MigrateProgress) {
			if time.Since(last) > 200*time.Millisecond && p.DataTotal > 0 {
				last = time.Now()
				fmt.Printf("    %6s  processed %4d MiB, remaining %4d MiB\n",
					p.Elapsed.Round(time.Millisecond), p.DataProcessed>>20, p.DataRemaining>>20)
			}
		})
		if err != nil {
			_, _ = p.Stop() // the migration's error is the one to report
			return err
		}
		httpErr := hs.WaitAdvance(20, 20*time.Second)
		tcpErr := ts.WaitAdvance(20, 20*time.Second)
		pr, err := p.Stop()
		if err != nil {
			return err
		}
		rows = append(rows, row{from.Name, to.Name, res, pr.Downtime, pr.Sent - pr.Received, httpErr == nil, tcpErr == nil})
		from = to
	}
	n, seqErr := c.Sequence(ctx, ip)
	hr, tr := hs.Stop(), ts.Stop()

	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "migration\ttime\tdowntime (libvirt)\tdowntime (pings)\tpings lost\tbytes\tHTTP stream\tTCP stream\t")
	for _, r := range rows {
		fmt.Fprintf(w, "%s→%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t\n", r.from, r.to, r.res.Elapsed, r.res.Downtime,
			r.pingDown.Round(time.Millisecond), r.lost, r.res.Bytes, survived(r.httpOK), survived(r.tcpOK))
	}
	w.Flush()
	fmt.Printf("\nHTTP stream: %d lines, none lost (%v); TCP stream: %d lines, none lost (%v)\n", hr.Lines, hr.Err == nil, tr.Lines, tr.Err == nil)
	if seqErr != nil {
		fmt.Printf("sequence file: %v\n", seqErr)
	} else {
		fmt.Printf("sequence file in the guest: 1..%d, no gap, no repeat\n", n)
	}
	return errors.Join(hr.Err, tr.Err, seqErr)
}

func survived(ok bool) string {
	if ok {
		return "survived"
	}
	return "BROKEN"
}
