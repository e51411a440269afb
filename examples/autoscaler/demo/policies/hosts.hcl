# Hosts in use near 40 % CPU on average; the others on standby.
scaling "demo-hosts" {
  enabled = true
  min     = 1
  max     = 3
  policy {
    cooldown = "6s"
    check "host_cpu" {
      source       = "virtpool"
      query        = "pool=demo of=hosts metric=cpu agg=avg reduce=avg"
      query_window = "6s"
      strategy "target-value" {
        target = 40
      }
    }
    target "virtpool" {
      pool      = "demo"
      dimension = "hosts"
    }
  }
}
