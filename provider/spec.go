package provider

import (
	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/scheduler"
)

// The pool record (driver.Record of kind "pool") is how a pool exists
// outside Terraform's state, shared with the autoscaler plugins: its
// format, member naming and labels are package pool's, so that there is one
// implementation. These names keep the provider's code short.
type (
	PoolSpec   = pool.Spec
	Template   = pool.Template
	PolicySpec = pool.Policy
	PoolRecord = pool.Record
)

const (
	recordKeySpec   = pool.RecordKeySpec
	recordKeyPolicy = pool.RecordKeyPolicy
	recordKeyOwner  = pool.RecordKeyOwner
	ownerTerraform  = pool.OwnerTerraform

	labelPool         = pool.LabelPool
	labelRole         = pool.LabelRole
	labelIndex        = pool.LabelIndex
	labelAntiAffinity = pool.LabelAntiAffinity
	roleMember        = pool.RoleMember
	roleDomain        = pool.RoleDomain
)

func encodePoolRecord(pr PoolRecord) (driver.Record, error) { return pool.EncodeRecord(pr) }

func decodePoolRecord(r driver.Record) (PoolRecord, error) { return pool.DecodeRecord(r) }

// memberName is the domain name of a pool's n-th member.
func memberName(p string, n int) string { return pool.MemberName(p, n) }

// memberIP returns the n-th address from base (see pool.MemberIP).
func memberIP(base string, n int) (string, error) { return pool.MemberIP(base, n) }

// expandCmdline fills {name}, {index} and {ip} (see pool.ExpandCmdline).
func expandCmdline(t Template, name string, n int) (string, error) {
	return pool.ExpandCmdline(t, name, n)
}

// memberMAC is a pool member's stable MAC (see pool.MemberMAC).
func memberMAC(p string, n int) string { return pool.MemberMAC(p, n) }

// memberLabels are the labels of a pool's n-th member.
func memberLabels(s PoolSpec, n int) map[string]string { return pool.MemberLabels(s, n) }

// defaultPolicy is what the provider uses for a pool without a policy.
func defaultPolicy() PolicySpec { return pool.DefaultPolicy() }

// schedulerPolicy turns a pool's placement and migration policy into the
// planner's knobs (see pool.SchedulerPolicy).
func schedulerPolicy(placement string, p *PolicySpec) scheduler.Policy {
	return pool.SchedulerPolicy(placement, p)
}

// migrateOptions are the live-migration options for a guest of a pool with
// policy p (nil: the provider's defaults). The definition always follows
// the guest, so that it is never defined on two hosts.
func (c *Client) migrateOptions(p *PolicySpec, hasDisk bool) driver.MigrateOptions {
	return pool.MigrateOptions(c.migrationDefaults(), p, hasDisk)
}

func (c *Client) migrationDefaults() driver.MigrateOptions {
	return driver.MigrateOptions{BandwidthMiBs: uint64(c.cfg.MigrationBandwidthMiB), MaxDowntime: c.cfg.MigrationMaxDowntime}
}
