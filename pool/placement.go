package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/virtpool/virtpool/driver"
)

// A placement record says where a single domain that may be restarted
// elsewhere (LabelFailoverHosts), or a protected guest, runs, and holds
// its labels, which rebuild it, and its standby (LabelStandby). It is
// kept on the domain's failover hosts (or standby) and its own host, so that
// an agent started after that host failed, which never saw the domain,
// still finds it on the hosts that are left.
type Placement struct {
	Domain     string
	Host       string
	Labels     map[string]string
	Generation int64
}

// Placement record data keys.
const (
	placementKeyHost   = "host"
	placementKeyLabels = "labels"
)

// FailoverHosts lists the hosts a single domain with these labels may be
// restarted on (LabelFailoverHosts).
func FailoverHosts(labels map[string]string) []string {
	var out []string
	for h := range strings.SplitSeq(labels[LabelFailoverHosts], ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

func (p Placement) record() (driver.Record, error) {
	b, err := json.Marshal(p.Labels)
	if err != nil {
		return driver.Record{}, fmt.Errorf("placement of %s: %w", p.Domain, err)
	}
	return driver.Record{Kind: driver.RecordDomain, Name: p.Domain, Generation: p.Generation,
		Data: map[string]string{placementKeyHost: p.Host, placementKeyLabels: string(b)}}, nil
}

// Placements returns the newest placement of each domain in the records
// (of one or several hosts); records that cannot be read are left out.
func Placements(rs ...[]driver.Record) map[string]Placement {
	out := map[string]Placement{}
	for _, list := range rs {
		for _, r := range list {
			if r.Kind != driver.RecordDomain {
				continue
			}
			p := Placement{Domain: r.Name, Host: r.Data[placementKeyHost], Generation: r.Generation}
			if p.Host != "" && json.Unmarshal([]byte(r.Data[placementKeyLabels]), &p.Labels) != nil {
				continue
			}
			if kept, ok := out[p.Domain]; !ok || p.Generation > kept.Generation {
				out[p.Domain] = p
			}
		}
	}
	for name, p := range out {
		if p.Host == "" { // deleted: the tombstone outranks older copies, then goes
			delete(out, name)
		}
	}
	return out
}

// NotePlacement records that domain name, with these labels, runs on host.
// A domain without failover hosts or a standby (LabelStandby: a protected
// pool member's) needs none and gets none. The record goes to those hosts
// and host, one generation above any of them holds; it must reach at
// least one host other than host, else an agent could not restart or
// restore the domain if host failed.
func (o *Ops) NotePlacement(ctx context.Context, name, host string, labels map[string]string) error {
	to := FailoverHosts(labels)
	if s := labels[LabelStandby]; s != "" && !slices.Contains(to, s) {
		to = append(to, s)
	}
	if len(to) == 0 {
		return nil
	}
	if !slices.Contains(to, host) {
		to = append(to, host)
	}
	stored, err := o.putPlacement(ctx, Placement{Domain: name, Host: host, Labels: labels}, to)
	if !slices.ContainsFunc(stored, func(h string) bool { return h != host }) {
		return fmt.Errorf("note placement of %s on %s: no failover host took it, so it could not be restarted if %s failed: %w",
			name, host, host, err)
	}
	o.log().Debug("placement noted", "domain", name, "host", host, "on", stored)
	return nil
}

// putPlacement writes p to the hosts of to, and to every other host that
// holds a copy, one generation above any copy; it returns where it went,
// and what failed (the hosts of to or holders that did not answer).
func (o *Ops) putPlacement(ctx context.Context, p Placement, to []string) ([]string, error) {
	d, err := o.driver(ctx)
	if err != nil {
		return nil, err
	}
	to = slices.Clone(to)
	held, err := readEach(ctx, o, o.Hosts.Names(), func(ctx context.Context, h HostEntry) ([]driver.Record, error) {
		return d.ListRecords(ctx, h.URI)
	})
	down, err := Partial(err)
	if err != nil {
		return nil, fmt.Errorf("placement of %s: %w", p.Domain, err)
	}
	down = down.Of(to) // a host that is neither a target nor known to hold a copy is not needed
	for h, rs := range held {
		for _, r := range rs {
			if r.Kind == driver.RecordDomain && r.Name == p.Domain {
				p.Generation = max(p.Generation, r.Generation+1)
				if !slices.Contains(to, h) {
					to = append(to, h)
				}
			}
		}
	}
	r, err := p.record()
	if err != nil {
		return nil, err
	}
	var stored []string
	var errs []error
	if len(down) > 0 {
		errs = append(errs, down)
	}
	for _, h := range to {
		if _, ok := held[h]; !ok {
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, o.hostTimeout())
		err := d.PutRecord(hctx, o.Hosts[h].URI, r)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", h, err))
			continue
		}
		stored = append(stored, h)
	}
	return stored, errors.Join(errs...)
}

// DropPlacement removes domain name's placement records from hosts (its
// failover hosts and its own). While one of them does not answer, a
// tombstone (a newer generation with no host) stays on the others: the
// copy the host down keeps must not bring a deleted domain back.
func (o *Ops) DropPlacement(ctx context.Context, name string, hosts []string) error {
	stored, err := o.putPlacement(ctx, Placement{Domain: name}, hosts)
	if err != nil {
		return fmt.Errorf("drop placement of %s (a tombstone stays on %v): %w", name, stored, err)
	}
	d, err := o.driver(ctx)
	if err != nil {
		return err
	}
	_, err = readEach(ctx, o, hosts, func(ctx context.Context, h HostEntry) (struct{}, error) {
		return struct{}{}, d.DeleteRecord(ctx, h.URI, driver.RecordDomain, name)
	})
	if err != nil {
		return fmt.Errorf("drop placement of %s: %w", name, err)
	}
	return nil
}
