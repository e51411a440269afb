# No host above the pool's high watermark (80 %).
scaling "demo-hot-hosts" {
  enabled = true
  min     = 0
  max     = 3
  policy {
    check "no_hot_host" {
      strategy "fixed-value" {
        value = 0
      }
    }
    target "virtpool" {
      pool      = "demo"
      dimension = "hot_hosts"
    }
  }
}
