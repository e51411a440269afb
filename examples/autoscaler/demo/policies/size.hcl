# Members' average CPU near 20 % of their vCPU: on the lab, whose hosts have half a
# core each, that is 40 % of a host, so 1.2 hosts' worth of work needs three members.
scaling "demo-size" {
  enabled = true
  min     = 1
  max     = 3
  policy {
    cooldown = "6s"
    check "member_cpu" {
      source       = "virtpool"
      query        = "pool=demo metric=cpu agg=avg reduce=avg"
      query_window = "6s"
      strategy "target-value" {
        target = 20
      }
    }
    target "virtpool" {
      pool      = "demo"
      dimension = "size"
    }
  }
}
