# Power management for the whole cluster (DPM-like): no pool, so the members
# of every pool are packed onto as few hosts as the load needs, each only
# among its own pool's hosts; freed hosts go on standby. Guests that are no
# pool's member stay where they are (a host running one stays in use).
#
# It overlaps with lab-web-hosts.hcl (both would move lab-web's members):
# enable one of them, not both.
scaling "cluster-hosts" {
  enabled = false
  min     = 1
  max     = 3

  policy {
    evaluation_interval = "10s"
    cooldown            = "2m"

    check "host_cpu" {
      source = "virtpool"
      # No selector: every host in use (not on standby, not in maintenance).
      query        = "metric=cpu agg=avg reduce=avg"
      query_window = "2m"

      strategy "target-value" {
        target = 50
      }
    }

    target "virtpool" {
      dimension = "hosts"
      # The planner's policy, as virtpool_migration_policy would give it.
      cpu_high                 = "0.8"
      target_utilisation       = "0.7"
      max_migrations_per_round = "4"
    }
  }
}
