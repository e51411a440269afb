// Package scheduler decides where virtual machines run on a pool of libvirt
// hypervisors so the pool behaves like an elastic cluster (in the spirit of
// VMware DRS/DPM and OpenStack Watcher). It is pure computation: no I/O, no
// clocks, no randomness. The same Cluster and Policy always give the same
// answer, whatever the order of the input slices.
//
// # Decisions
//
//   - [Cluster.Place]: hosts for k new guests of a pool.
//   - [Cluster.Victims]: guests to remove when a pool scales in.
//   - [Cluster.Balance]: moves that bring every host under the high watermark.
//   - [Cluster.Consolidate]: pack onto fewer hosts and free the rest.
//   - [Cluster.Spread]: bring standby hosts into use and level the load.
//   - [Cluster.Evacuate]: empty one host for maintenance.
//   - [Cluster.Recommend]: how many hosts the load needs.
//
// Moving decisions return a [Plan]: ordered moves grouped into waves that may
// run in parallel. [Cluster.Validate] replays a plan and [Cluster.Apply]
// returns the cluster after it.
//
// # What counts against a host
//
// Three quantities are summed over the guests placed on a host:
//
//   - CPU: measured demand (Guest.CPUDemand, cores used averaged over the
//     measurement window), rounded up to millicores. Utilisation is demand
//     divided by Host.Cores.
//   - Memory: configured memory (Guest.MemoryBytes). Memory cannot be
//     overcommitted for live migration, so the configured size, not the
//     measured use, is what a host must hold. Utilisation is the sum divided
//     by Host.MemoryBytes.
//   - vCPUs: Guest.VCPUs, which may exceed the host's cores by
//     Host.VCPURatio, or Policy.VCPURatio for hosts that set none.
//
// A host's load is the larger of its CPU and memory utilisation; it is "hot"
// when CPU utilisation exceeds Policy.HighCPU or memory utilisation exceeds
// Policy.HighMem.
//
// # Capacity and overcommit
//
// A host overcommits when, after receiving a guest, its CPU demand exceeds
// Cores×HighCPU, its memory exceeds MemoryBytes×HighMem, or its vCPUs exceed
// Cores×VCPURatio (the host's, else the policy's). [Cluster.Validate] rejects a plan if any host receiving a
// guest overcommits at any moment, assuming the worst case inside a wave:
// every incoming migration of the wave has landed and no outgoing one has
// left yet (a live migration holds memory on both ends until it completes).
// Hosts that are already hot may stay hot while they drain.
//
// The planners are stricter than Validate. Every destination must stay
// within the high watermark minus Policy.Hysteresis, and Consolidate fills
// hosts only up to Policy.TargetCPU/TargetMem. That gap is the hysteresis
// that keeps two rounds from undoing each other: a host that receives
// guests in one round cannot be hot in the next unless demand itself rises.
//
// # Plans and waves
//
// Planners record moves one at a time, each checked against the state the
// earlier moves leave, so a plan never needs a swap or a cycle: a guest that
// needs room waits for the move that makes it. Moves are then grouped into
// waves. A move joins the latest wave touching its source or destination,
// or the next one if that wave would overcommit the destination in the worst
// case, meet an anti-affinity partner still leaving, or exceed
// Policy.MaxParallelPerHost; moves touching one host keep their order.
//
// # Where a guest may go
//
// A move never takes a guest to a host that is not active (or powered on
// by the plan), to a host running another member of its anti-affinity
// group, or, when Guest.Hosts lists hosts, to any other host: a plan that
// spans several pools keeps each member among its own pool's hosts.
// Pinned guests never move.
//
// # Migration cost
//
// Moving a guest copies its memory. Move.Bytes is the measured memory in
// use (Guest.MemoryUsed) or, when unmeasured, the configured memory. Planners
// first use as few moves as they can and then prefer the cheapest ones.
// Policy.MaxMigrations and Policy.MaxBytes bound an automatic round
// (Balance, Consolidate, Spread); Evacuate is an operator request and moves
// everything or nothing.
//
// # Infeasible goals
//
// Planners never return a plan that fails Validate. If the goal cannot be
// reached, Plan.Infeasible says why. Balance and Spread keep the moves that
// still help; Evacuate returns no moves; Consolidate frees only whole hosts,
// so its moves are always useful.
package scheduler
