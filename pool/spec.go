package pool

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/scheduler"
)

// The pool record (driver.Record of kind "pool") is how a pool exists
// outside Terraform's state. Its Data holds these documents as JSON under
// the keys below, so that the autoscaler plugins and any other tool can
// read a pool from any of its hosts. The JSON field names are a contract:
// add fields, never rename them.
const (
	RecordKeySpec   = "spec"
	RecordKeyPolicy = "policy"
	RecordKeyFences = "fences"
	RecordKeyOwner  = "managed_by"
	// OwnerTerraform is the owner the provider writes.
	OwnerTerraform = "terraform"
)

// Labels on pool members and on domains, in the domain's virtpool metadata.
const (
	LabelPool         = "virtpool.pool"          // pool name
	LabelRole         = "virtpool.role"          // RoleMember or RoleDomain
	LabelIndex        = "virtpool.index"         // member number, from 1
	LabelAntiAffinity = "virtpool.anti_affinity" // anti-affinity group
	// LabelTemplate holds, on a domain, the JSON of the template it was
	// built from, so that tools can tell old members from new ones after a
	// template change.
	LabelTemplate = "virtpool.template"
	// LabelFailoverHosts, on a single domain, lists (comma-separated) the
	// hosts virtpool agent may restart it on, from its template, when its
	// host fails and is fenced; LabelMAC keeps its MAC for that restart.
	LabelFailoverHosts = "virtpool.failover_hosts"
	LabelMAC           = "virtpool.mac"
	RoleMember         = "member"
	RoleDomain         = "domain"
)

// Placements of a pool's new members (Spec.Placement).
const (
	PlacementSpread  = "spread"  // least loaded host first; the default
	PlacementBinpack = "binpack" // fullest host that fits first
)

// Modes of a migration policy (Policy.Mode).
const (
	ModeBalance     = "balance"     // relieve hot hosts
	ModeConsolidate = "consolidate" // pack guests onto fewer hosts
)

// Spec is a pool's specification as stored in its record.
type Spec struct {
	Name string `json:"name"`
	// Hosts the pool may use, with the addresses tools need to reach them.
	Hosts        []HostEntry `json:"hosts"`
	Size         int64       `json:"size"`
	MinSize      int64       `json:"min_size"`
	MaxSize      int64       `json:"max_size"`
	Placement    string      `json:"placement"` // PlacementSpread or PlacementBinpack
	AntiAffinity bool        `json:"anti_affinity"`
	Template     Template    `json:"template"`
	// Protection, if set, protects every member (hot standby): each one's
	// standby is placed by the scheduler among the pool's hosts.
	Protection *Protection `json:"protection,omitempty"`
}

// Template is how a pool member (or a single domain) is built.
type Template struct {
	VCPUs     int64  `json:"vcpus"`
	MemoryMiB int64  `json:"memory_mib"`
	Kernel    string `json:"kernel,omitempty"`
	Initrd    string `json:"initrd,omitempty"`
	// Cmdline may hold {name}, {index} and {ip} (see ExpandCmdline).
	Cmdline     string `json:"cmdline,omitempty"`
	BaseImage   string `json:"base_image,omitempty"`
	OverlayDir  string `json:"overlay_dir,omitempty"`
	Bridge      string `json:"bridge,omitempty"`
	Accelerator string `json:"accelerator,omitempty"`
	// IPBase is member 1's address with prefix (192.0.2.121/24); member n
	// gets the (n-1)-th next one, as {ip} in the cmdline.
	IPBase string `json:"ip_base,omitempty"`
}

// Policy is a pool's migration policy, stored with the pool.
type Policy struct {
	Mode                  string  `json:"mode"` // ModeBalance or ModeConsolidate
	CPULow                float64 `json:"cpu_low"`
	CPUHigh               float64 `json:"cpu_high"`
	MemoryLow             float64 `json:"memory_low"`
	MemoryHigh            float64 `json:"memory_high"`
	TargetUtilisation     float64 `json:"target_utilisation"`
	MaxMigrationsPerRound int64   `json:"max_migrations_per_round"`
	MaxParallel           int64   `json:"max_parallel_migrations"`
	BandwidthMiB          int64   `json:"bandwidth_mib"`
	MaxDowntimeMs         int64   `json:"max_downtime_ms"`
	AutoConverge          bool    `json:"auto_converge"`
	PostCopy              bool    `json:"post_copy"`
	// TLS encrypts the migration streams; the caller's setting turns it
	// on too (a policy never turns it off).
	TLS bool `json:"tls,omitempty"`
	// 0: the caller's (provider's, target's) setting.
	ProgressTimeoutS  int64 `json:"progress_timeout_s,omitempty"`
	CompletionPerGiBS int64 `json:"completion_timeout_per_gib_s,omitempty"`
}

// Record is a pool record decoded.
type Record struct {
	Generation int64
	Spec       Spec
	Policy     *Policy // nil without a virtpool_migration_policy
	// Owner is who manages the pool (RecordKeyOwner); OwnerTerraform if
	// empty. Writers other than Terraform keep it.
	Owner string
	// Fences are the pool's hosts virtpool agent fenced: every writer
	// keeps them (see Fence).
	Fences []Fence
}

// A Fence notes that virtpool agent fenced (powered off) one of the
// pool's hosts after it stopped answering. The members last seen there do
// not run: the pool is restored without them, nothing is placed on the
// host, and when it answers again every member found there predates the
// fence and is stale: removed, never started (Ops.DropFence), before the
// fence is dropped.
//
// A standby fence notes instead that the host was powered off on standby,
// empty (Ops.PowerOffStandby): nothing ran there, nothing is placed there,
// and it is powered on again when a pool needs room (Ops.PowerOnStandby).
type Fence struct {
	Host string    `json:"host"`
	At   time.Time `json:"at"`
	// Members are the names last seen there, kept from reuse until the
	// host is back and its stale copies are gone.
	Members []string `json:"members,omitempty"`
	Standby bool     `json:"standby,omitempty"`
}

// Failed tells whether any of the pool's fences is of a failed host (not
// of one powered off on standby).
func (pr Record) Failed() bool {
	for _, f := range pr.Fences {
		if !f.Standby {
			return true
		}
	}
	return false
}

// offStandby lists the hosts the pool's standby fences say are off.
func (pr Record) offStandby() []string {
	var out []string
	for _, f := range pr.Fences {
		if f.Standby {
			out = append(out, f.Host)
		}
	}
	return out
}

// Fenced returns the fence on host, if any.
func (pr Record) Fenced(host string) (Fence, bool) {
	for _, f := range pr.Fences {
		if f.Host == host {
			return f, true
		}
	}
	return Fence{}, false
}

// Placeable returns the pool's hosts that are not fenced: those its
// members may run on.
func (pr Record) Placeable() []string { return pr.Unfenced(pr.Spec.HostNames()) }

// Unfenced returns the hosts that no fence of the pool names.
func (pr Record) Unfenced(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		if _, fenced := pr.Fenced(h); !fenced {
			out = append(out, h)
		}
	}
	return out
}

// Live drops the members that a fence makes stale: those on a fenced host.
func (pr Record) Live(ms []Member) []Member {
	var out []Member
	for _, m := range ms {
		if _, fenced := pr.Fenced(m.Host); !fenced {
			out = append(out, m)
		}
	}
	return out
}

// EncodeRecord turns a pool record into the driver record stored on hosts.
func EncodeRecord(pr Record) (driver.Record, error) {
	spec, err := json.Marshal(pr.Spec)
	if err != nil {
		return driver.Record{}, fmt.Errorf("encode pool %s: %w", pr.Spec.Name, err)
	}
	owner := pr.Owner
	if owner == "" {
		owner = OwnerTerraform
	}
	r := driver.Record{Kind: driver.RecordPool, Name: pr.Spec.Name, Generation: pr.Generation,
		Data: map[string]string{RecordKeySpec: string(spec), RecordKeyOwner: owner}}
	if pr.Policy != nil {
		pol, err := json.Marshal(pr.Policy)
		if err != nil {
			return driver.Record{}, fmt.Errorf("encode policy of pool %s: %w", pr.Spec.Name, err)
		}
		r.Data[RecordKeyPolicy] = string(pol)
	}
	if len(pr.Fences) > 0 {
		fences, err := json.Marshal(pr.Fences)
		if err != nil {
			return driver.Record{}, fmt.Errorf("encode fences of pool %s: %w", pr.Spec.Name, err)
		}
		r.Data[RecordKeyFences] = string(fences)
	}
	return r, nil
}

// DecodeRecord reads a pool record stored on a host.
func DecodeRecord(r driver.Record) (Record, error) {
	pr := Record{Generation: r.Generation, Owner: r.Data[RecordKeyOwner]}
	if err := json.Unmarshal([]byte(r.Data[RecordKeySpec]), &pr.Spec); err != nil {
		return pr, fmt.Errorf("pool record %s (generation %d): spec: %w", r.Name, r.Generation, err)
	}
	if s, ok := r.Data[RecordKeyPolicy]; ok && s != "" {
		pr.Policy = &Policy{}
		if err := json.Unmarshal([]byte(s), pr.Policy); err != nil {
			return pr, fmt.Errorf("pool record %s (generation %d): policy: %w", r.Name, r.Generation, err)
		}
	}
	if s, ok := r.Data[RecordKeyFences]; ok && s != "" {
		if err := json.Unmarshal([]byte(s), &pr.Fences); err != nil {
			return pr, fmt.Errorf("pool record %s (generation %d): fences: %w", r.Name, r.Generation, err)
		}
	}
	return pr, nil
}

// HostNames returns the names of the pool's hosts.
func (s Spec) HostNames() []string {
	out := make([]string, len(s.Hosts))
	for i, h := range s.Hosts {
		out[i] = h.Name
	}
	return out
}

// HostSet returns the set of the pool's host names.
func (s Spec) HostSet() map[string]bool { return setOf(s.HostNames()) }

// Inventory returns the pool's hosts by name.
func (s Spec) Inventory() Inventory {
	inv := make(Inventory, len(s.Hosts))
	for _, h := range s.Hosts {
		inv[h.Name] = h
	}
	return inv
}

// HasDisk reports whether members boot from a disk image (an overlay in a
// directory every host sees).
func (s Spec) HasDisk() bool { return s.Template.BaseImage != "" }

// GuestTemplate is the planner's shape of a new member.
func (s Spec) GuestTemplate() scheduler.Guest {
	g := scheduler.Guest{VCPUs: int(s.Template.VCPUs), MemoryBytes: s.Template.MemoryMiB << 20, Pool: s.Name}
	if s.AntiAffinity {
		g.AntiAffinity = s.Name
	}
	return g
}

// MemberName is the domain name of a pool's n-th member.
func MemberName(pool string, n int) string { return fmt.Sprintf("%s-%d", pool, n) }

// MemberIP returns the n-th address from base ("192.0.2.121/24" → member 1
// is 192.0.2.121/24, member 2 192.0.2.122/24). An IPv4 network's own
// address and its broadcast address are no member's.
func MemberIP(base string, n int) (string, error) {
	p, err := netip.ParsePrefix(base)
	if err != nil {
		return "", fmt.Errorf("ip_base %q: want an address with prefix length, e.g. 192.0.2.121/24: %w", base, err)
	}
	a := p.Addr()
	for i := 1; i < n; i++ {
		a = a.Next()
		if !a.IsValid() || !p.Masked().Contains(a) {
			return "", fmt.Errorf("ip_base %s has no room for member %d: %s ends at member %d; "+
				"start lower or use a shorter prefix", base, n, p.Masked(), i)
		}
	}
	if p.Addr().Is4() && p.Bits() <= 30 {
		net := p.Masked().Addr()
		switch a {
		case net:
			return "", fmt.Errorf("ip_base %s: member %d would get %s, the network address of %s: start at %s or above",
				base, n, a, p.Masked(), net.Next())
		case broadcast(p):
			return "", fmt.Errorf("ip_base %s: member %d would get %s, the broadcast address of %s: "+
				"start lower, lower max_size, or use a shorter prefix", base, n, a, p.Masked())
		}
	}
	return netip.PrefixFrom(a, p.Bits()).String(), nil
}

// broadcast is an IPv4 prefix's broadcast address.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	for i := range b {
		bits := min(max(p.Bits()-8*i, 0), 8)
		b[i] |= byte(0xff >> bits)
	}
	return netip.AddrFrom4(b)
}

// ValidIPBase says whether ip_base gives every member up to maxSize a
// usable address (members' addresses are consecutive, so the first and
// the last tell), or nil.
func ValidIPBase(base string, maxSize int64) error {
	if _, err := MemberIP(base, 1); err != nil {
		return err
	}
	if _, err := MemberIP(base, int(max(maxSize, 1))); err != nil {
		return fmt.Errorf("%w (max_size is %d)", err, maxSize)
	}
	return nil
}

// CmdlinePlaceholders are what ExpandCmdline fills in a pool's cmdline.
var CmdlinePlaceholders = []string{"{name}", "{index}", "{ip}"}

var placeholderRE = regexp.MustCompile(`\{[A-Za-z_][A-Za-z0-9_]*\}`)

// CheckCmdline names the first placeholder of a pool's cmdline that
// ExpandCmdline does not know, with those it knows, or returns nil.
func CheckCmdline(cmdline string) error {
	for _, ph := range placeholderRE.FindAllString(cmdline, -1) {
		if !slices.Contains(CmdlinePlaceholders, ph) {
			return fmt.Errorf("cmdline %q: unknown placeholder %s: the known ones are %s", cmdline, ph,
				strings.Join(CmdlinePlaceholders, ", "))
		}
	}
	return nil
}

// ExpandCmdline fills a template's kernel command line for one guest:
// {name} is its domain name, {index} its member number, {ip} its address
// from ip_base. Any other placeholder is an error (CheckCmdline).
func ExpandCmdline(t Template, name string, n int) (string, error) {
	if err := CheckCmdline(t.Cmdline); err != nil {
		return "", err
	}
	s := strings.ReplaceAll(t.Cmdline, "{name}", name)
	s = strings.ReplaceAll(s, "{index}", strconv.Itoa(n))
	if strings.Contains(s, "{ip}") {
		if t.IPBase == "" {
			return "", fmt.Errorf("cmdline uses {ip} but ip_base is not set")
		}
		ip, err := MemberIP(t.IPBase, n)
		if err != nil {
			return "", err
		}
		s = strings.ReplaceAll(s, "{ip}", ip)
	}
	return s, nil
}

// DomainSpec builds the driver spec of a guest named name (member n, or 0
// for a lone domain) from a template.
func (t Template) DomainSpec(name string, n int, labels map[string]string) (driver.DomainSpec, error) {
	cmdline := t.Cmdline
	if n > 0 {
		var err error
		if cmdline, err = ExpandCmdline(t, name, n); err != nil {
			return driver.DomainSpec{}, err
		}
	}
	return driver.DomainSpec{
		Name: name, VCPUs: int(t.VCPUs), MemoryMiB: uint64(t.MemoryMiB), Accelerator: t.Accelerator,
		Kernel: t.Kernel, Initrd: t.Initrd, Cmdline: cmdline,
		BaseImage: t.BaseImage, OverlayDir: t.OverlayDir, Bridge: t.Bridge, Labels: labels,
	}, nil
}

// MemberMAC is a stable MAC address for a pool's n-th member (QEMU's
// locally administered prefix, then a hash of pool and number). A member
// re-created with the same number keeps its MAC, so neighbours' ARP caches
// and switches need not relearn it.
func MemberMAC(pool string, n int) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", pool, n)
	v := h.Sum32()
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", byte(v>>16), byte(v>>8), byte(v))
}

// MemberLabels are the labels of a pool's n-th member.
func MemberLabels(s Spec, n int) map[string]string {
	l := map[string]string{LabelPool: s.Name, LabelRole: RoleMember, LabelIndex: strconv.Itoa(n)}
	// The template a member was built from: after a template change, tools
	// can tell old members from new ones.
	if t, err := json.Marshal(s.Template); err == nil {
		l[LabelTemplate] = string(t)
	}
	if s.AntiAffinity {
		l[LabelAntiAffinity] = s.Name
	}
	return l
}

// DefaultPolicy is the migration policy of a pool that has none.
func DefaultPolicy() Policy {
	d := scheduler.DefaultPolicy()
	return Policy{
		Mode:   ModeBalance,
		CPULow: d.LowCPU, CPUHigh: d.HighCPU, MemoryLow: d.LowMem, MemoryHigh: d.HighMem,
		TargetUtilisation:     d.TargetCPU,
		MaxMigrationsPerRound: 2, MaxParallel: 1, MaxDowntimeMs: 300,
	}
}

// SchedulerPolicy turns a pool's placement and migration policy (nil: the
// scheduler's defaults) into the planner's knobs. The planner's target must
// sit below high minus hysteresis, so the target is clamped there rather
// than refused.
func SchedulerPolicy(placement string, p *Policy) scheduler.Policy {
	sp := scheduler.DefaultPolicy()
	if placement == PlacementBinpack {
		sp.Placement = scheduler.BinpackPlacement
	}
	if p == nil {
		return sp
	}
	sp.HighCPU, sp.HighMem = p.CPUHigh, p.MemoryHigh
	sp.LowCPU, sp.LowMem = p.CPULow, p.MemoryLow
	sp.Hysteresis = min(sp.Hysteresis, min(p.CPUHigh-p.CPULow, p.MemoryHigh-p.MemoryLow)/2)
	sp.TargetCPU = clamp(p.TargetUtilisation, p.CPULow, p.CPUHigh-sp.Hysteresis)
	sp.TargetMem = clamp(p.TargetUtilisation, p.MemoryLow, p.MemoryHigh-sp.Hysteresis)
	sp.MaxMigrations = int(p.MaxMigrationsPerRound)
	sp.MaxParallelPerHost = max(1, int(p.MaxParallel))
	return sp
}

func clamp(v, lo, hi float64) float64 { return max(lo, min(v, hi)) }

// MigrateOptions are the live-migration options for a guest of a pool with
// policy p (nil: defaults only). defaults carries the caller's bandwidth and
// downtime, auto-converge, post-copy and timeouts, which the policy
// overrides when it sets them (its auto-converge and post-copy always;
// either turns TLS on). The definition
// always follows the guest, so that it is never defined on two hosts.
func MigrateOptions(defaults driver.MigrateOptions, p *Policy, hasDisk bool) driver.MigrateOptions {
	o := driver.MigrateOptions{
		BandwidthMiBs:    defaults.BandwidthMiBs,
		MaxDowntime:      defaults.MaxDowntime,
		AutoConverge:     defaults.AutoConverge,
		PostCopy:         defaults.PostCopy,
		ProgressTimeout:  defaults.ProgressTimeout,
		CompletionPerGiB: defaults.CompletionPerGiB,
		TLS:              defaults.TLS || (p != nil && p.TLS),
		Persistent:       true,
		UndefineSource:   true,
		// Overlays live in a directory every host sees (shared storage);
		// libvirt cannot tell and calls that unsafe.
		Unsafe: hasDisk,
	}
	if p != nil {
		if p.BandwidthMiB > 0 {
			o.BandwidthMiBs = uint64(p.BandwidthMiB)
		}
		if p.MaxDowntimeMs > 0 {
			o.MaxDowntime = time.Duration(p.MaxDowntimeMs) * time.Millisecond
		}
		if p.ProgressTimeoutS > 0 {
			o.ProgressTimeout = time.Duration(p.ProgressTimeoutS) * time.Second
		}
		if p.CompletionPerGiBS > 0 {
			o.CompletionPerGiB = time.Duration(p.CompletionPerGiBS) * time.Second
		}
		o.AutoConverge, o.PostCopy = p.AutoConverge, p.PostCopy
	}
	return o
}
