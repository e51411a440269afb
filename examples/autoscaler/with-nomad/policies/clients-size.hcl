# A pool of VMs that run Nomad clients ("clients"), sized on their CPU. Before
# a member is removed, the Nomad node of the same name is drained (marked
# ineligible, its allocations moved within node_drain_deadline) and removal
# waits for the drain to complete, as the autoscaler's cloud targets do.
scaling "clients-size" {
  enabled = true
  min     = 2
  max     = 10

  policy {
    evaluation_interval = "15s"
    cooldown            = "5m"

    check "member_cpu" {
      source       = "virtpool"
      query        = "pool=clients metric=cpu agg=avg reduce=avg"
      query_window = "5m"

      strategy "target-value" {
        target = 70
      }
    }

    target "virtpool" {
      pool                          = "clients"
      dimension                     = "size"
      node_drain                    = "true"
      node_drain_deadline           = "10m"
      node_drain_ignore_system_jobs = "false"
    }
  }
}
