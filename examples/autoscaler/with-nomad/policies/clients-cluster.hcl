# Cluster scaling of a pool of VMs that run Nomad clients ("clients"), as
# the autoscaler's cloud targets (aws-asg, gce-mig) do it: on the share of
# the pool's CPU that Nomad has allocated, read by the autoscaler's own
# Nomad APM. The members' clients carry node_class "clients" and node meta
# virtpool.domain / virtpool.pool naming their domain and pool.
#
# Allocations that fill the pool make it grow (the new client must register
# and be ready before the autoscaler evaluates again); when they go, the
# members chosen are drained first (their allocations moved elsewhere),
# then removed and their nodes purged.
scaling "clients" {
  enabled = true
  min     = 1
  max     = 10

  policy {
    evaluation_interval = "30s"
    cooldown            = "3m"

    check "allocated_cpu" {
      # "source" left out: the Nomad APM. The short query becomes
      # node_percentage-allocated_cpu/clients/class (node_class below).
      query = "percentage-allocated_cpu"
      strategy "target-value" {
        target = 70
      }
    }

    target "virtpool" {
      pool      = "clients"
      dimension = "size"

      # Only members whose node has this class (and datacenter) count and
      # may be removed; every removed member is drained first.
      node_class  = "clients"
      datacenter  = "dc1"
      node_drain  = "true"
      node_purge  = "true"

      node_drain_deadline           = "15m"
      node_drain_ignore_system_jobs = "false"

      # Among the members with a node, Nomad's choice: here the newest
      # first (least_busy, empty, empty_ignore_system and
      # oldest_create_index also work, as for the cloud targets).
      node_selector_strategy = "newest_create_index"
    }
  }
}
