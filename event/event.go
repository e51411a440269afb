// Package event is virtpool's event record: one thing that happened, as
// data. The virtpool agent keeps its events in memory and serves them
// (agent); the autoscaler target plugin appends its own to a JSON-lines
// file (Log), which virtpool story and the autoscaler acceptance tests
// read (ReadFile). Tools read these records, never log text: a log
// message may be reworded, a record's kind and fields are stable.
package event

import (
	"encoding/json"
	"time"
)

// Kinds the virtpool agent records (what changed between two samples, or
// what a host's libvirt events told).
const (
	HostUp            = "host_up"
	HostDown          = "host_down"
	HostState         = "host_state" // active, standby or maintenance changed
	GuestStarted      = "guest_started"
	GuestStopped      = "guest_stopped"
	MigrationStarted  = "migration_started"
	MigrationFinished = "migration_finished" // the guest now runs on another host
	PoolResized       = "pool_resized"
	// Failover.
	HostFailed     = "host_failed"     // no answer for the grace period
	HostFenced     = "host_fenced"     // its fence action succeeded
	FenceFailed    = "fence_failed"    // its fence action failed: nothing restarted
	PoolRestored   = "pool_restored"   // a pool of a fenced host is back to size
	RestoreFailed  = "restore_failed"  // … or could not be
	HostRecovered  = "host_recovered"  // a fenced host answers again: stale copies removed
	GuestRestarted = "guest_restarted" // a single domain of a fenced host started on a failover host
	// Protection (hot standby).
	GuestProtected   = "guest_protected"   // a protected domain's first image is on its standby
	ProtectionFailed = "protection_failed" // a checkpoint or its shipping failed (said once until one succeeds)
	GuestRestored    = "guest_restored"    // a protected domain restored on its standby from its last image
	// Power (DPM).
	HostPoweredOff = "host_powered_off" // a standby host, empty long enough, powered off
	PowerOffFailed = "power_off_failed" // … or not: it stays on
	HostPoweredOn  = "host_powered_on"  // a standby host powered off is on and answers again (the target records it too)
)

// Kinds the autoscaler target plugin records (its event_log), besides
// MigrationStarted and MigrationFinished for the migrations it makes.
const (
	ScaleRequested    = "scale_requested"    // the agent called Scale
	ScaleDone         = "scale_done"         // … and the action ended well
	ScaleFailed       = "scale_failed"       // … or failed (Error)
	DryRunPlan        = "dry_run"            // what a dry run would do (Action)
	MigrationProgress = "migration_progress" // at most one a second per migration
	MigrationFailed   = "migration_failed"   // the guest stays on its source (or, if it completed anyway, on its destination)
	MemberCreated     = "member_created"     // scale-up defined and started a member
	MemberRemoved     = "member_removed"     // scale-in stopped and removed a member
	DriverRestarted   = "driver_restarted"   // the driver process had exited: a new one is started
)

// Actions of a DryRunPlan record.
const (
	ActionScale       = "scale"       // size: the pool's size would be Size
	ActionBalance     = "balance"     // hot_hosts: Moves would cool the hot hosts
	ActionConsolidate = "consolidate" // hosts: Moves would free PowerOff
	ActionSpread      = "spread"      // hosts: PowerOn would come back, Moves spread onto them
)

// Event is one record. Fields a kind does not use are left out of its
// JSON (so a count or size of 0 is absent, and reads as 0).
type Event struct {
	Seq   int64     `json:"seq,omitempty"` // the agent's numbering; a Log's records have none
	Time  time.Time `json:"time"`
	Kind  string    `json:"kind"`
	Host  string    `json:"host,omitempty"`
	From  string    `json:"from,omitempty"`
	To    string    `json:"to,omitempty"`
	Guest string    `json:"guest,omitempty"`
	UUID  string    `json:"uuid,omitempty"` // the guest's
	Pool  string    `json:"pool,omitempty"`
	State string    `json:"state,omitempty"` // a host's new state
	Size  int       `json:"size,omitempty"`  // a pool's new size
	// Direction of a pool's resize, or of a scale action: "up" or "down"
	// (a scale action may also be "none").
	Direction string `json:"direction,omitempty"`
	// A migration's time so far or in all, its downtime and bytes.
	ElapsedMs  int64  `json:"elapsed_ms,omitempty"`
	DowntimeMs int64  `json:"downtime_ms,omitempty"`
	Bytes      uint64 `json:"bytes,omitempty"`
	// A migration in progress: the share of its memory sent, and what is
	// left to send.
	Percent        float64 `json:"percent,omitempty"`
	RemainingBytes uint64  `json:"remaining_bytes,omitempty"`

	// A scale action's policy: its pool, or the whole cluster, and its
	// dimension (size, hosts, hot_hosts).
	Cluster   bool   `json:"cluster,omitempty"`
	Dimension string `json:"dimension,omitempty"`
	Count     int64  `json:"count,omitempty"`  // the count asked for
	Reason    string `json:"reason,omitempty"` // the agent's reason for the action
	DryRun    bool   `json:"dry_run,omitempty"`
	// A dry run's plan: what it would do, the moves and the hosts it
	// would bring back or put on standby.
	Action   string   `json:"action,omitempty"`
	Moves    []Move   `json:"moves,omitempty"`
	PowerOn  []string `json:"power_on,omitempty"`
	PowerOff []string `json:"power_off,omitempty"`

	Pid     int    `json:"pid,omitempty"`   // a driver process's
	Error   string `json:"error,omitempty"` // why it failed
	Message string `json:"message"`
}

// Move is one live migration of a plan.
type Move struct {
	Guest string `json:"guest"`
	From  string `json:"from"`
	To    string `json:"to"`
	Wave  int    `json:"wave"` // from 1: the moves of a wave run together
}

// String is the record as one JSON line, for messages.
func (e Event) String() string {
	b, err := json.Marshal(e)
	if err != nil { // a record has nothing JSON cannot encode
		return e.Kind + ": " + e.Message
	}
	return string(b)
}
