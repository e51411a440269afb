# Members' average CPU near 50 % of their vCPU.
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
        target = 50
      }
    }
    target "virtpool" {
      pool      = "demo"
      dimension = "size"
    }
  }
}
