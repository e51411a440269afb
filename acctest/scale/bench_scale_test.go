// Package scale measures virtpool's control path against many hosts (make
// bench-scale): a lab of 32 hosts (libvirtd only, a few guests), one
// autoscaler evaluation (the APM plugin's query and the target plugin's
// Status, the real plugins in this process over the real driver process)
// and what a provider refresh of a pool reads, at 3 hosts, at 32, and at
// 32 with one host cut off. It needs root and VIRTPOOL_ACC=1.
package scale

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/sdk"

	"github.com/virtpool/virtpool/driver"
	vpplugin "github.com/virtpool/virtpool/driver/plugin"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/labtest"
	"github.com/virtpool/virtpool/nomad-autoscaler-plugin/apm"
	"github.com/virtpool/virtpool/nomad-autoscaler-plugin/target"
	"github.com/virtpool/virtpool/pool"
)

const (
	labHosts = 32
	calls    = 5 // per figure, the median kept
	// sampleInterval is the plugins': their calls to a host are bounded
	// by max(interval, 2s), the deadline a host that does not answer costs
	// them; the provider's is pool.DefaultHostTimeout.
	sampleInterval = 2 * time.Second
)

func BenchmarkScale(b *testing.B) {
	if os.Getenv("VIRTPOOL_ACC") != "1" {
		b.Skip("needs root and a 32-host lab; run with VIRTPOOL_ACC=1 (make bench-scale)")
	}
	ctx := context.Background()
	log := hclog.New(&hclog.LoggerOptions{Name: "bench-scale", Level: hclog.LevelFromString(labtest.EnvOr("VIRTPOOL_LOG", "warn"))})
	l, down, err := labtest.UpN(ctx, "bench-scale", labHosts, false, log)
	if err != nil {
		b.Fatal(err)
	}
	defer down()
	bin, err := labtest.DriverBinary()
	if err != nil {
		b.Fatal(err)
	}
	p, err := vpplugin.Start(bin, log)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	// ops over the first n hosts, as a provider configured with them
	// (and its default deadline per host).
	opsOf := func(n int) *pool.Ops {
		inv := pool.Inventory{}
		for _, h := range l.Hosts[:n] {
			inv[h.Name] = l.Inventory()[h.Name]
		}
		return &pool.Ops{Hosts: inv, Driver: func(context.Context) (driver.Driver, error) { return p.Driver, nil }, Log: log}
	}
	ops := opsOf(labHosts)

	type row struct {
		name                   string
		hosts                  int
		query, status, refresh time.Duration
		other                  time.Duration // Status of a pool that does not use the host down
	}
	var rows []row
	measure := func(name string, n int, poolName, otherPool string) {
		r := row{name: name, hosts: n}
		a, t := apm.New(log.Named("apm")), target.New(log.Named("target"))
		cfg := map[string]string{"hosts": seeds(l, n), "driver_path": bin, "sample_interval": sampleInterval.String()}
		for _, pl := range []interface{ SetConfig(map[string]string) error }{a, t} {
			if err := pl.SetConfig(cfg); err != nil {
				b.Fatal(err)
			}
		}
		defer a.Stop()
		defer t.Stop()
		q := fmt.Sprintf("pool=%s metric=cpu agg=avg", poolName)
		window := func() sdk.TimeRange { return sdk.TimeRange{From: time.Now().Add(-time.Minute), To: time.Now()} }
		waitSamples(b, a, q, window)
		r.query = labtest.Median(b, calls, func() error { _, err := a.Query(q, window()); return err })
		status := func(pool string) func() error {
			return func() error {
				st, err := t.Status(map[string]string{"pool": pool, "dimension": "size"})
				if err == nil && st == nil {
					err = fmt.Errorf("no status for %s", pool)
				}
				return err
			}
		}
		r.status = labtest.Median(b, calls, status(poolName))
		if otherPool != "" {
			r.other = labtest.Median(b, calls, status(otherPool))
		}
		r.refresh = labtest.Median(b, calls, func() error {
			ops := opsOf(n) // one refresh, one Ops: a host down costs its deadline once
			if _, _, found, err := ops.ReadPool(ctx, poolName, nil); !found {
				return fmt.Errorf("pool %s not found: %w", poolName, errors.Join(err, errNotFound))
			}
			_, err := ops.Members(ctx, poolName)
			return pool.Needed(err, nil) // a host down is what this row measures
		})
		rows = append(rows, r)
	}

	// 3 hosts first, before the 32-host pool's record (which its hosts
	// would find) exists.
	makePool(b, ops, l, "s3", 3, 2, 221)
	measure("3 hosts", 3, "s3", "")
	makePool(b, ops, l, "s32", labHosts, 4, 231)
	measure("32 hosts", labHosts, "s32", "")
	last := l.Hosts[labHosts-1]
	if err := lab.Partition(ctx, last); err != nil {
		b.Fatal(err)
	}
	measure(fmt.Sprintf("32 hosts, %s cut off", last.Name), labHosts, "s32", "s3")
	if err := lab.Heal(ctx, last); err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"s3", "s32"} {
		if _, err := ops.ScaleTo(ctx, name, 0); err != nil {
			b.Error(err)
		}
		if err := ops.DeletePoolRecord(ctx, name, l.Inventory().Names()); err != nil {
			b.Error(err)
		}
	}

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "control path, median of %d calls (plugins sampling every %s, a host's deadline %s; the provider's %s)\t\t\t\t\t\t\n",
		calls, sampleInterval, sampleInterval, pool.DefaultHostTimeout)
	fmt.Fprintln(w, "hosts\tAPM query\ttarget Status\tevaluation\tratio to 3 hosts\tprovider refresh reads\tStatus of a pool not on it\t")
	base := rows[0].query + rows[0].status
	for _, r := range rows {
		eval := r.query + r.status
		other := "-"
		if r.other > 0 {
			other = r.other.Round(10 * time.Microsecond).String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t\n", r.name, r.query.Round(time.Microsecond), r.status.Round(10*time.Microsecond),
			eval.Round(10*time.Microsecond), float64(eval)/float64(base), r.refresh.Round(10*time.Microsecond), other)
	}
	w.Flush()
	fmt.Println("goal: an evaluation at 32 hosts within 2× the time at 3; a host down adds at most its deadline, once")
}

// seeds is the plugins' hosts key for the lab's first n hosts.
func seeds(l *lab.Lab, n int) string {
	var s []string
	for _, h := range l.Hosts[:n] {
		s = append(s, h.Name+"="+h.URI)
	}
	return strings.Join(s, ", ")
}

// makePool stores a pool of size lab guests on the first n hosts.
func makePool(b *testing.B, ops *pool.Ops, l *lab.Lab, name string, n int, size int64, ipBase int) {
	b.Helper()
	img := l.Image
	spec := pool.Spec{Name: name, Size: size, MaxSize: size, Placement: pool.PlacementSpread,
		Template: pool.Template{VCPUs: 1, MemoryMiB: 64, Kernel: img.Kernel, Initrd: img.Initrd,
			Cmdline: img.Cmdline + " virtpool.ip={ip} virtpool.name={name}", IPBase: fmt.Sprintf("192.0.2.%d/24", ipBase),
			Bridge: lab.GuestBridge, Accelerator: l.Accelerator}}
	for _, h := range l.Hosts[:n] {
		spec.Hosts = append(spec.Hosts, l.Inventory()[h.Name])
	}
	pr, err := ops.WritePool(context.Background(), pool.Record{Spec: spec}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := ops.Reconcile(context.Background(), pr); err != nil {
		b.Fatal(err)
	}
}

// waitSamples waits until the APM answers q: it has two samples.
func waitSamples(b *testing.B, a *apm.Plugin, q string, window func() sdk.TimeRange) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := a.Query(q, window())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the APM has no answer to %q after a minute: %v", q, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var errNotFound = errors.New("no record")
