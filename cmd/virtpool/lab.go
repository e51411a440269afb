package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"

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
		if err := fs.Parse(args); err != nil {
			return err
		}
		l, err := lab.Up(ctx, lab.Config{Hosts: *hosts, GuestDir: *guestDir, NoBudgets: *noBudgets, Log: log})
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
	return fmt.Errorf("lab: unknown subcommand %q\n%s", sub, usage)
}

// printLab lists hosts and their guests. It talks to libvirt in-process:
// a status command has no reason to start a plugin.
func printLab(ctx context.Context, log hclog.Logger, l *lab.Lab) error {
	d := virt.New(log.Named("driver"))
	defer d.Close()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "HOST\tADDRESS\tURI\tGUESTS")
	for _, h := range l.Hosts {
		var guests string
		if doms, err := d.ListDomains(ctx, h.URI); err == nil {
			guests = ""
			for _, dom := range doms {
				guests += fmt.Sprintf("%s(%s) ", dom.Name, dom.State)
			}
		} else {
			guests = "error: " + err.Error()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", h.Name, h.IP, h.URI, guests)
	}
	fmt.Fprintf(w, "client\t%s\tnetns %s\t\n", l.ClientIP, l.ClientNamespace)
	return w.Flush()
}
