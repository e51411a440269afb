package pool

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/virtpool/virtpool/scheduler"
)

// Protection of a guest (hot standby): virtpool agent checkpoints its
// memory every Interval on its host, has the host's helper ship the image
// to the standby host's helper, and after a failure restores the guest
// there from its last image. A single domain holds it in its labels
// (LabelProtection), and its standby hosts are its failover hosts
// (LabelFailoverHosts), in order: the standby is the first of them that
// is not the primary (Standby). A pool's members have the pool's
// (Spec.Protection), and the scheduler places each one's standby among
// the pool's hosts (StandbyFor).
type Protection struct {
	Interval  time.Duration
	OnFailure string // OnFailureRestore or OnFailureRestart
}

// LabelProtection, on a single domain, holds its Protection as JSON:
// {"interval": "2s", "on_failure": "restore"}. LabelStandby, in the
// domain's placement record (not on the domain), names the host the
// agent ships its images to, so that whoever restores it after a failure
// takes the image from there, and from nowhere else.
const (
	LabelProtection = "virtpool.protection"
	LabelStandby    = "virtpool.protection.standby"
)

// What a protected domain's failure leads to (Protection.OnFailure).
const (
	// OnFailureRestore restores the guest on its standby from the last
	// image shipped there (its memory comes back as of that checkpoint);
	// with no image there yet, it is started from its template.
	OnFailureRestore = "restore"
	// OnFailureRestart keeps the images but starts the guest from its
	// template (an HA restart: its memory is lost).
	OnFailureRestart = "restart"
)

// Protection defaults and bounds.
const (
	DefaultCheckpointInterval = 2 * time.Second
	// captureRate is the slowest capture measured on the lab: the 128 MiB
	// guest under load took up to 0.5 s (make bench-checkpoint; idle, 0.1 s).
	captureRate = 256 << 20 // bytes/s
	// minInterval is the shortest interval whatever the guest's size:
	// each checkpoint also ships, and pauses the guest a little.
	minInterval = time.Second
)

// MinCheckpointInterval is the shortest checkpoint interval for a guest
// of memoryMiB: a capture must be over well before the next starts.
func MinCheckpointInterval(memoryMiB uint64) time.Duration {
	capture := time.Duration(float64(memoryMiB<<20) / captureRate * float64(time.Second))
	return max(minInterval, 2*capture).Round(100 * time.Millisecond)
}

type protectionJSON struct {
	Interval  string `json:"interval"`
	OnFailure string `json:"on_failure"`
}

// MarshalJSON writes p as LabelProtection and a pool's spec hold it.
func (p Protection) MarshalJSON() ([]byte, error) {
	return json.Marshal(protectionJSON{Interval: p.Interval.String(), OnFailure: p.OnFailure})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (p *Protection) UnmarshalJSON(b []byte) error {
	var j protectionJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	d, err := time.ParseDuration(j.Interval)
	if err != nil {
		return fmt.Errorf("interval: %w", err)
	}
	*p = Protection{Interval: d, OnFailure: j.OnFailure}
	return nil
}

// Label is p as LabelProtection holds it.
func (p Protection) Label() (string, error) {
	b, err := json.Marshal(p)
	return string(b), err
}

// ProtectionOf reads a domain's protection from its labels; ok is false
// when it has none.
func ProtectionOf(labels map[string]string) (p Protection, ok bool, err error) {
	s, ok := labels[LabelProtection]
	if !ok {
		return p, false, nil
	}
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return p, true, fmt.Errorf("%s: %w", LabelProtection, err)
	}
	return p, true, nil
}

// Check says what is wrong with protecting a guest of memoryMiB that runs
// on primary with these standby hosts, naming the setting to fix.
func (p Protection) Check(memoryMiB uint64, primary string, standby []string) error {
	if err := p.check(memoryMiB); err != nil {
		return err
	}
	if len(standby) == 0 {
		return fmt.Errorf("no standby host: name at least one host other than %s", primary)
	}
	if len(standby) == 1 && standby[0] == primary {
		return fmt.Errorf("standby host %s is the primary host: a standby must be another host", primary)
	}
	return nil
}

// CheckPool says what is wrong with protecting the members (of memoryMiB
// each) of a pool on these hosts: a member's standby is another of them.
func (p Protection) CheckPool(memoryMiB uint64, hosts []string) error {
	if err := p.check(memoryMiB); err != nil {
		return err
	}
	if len(hosts) < 2 {
		return fmt.Errorf("the pool has %d host (%s): a member's standby must be another of the pool's hosts, add one",
			len(hosts), strings.Join(hosts, ", "))
	}
	return nil
}

func (p Protection) check(memoryMiB uint64) error {
	if floor := MinCheckpointInterval(memoryMiB); p.Interval < floor {
		return fmt.Errorf("interval %s is below %s, the least for a guest of %d MiB (a capture takes up to %s): raise interval",
			p.Interval, floor, memoryMiB, floor/2)
	}
	if p.OnFailure != OnFailureRestore && p.OnFailure != OnFailureRestart {
		return fmt.Errorf("on_failure %q: want %q or %q", p.OnFailure, OnFailureRestore, OnFailureRestart)
	}
	return nil
}

// Standby is the host a domain running on primary ships its images to:
// the first of its standby hosts that is not primary and that up accepts
// ("" if none is).
func Standby(standby []string, primary string, up func(string) bool) string {
	i := slices.IndexFunc(standby, func(h string) bool { return h != primary && up(h) })
	if i < 0 {
		return ""
	}
	return standby[i]
}

// StandbyFor places the standby of g, a pool member running on primary:
// the host of hosts (never primary) where the scheduler would place g if
// primary failed, counting the guests that other standbys would restore
// as placed on their standby (reserved: name, size and demand, Host the
// standby), so that a failure finds room for what it restores. It fails
// with the scheduler's reason when no host has room.
func StandbyFor(c scheduler.Cluster, g scheduler.Guest, primary string, hosts []string, reserved []scheduler.Guest, pol scheduler.Policy) (string, error) {
	allowed := setOf(hosts)
	cl := scheduler.Cluster{Guests: slices.Clone(c.Guests)}
	known := map[string]bool{}
	for _, h := range c.Hosts {
		known[h.Name] = true
		if h.Name == primary || !allowed[h.Name] {
			h.State = scheduler.Maintenance
		}
		cl.Hosts = append(cl.Hosts, h)
	}
	for _, r := range reserved {
		if known[r.Host] {
			// A reservation holds room, not a place in a group.
			r.Name, r.AntiAffinity = "standby of "+r.Name, ""
			cl.Guests = append(cl.Guests, r)
		}
	}
	to, err := cl.Place(g, 1, pol)
	if err != nil {
		return "", fmt.Errorf("place the standby of %s (on %s) on one of %v: %w", g.Name, primary, hosts, err)
	}
	return to[0], nil
}

// ProtectionState is a protected domain's state as virtpool agent
// serves it (GET /api/v1/state: protections).
type ProtectionState struct {
	Domain     string `json:"domain"`
	Primary    string `json:"primary"`
	Standby    string `json:"standby"` // "" while no standby host can take it
	IntervalMs int64  `json:"interval_ms"`
	// Checkpoints counts the images shipped to this standby;
	// CheckpointAt is the moment the last one holds (its capture's end),
	// AgeMs how old it is.
	Checkpoints  int64     `json:"checkpoints"`
	CheckpointAt time.Time `json:"checkpoint_at,omitzero"`
	AgeMs        int64     `json:"age_ms"`
	ImageBytes   int64     `json:"image_bytes"` // the last image
	WireBytes    int64     `json:"wire_bytes"`  // what shipping it sent between the hosts
	PauseMs      int64     `json:"pause_ms"`    // the guest's pause in its capture
	CaptureMs    int64     `json:"capture_ms"`
	ShipMs       int64     `json:"ship_ms"`
	Error        string    `json:"error,omitempty"` // the last round's, until one succeeds
}
