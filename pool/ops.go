package pool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
)

// EventSink receives the records of what an Ops does (migrations, members
// created and removed), for tools that follow it: its log lines say the
// same to humans. *event.Log is one.
type EventSink interface{ Emit(event.Event) }

// Ops runs pool operations on a set of hosts through a driver.
type Ops struct {
	// Hosts are the hosts operations look at (all of them when a host list
	// is nil).
	Hosts Inventory
	// Driver returns the driver to call. It is called before every step,
	// so an implementation that restarts a dead driver process lets the
	// next step (or the next run) go on.
	Driver func(ctx context.Context) (driver.Driver, error)
	// Log receives progress; nil discards it.
	Log hclog.Logger
	// Events, if set, receives a record of each migration (its start,
	// progress and end) and of each member created or removed.
	Events EventSink
	// ShutdownTimeout is how long a removed guest may take to power off
	// before it is destroyed.
	ShutdownTimeout time.Duration
	// Migration holds the default bandwidth and downtime of live
	// migrations; a pool's policy overrides them (see MigrateOptions).
	Migration driver.MigrateOptions
	// Demand, if set, gives the measured load of a running guest (by UUID)
	// for View: CPU in cores and memory in use in bytes. Guests it does
	// not know count with no CPU demand.
	Demand func(uuid string) (cpuCores float64, memUsed int64, ok bool)
	// PrepareRemoval, if set, chooses the k members a scale-in removes
	// and readies them all at once (for example drains the Nomad clients
	// in them): it gets every member of the pool scale-in may remove, in
	// virtpool's order of preference (Candidates), and returns exactly k
	// of them. An error removes none (it wraps ErrNotRemoved), and
	// ScaleTo puts the pool's stored size back. Unset, scale-in removes
	// the scheduler's Victims.
	PrepareRemoval func(ctx context.Context, pr Record, candidates []Member, k int) ([]Member, error)
	// AfterRemove, if set, runs after each member a scale-in removed (for
	// example to purge its Nomad node).
	AfterRemove func(ctx context.Context, m Member)
	// HostTimeout bounds each host's part of a read or of a record write
	// (DefaultHostTimeout if zero); a host that does not answer in time is
	// down for that read (see HostsDown), and for the later reads of this
	// Ops, which are not made to wait for it again: an Ops is one
	// operation, in which a host down costs its deadline once.
	HostTimeout time.Duration
	// Off lists hosts known to be powered off (fenced): reads do not wait
	// for them, they are down at once.
	Off map[string]bool
	// PowerOn, if set, powers a host on (its power-on action): ScaleUp
	// then powers on a pool's standby host that is off when its new
	// members fit nowhere else (PowerOnStandby).
	PowerOn func(ctx context.Context, host string) error
	// BootTimeout bounds the wait for a powered-on host to answer
	// (DefaultBootTimeout if zero).
	BootTimeout time.Duration
	// Size, if set, gives a host's CPUs and memory when the caller knows
	// them (a recent sample): View then does not ask the host for them,
	// which costs more than the rest of what it reads.
	Size func(host string) (cpus int, memoryBytes uint64, ok bool)

	mu   sync.Mutex
	late map[string]error // hosts that missed their deadline, why
}

func (o *Ops) log() hclog.Logger {
	if o.Log == nil {
		return hclog.NewNullLogger()
	}
	return o.Log
}

func (o *Ops) emit(e event.Event) {
	if o.Events != nil {
		o.Events.Emit(e)
	}
}

func (o *Ops) driver(ctx context.Context) (driver.Driver, error) {
	if o.Driver == nil {
		return nil, errors.New("pool: no driver")
	}
	return o.Driver(ctx)
}

// EachHost runs fn for every named host in parallel and joins the errors:
// one slow host does not delay the others.
func EachHost(names []string, fn func(name string) error) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Located is a domain and the host it is on.
type Located struct {
	Host string
	driver.Domain
}

// ListAll lists the domains of the given hosts (all hosts if nil). Hosts
// that do not answer are missing from the listing, which then comes with
// the HostsDown error that names them.
func (o *Ops) ListAll(ctx context.Context, hosts []string) (map[string][]driver.Domain, error) {
	d, err := o.driver(ctx)
	if err != nil {
		return nil, err
	}
	if hosts == nil {
		hosts = o.Hosts.Names()
	}
	return readEach(ctx, o, hosts, func(ctx context.Context, h HostEntry) ([]driver.Domain, error) {
		doms, err := d.ListDomains(ctx, h.URI)
		if err != nil {
			return nil, fmt.Errorf("list guests: %w", err)
		}
		return doms, nil
	})
}

// FindDomain looks for a domain by name on every host. A running copy wins
// over a defined, stopped one (a leftover definition); running on two
// hosts is reported, never guessed about. With hosts down, only a running
// copy elsewhere is an answer: the domain may run on a host that did not
// answer.
func (o *Ops) FindDomain(ctx context.Context, name string) (Located, bool, error) {
	all, err := o.ListAll(ctx, nil)
	down, err := Partial(err)
	if err != nil {
		return Located{}, false, err
	}
	var found []Located
	for _, h := range o.Hosts.Names() {
		for _, d := range all[h] {
			if d.Name == name {
				found = append(found, Located{Host: h, Domain: d})
			}
		}
	}
	sort.SliceStable(found, func(i, j int) bool {
		return found[i].State == driver.StateRunning && found[j].State != driver.StateRunning
	})
	switch {
	case len(found) > 1 && found[1].State == driver.StateRunning:
		return Located{}, false, fmt.Errorf("domain %s runs on both %s and %s: resolve by hand before touching it",
			name, found[0].Host, found[1].Host)
	case len(down) > 0 && (len(found) == 0 || found[0].State != driver.StateRunning):
		return Located{}, false, fmt.Errorf("domain %s: cannot tell where it runs: %w", name, down)
	case len(found) == 0:
		return Located{}, false, nil
	}
	return found[0], true, nil
}

// Member is one pool member where it runs.
type Member struct {
	Located
	Index int
}

// MembersOf picks a pool's members out of a listing of hosts, sorted by
// index (then host: a member seen on two hosts is being migrated).
func MembersOf(pool string, all map[string][]driver.Domain) []Member {
	return membersOf(all, func(p string) bool { return p == pool })
}

// AllMembers picks the members of every pool out of a listing of hosts,
// sorted by pool, then as MembersOf.
func AllMembers(all map[string][]driver.Domain) []Member {
	return membersOf(all, func(string) bool { return true })
}

func membersOf(all map[string][]driver.Domain, inPool func(string) bool) []Member {
	var out []Member
	for h, doms := range all {
		for _, d := range doms {
			if d.Labels[LabelRole] != RoleMember || !inPool(d.Labels[LabelPool]) {
				continue
			}
			n, _ := strconv.Atoi(d.Labels[LabelIndex])
			out = append(out, Member{Located: Located{Host: h, Domain: d}, Index: n})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if pi, pj := out[i].Labels[LabelPool], out[j].Labels[LabelPool]; pi != pj {
			return pi < pj
		}
		if out[i].Index != out[j].Index {
			return out[i].Index < out[j].Index
		}
		return out[i].Host < out[j].Host
	})
	return out
}

// CountMembers counts members by name: a member seen on two hosts (in the
// middle of a migration) is one member.
func CountMembers(ms []Member) int {
	names := map[string]bool{}
	for _, m := range ms {
		names[m.Name] = true
	}
	return len(names)
}

// Members returns a pool's members on every host, by index. Members are
// found by their labels, wherever they are, so a member the autoscaler
// moved is where this says it is. With hosts down, it returns the members
// on the others and the HostsDown error.
func (o *Ops) Members(ctx context.Context, pool string) ([]Member, error) {
	all, err := o.ListAll(ctx, nil)
	down, err := Partial(err)
	if err != nil {
		return nil, err
	}
	if len(down) > 0 {
		return MembersOf(pool, all), down
	}
	return MembersOf(pool, all), nil
}

// HostState is a host's virtpool state, kept in its host record.
type HostState struct {
	// Maintenance and Standby are the operator's (virtpool_host).
	Maintenance bool
	Standby     bool
	// AutoStandby is set by the autoscaler when it consolidated the host
	// away (DPM) and cleared when it brings the host back. Kept apart from
	// Standby so that the operator's setting never drifts.
	AutoStandby bool
	Generation  int64
	Found       bool // a record exists
}

// Receives says whether a new guest, or one moved by hand, may go to the
// host: not in maintenance, not standby (the operator's or the
// autoscaler's), or why not, naming the host and what to do.
func (s HostState) Receives(host string) error {
	var why, fix string
	switch {
	case s.Maintenance:
		why, fix = "in maintenance", "end it (virtpool_host maintenance = false)"
	case s.Standby:
		why, fix = "standby", "take it out of standby (virtpool_host standby = false)"
	case s.AutoStandby:
		why, fix = "on standby, put there by the autoscaler (hosts dimension)", "let the autoscaler bring it back"
	default:
		return nil
	}
	return fmt.Errorf("host %s is %s and receives no guest: choose another host, or %s first", host, why, fix)
}

// Host record data keys.
const (
	hostKeyMaintenance = "maintenance"
	hostKeyStandby     = "standby"
	hostKeyAutoStandby = "autoscaler_standby"
)

// InStandby reports whether the scheduler should treat the host as standby.
func (s HostState) InStandby() bool { return s.Standby || s.AutoStandby }

// HostStateOf reads a host's state from its records (zero if none).
func HostStateOf(name string, rs []driver.Record) HostState {
	for _, r := range rs {
		if r.Kind == driver.RecordHost && r.Name == name {
			return HostState{
				Maintenance: r.Data[hostKeyMaintenance] == "true",
				Standby:     r.Data[hostKeyStandby] == "true",
				AutoStandby: r.Data[hostKeyAutoStandby] == "true",
				Generation:  r.Generation,
				Found:       true,
			}
		}
	}
	return HostState{}
}

// HostState reads a host's state from its host record.
func (o *Ops) HostState(ctx context.Context, name string) (HostState, error) {
	d, err := o.driver(ctx)
	if err != nil {
		return HostState{}, err
	}
	h, err := o.Hosts.Lookup(name)
	if err != nil {
		return HostState{}, err
	}
	hctx, cancel := context.WithTimeout(ctx, o.hostTimeout())
	defer cancel()
	rs, err := d.ListRecords(hctx, h.URI)
	if err != nil {
		return HostState{}, fmt.Errorf("read state of host %s: %w", name, err)
	}
	return HostStateOf(name, rs), nil
}

// PutHostState stores a host's state in its host record, with s.Generation.
func (o *Ops) PutHostState(ctx context.Context, name string, s HostState) error {
	d, err := o.driver(ctx)
	if err != nil {
		return err
	}
	h, err := o.Hosts.Lookup(name)
	if err != nil {
		return err
	}
	r := driver.Record{Kind: driver.RecordHost, Name: name, Generation: s.Generation,
		Data: map[string]string{hostKeyMaintenance: strconv.FormatBool(s.Maintenance),
			hostKeyStandby: strconv.FormatBool(s.Standby), RecordKeyOwner: OwnerTerraform}}
	if s.AutoStandby {
		r.Data[hostKeyAutoStandby] = "true"
	}
	hctx, cancel := context.WithTimeout(ctx, o.hostTimeout())
	defer cancel()
	if err := d.PutRecord(hctx, h.URI, r); err != nil {
		return fmt.Errorf("store state of host %s: %w", name, err)
	}
	return nil
}

// SetAutoStandby marks a host as put on standby by the autoscaler (or
// brings it back), keeping the operator's settings.
func (o *Ops) SetAutoStandby(ctx context.Context, name string, on bool) error {
	st, err := o.HostState(ctx, name)
	if err != nil {
		return err
	}
	if st.AutoStandby == on {
		return nil
	}
	st.AutoStandby = on
	st.Generation++
	o.log().Info("host standby changed", "host", name, "standby", on)
	return o.PutHostState(ctx, name, st)
}

// ReadPool finds a pool's record on the given hosts (every host if nil) and
// returns the highest generation, and the hosts that hold any generation
// of it: a write that reached only some hosts before it was interrupted is
// then still seen. With hosts down, the record the others hold comes with
// the HostsDown error: a caller that needs none of those hosts goes on
// with it (see Needed); none found then is no answer either.
func (o *Ops) ReadPool(ctx context.Context, name string, hosts []string) (Record, []string, bool, error) {
	d, err := o.driver(ctx)
	if err != nil {
		return Record{}, nil, false, err
	}
	if hosts == nil {
		hosts = o.Hosts.Names()
	}
	records, err := readEach(ctx, o, hosts, func(ctx context.Context, h HostEntry) ([]driver.Record, error) {
		rs, err := d.ListRecords(ctx, h.URI)
		if err != nil {
			return nil, fmt.Errorf("read pool records: %w", err)
		}
		return rs, nil
	})
	down, err := Partial(err)
	if err != nil {
		return Record{}, nil, false, err
	}
	var (
		newest = Newest{}
		bad    error // why the newest record kept is unreadable
		where  []string
	)
	for _, n := range hosts {
		for _, r := range records[n] {
			if r.Kind != driver.RecordPool || r.Name != name {
				continue
			}
			pr, err := DecodeRecord(r) // unreadable, it still has its generation
			where = append(where, n)
			if newest.Offer(name, pr) {
				bad = err
			}
		}
	}
	sort.Strings(where)
	pr, found := newest[name]
	switch {
	case found && bad != nil:
		return pr, where, false, bad
	case len(down) > 0:
		return pr, where, found, down
	}
	return pr, where, found, nil
}

// WritePool stores a pool record, one generation up from the highest seen,
// on every host of the pool but those fenced (they are off; the newer
// generation wins over theirs when they are back), and removes it from
// hosts that held it but are no longer the pool's (and from stale ones).
func (o *Ops) WritePool(ctx context.Context, pr Record, stale []string) (Record, error) {
	d, err := o.driver(ctx)
	if err != nil {
		return pr, err
	}
	// A host outside the pool that does not answer keeps a stale copy,
	// of an older generation, until a write after it is back.
	old, where, _, err := o.ReadPool(ctx, pr.Spec.Name, nil)
	if err := Needed(err, pr.Placeable()); err != nil {
		return pr, err
	}
	pr.Generation = max(pr.Generation, old.Generation) + 1
	r, err := EncodeRecord(pr)
	if err != nil {
		return pr, err
	}
	keep := pr.Spec.HostSet()
	err = EachHost(pr.Placeable(), func(n string) error {
		h, ok := o.Hosts[n]
		if !ok {
			h, ok = pr.Spec.Inventory()[n]
		}
		if !ok {
			return fmt.Errorf("store pool %s: unknown host %q", pr.Spec.Name, n)
		}
		hctx, cancel := context.WithTimeout(ctx, o.hostTimeout())
		defer cancel()
		if err := d.PutRecord(hctx, h.URI, r); err != nil {
			return fmt.Errorf("store pool %s on host %s: %w", pr.Spec.Name, n, err)
		}
		return nil
	})
	if err != nil {
		return pr, err
	}
	var drop []string
	for _, n := range append(where, stale...) {
		if !keep[n] {
			drop = append(drop, n)
		}
	}
	o.log().Debug("pool record stored", "pool", pr.Spec.Name, "generation", pr.Generation,
		"hosts", pr.Spec.HostNames(), "removed_from", drop)
	return pr, o.DeletePoolRecord(ctx, pr.Spec.Name, drop)
}

// DeletePoolRecord removes a pool's record from the given hosts.
func (o *Ops) DeletePoolRecord(ctx context.Context, name string, hosts []string) error {
	d, err := o.driver(ctx)
	if err != nil {
		return err
	}
	return EachHost(dedupe(hosts), func(n string) error {
		h, err := o.Hosts.Lookup(n)
		if err != nil {
			return err
		}
		hctx, cancel := context.WithTimeout(ctx, o.hostTimeout())
		defer cancel()
		if err := d.DeleteRecord(hctx, h.URI, driver.RecordPool, name); err != nil {
			return fmt.Errorf("remove pool %s from host %s: %w", name, n, err)
		}
		return nil
	})
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// RemoveGuest stops a guest (gracefully, up to ShutdownTimeout) and
// removes its definition and overlay. Both steps are no-ops on a guest that
// is already gone, so an interrupted removal is simply retried. It is for
// the guest's last copy: a copy that another one on another host replaces
// goes with RemoveStaleCopy, which keeps the disk they share.
func (o *Ops) RemoveGuest(ctx context.Context, host, name string) error {
	return o.remove(ctx, host, name, driver.UndefineOptions{})
}

// RemoveStaleCopy is RemoveGuest of a copy of a guest that another copy,
// on another host, replaces (a stale copy on a fenced host that is back,
// one an interrupted migration left): its overlay is kept, because every
// copy of a guest has the same overlay path, on storage the hosts share,
// so it is the other copy's disk.
func (o *Ops) RemoveStaleCopy(ctx context.Context, host, name string) error {
	return o.remove(ctx, host, name, driver.UndefineOptions{KeepStorage: true})
}

func (o *Ops) remove(ctx context.Context, host, name string, opts driver.UndefineOptions) error {
	d, err := o.driver(ctx)
	if err != nil {
		return err
	}
	h, err := o.Hosts.Lookup(host)
	if err != nil {
		return err
	}
	o.log().Info("stopping guest", "domain", name, "host", host, "timeout", o.ShutdownTimeout.String())
	if err := d.ShutdownDomain(ctx, h.URI, name, o.ShutdownTimeout); err != nil {
		return fmt.Errorf("stop %s on host %s: %w", name, host, err)
	}
	if err := d.UndefineDomain(ctx, h.URI, name, opts); err != nil {
		return fmt.Errorf("remove %s from host %s: %w", name, host, err)
	}
	return nil
}

// OtherCopy tells whether members has a copy of mb (its name) on another
// host than mb's: removing mb must then keep its disk (RemoveStaleCopy).
func OtherCopy(members []Member, mb Member) bool {
	return slices.ContainsFunc(members, func(m Member) bool { return m.Name == mb.Name && m.Host != mb.Host })
}

// Migrate live-migrates a guest between two hosts, logging progress.
// Cancelling ctx aborts it; libvirt then leaves the guest running on the
// source, never on both. Migrating a guest that is already on the
// destination is a no-op.
func (o *Ops) Migrate(ctx context.Context, name, from, to string, opts driver.MigrateOptions) (driver.MigrateResult, error) {
	return o.migrate(ctx, "", name, from, to, opts)
}

// migrate is Migrate of a member of pool ("" if unknown), which its
// records name.
func (o *Ops) migrate(ctx context.Context, pool, name, from, to string, opts driver.MigrateOptions) (driver.MigrateResult, error) {
	d, err := o.driver(ctx)
	if err != nil {
		return driver.MigrateResult{}, err
	}
	src, err := o.Hosts.Lookup(from)
	if err != nil {
		return driver.MigrateResult{}, err
	}
	dst, err := o.Hosts.Lookup(to)
	if err != nil {
		return driver.MigrateResult{}, err
	}
	req := driver.MigrateRequest{Domain: name, SourceURI: src.URI, DestURI: dst.URI,
		DestPeerURI: dst.PeerURI, MigrationURI: dst.MigrationURI, Options: opts}
	log := o.log().With("domain", name, "from", from, "to", to)
	rec := event.Event{Guest: name, Pool: pool, From: from, To: to}
	emit := func(kind, msg string, e event.Event) {
		e.Kind, e.Message = kind, msg
		o.emit(e)
	}
	log.Info("live migration starting", "bandwidth_mibs", opts.BandwidthMiBs, "max_downtime", opts.MaxDowntime.String())
	emit(event.MigrationStarted, "live migration starting", rec)
	var last time.Time
	res, err := d.Migrate(ctx, req, func(p driver.MigrateProgress) {
		if time.Since(last) < time.Second {
			return
		}
		last = time.Now()
		pct := 0.0
		if p.DataTotal > 0 {
			pct = 100 * float64(p.DataProcessed) / float64(p.DataTotal)
		}
		log.Info("live migration progress", "elapsed", p.Elapsed.String(), "percent", fmt.Sprintf("%.0f", pct),
			"remaining_bytes", p.DataRemaining, "postcopy", p.PostCopy, "throttle_percent", p.ThrottlePercent)
		e := rec
		e.ElapsedMs, e.Percent, e.RemainingBytes = p.Elapsed.Milliseconds(), pct, p.DataRemaining
		emit(event.MigrationProgress, "live migration progress", e)
	})
	if err != nil {
		err = fmt.Errorf("live-migrate %s from %s to %s: %w", name, from, to, err)
		e := rec
		e.Error = err.Error()
		emit(event.MigrationFailed, "live migration failed", e)
		return res, err
	}
	log.Info("live migration done", "elapsed", res.Elapsed.String(), "downtime", res.Downtime.String(), "bytes", res.Bytes)
	e := rec
	e.ElapsedMs, e.DowntimeMs, e.Bytes = res.Elapsed.Milliseconds(), res.Downtime.Milliseconds(), res.Bytes
	emit(event.MigrationFinished, "live migration done", e)
	return res, nil
}
