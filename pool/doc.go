// Package pool is virtpool's pool model and the operations on it that the
// Terraform provider and the Nomad Autoscaler target plugin share, so that
// there is one implementation of each:
//
//   - the pool record format (Spec, Template, Policy, Record and their codec),
//     member naming and labels (see docs/guides/pool-design.md);
//   - reading and writing pool and host records on the hosts;
//   - the planner's view of the hosts (View), built from libvirt;
//   - "scale a pool to n members" (Ops.Reconcile, Ops.ScaleTo), "remove
//     victims" (Ops.ScaleIn), "migrate per plan" (Ops.Apply) and "empty a
//     host for maintenance" (Ops.Evacuate), over a driver.Driver and the
//     scheduler.
//
// Every operation re-reads the hosts before it acts and every step is
// idempotent (creating takes a fresh member name, removing a missing guest
// and migrating a guest that is already on its destination are no-ops), so
// an operation interrupted at any point — a timeout, a killed driver
// process — is finished by running it again. Live migrations are
// peer-to-peer, persistent on the destination and undefined on the source:
// a guest is never lost and never runs on two hosts.
package pool
