package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver/virt"
	"github.com/virtpool/virtpool/lab"
)

func labCmd(ctx context.Context, log hclog.Logger, sub string, args []string) error {
	switch sub {
	case "up":
		fs := newFlags("lab up")
		hosts := fs.Int("hosts", 3, "number of hosts")
		guestDir := fs.String("guest-dir", "", "prebuilt guest image directory (default: build into the cache)")
		noBudgets := fs.Bool("no-budgets", false, "let every host use the whole machine (no per-host CPU and memory budget)")
		transport := fs.String("transport", "unix", "how virtpool and the hosts reach the hosts' libvirtd: unix, tls (qemu+tls, certificates from a lab CA) or ssh (qemu+ssh, an sshd per host)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		self, err := os.Executable() // each host runs this binary's 'ship serve'
		if err != nil {
			return err
		}
		l, err := lab.Up(ctx, lab.Config{Hosts: *hosts, GuestDir: *guestDir, NoBudgets: *noBudgets, Transport: lab.Transport(*transport),
			ShipBin: self, Log: log})
		if err != nil {
			return err
		}
		return printLab(ctx, log, l)
	case "status":
		l, err := lab.Load()
		if err != nil {
			return err
		}
		return printLab(ctx, log, l)
	case "down":
		return lab.Down(ctx, log)
	}
	if op, ok := hostOps[sub]; ok {
		return hostOp(ctx, log, sub, op, args)
	}
	return fmt.Errorf("lab: unknown subcommand %q\n%s", sub, usage)
}

// hostOps are the lab's host failure modes and their repairs, by
// subcommand (see lab/fail.go).
var hostOps = map[string]func(context.Context, lab.Host) error{
	"crash":     lab.Crash,
	"fence":     lab.Fence,
	"partition": lab.Partition,
	"heal":      lab.Heal,
	"start":     lab.Start,
}

// hostOp runs one of hostOps on the host args name.
func hostOp(ctx context.Context, log hclog.Logger, sub string, op func(context.Context, lab.Host) error, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("lab %s: want one host name (h1, h2, …)\n%s", sub, usage)
	}
	l, err := lab.Load()
	if err != nil {
		return err
	}
	h, err := l.Host(args[0])
	if err != nil {
		return err
	}
	start := time.Now()
	if err := op(ctx, h); err != nil {
		return err
	}
	st, err := h.State()
	if err != nil {
		return err
	}
	log.Info("lab "+sub, "host", h.Name, "state", st.String(), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// printLab lists hosts and their guests. It talks to libvirt in-process:
// a status command has no reason to start a plugin.
func printLab(ctx context.Context, log hclog.Logger, l *lab.Lab) error {
	d := virt.New(log.Named("driver"))
	defer d.Close()
	creds, err := l.Credentials()
	if err != nil {
		return err
	}
	d.SetCredentials(creds)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "HOST\tSTATE\tADDRESS\tURI\tGUESTS")
	for _, h := range l.Hosts {
		var state, guests string
		st, err := h.State()
		switch {
		case err != nil:
			state, guests = "?", "error: "+err.Error()
		case st.Frozen || !st.Libvirtd:
			// Its libvirtd would not answer: asking would hang (a
			// partitioned host) or fail.
			state, guests = st.String(), "-"
		default:
			state = st.String()
			if doms, err := d.ListDomains(ctx, h.URI); err == nil {
				for _, dom := range doms {
					guests += fmt.Sprintf("%s(%s) ", dom.Name, dom.State)
				}
			} else {
				guests = "error: " + err.Error()
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", h.Name, state, h.IP, h.URI, guests)
	}
	fmt.Fprintf(w, "client\t\t%s\tnetns %s\t\n", l.ClientIP, l.ClientNamespace)
	return w.Flush()
}
