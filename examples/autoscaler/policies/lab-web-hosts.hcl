# Power management (DPM-like): use as many of the pool's hosts as its load
# needs. Keep the average CPU of the hosts in use near 50 %: below, Scale
# packs the members onto fewer hosts by live migration and marks the freed
# hosts standby; above, it brings standby hosts back and spreads onto them.
#
# Freeing hosts needs the pool's virtpool_migration_policy to say
# mode = "consolidate". examples/lab uses mode = "balance", so this policy
# is disabled here: switch the mode, then set enabled = true.
scaling "lab-web-hosts" {
  enabled = false
  min     = 1
  max     = 3

  policy {
    evaluation_interval = "10s"
    cooldown            = "2m"

    check "host_cpu" {
      source       = "virtpool"
      # Hosts on standby are not counted.
      query        = "pool=lab-web of=hosts metric=cpu agg=avg reduce=avg"
      query_window = "2m"

      strategy "target-value" {
        target = 50
      }
    }

    target "virtpool" {
      pool      = "lab-web"
      dimension = "hosts"
    }
  }
}
