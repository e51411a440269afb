# The pool's size follows its load: keep the members' average CPU near 60 %
# of their vCPUs. min and max should match the pool's min_size and
# max_size (the plugin never goes beyond those anyway). In Terraform, set
# lifecycle { ignore_changes = [size] } on the virtpool_pool.
scaling "lab-web-size" {
  enabled = true
  min     = 1
  max     = 3

  policy {
    evaluation_interval = "10s"
    cooldown            = "1m"

    check "member_cpu" {
      source       = "virtpool"
      # Average over the members of each sample, then over the window.
      query        = "pool=lab-web metric=cpu agg=avg reduce=avg"
      query_window = "1m"

      strategy "target-value" {
        target = 60
      }
    }

    target "virtpool" {
      pool      = "lab-web"
      dimension = "size"
      # dry-run = "true"  # decide and log, change nothing
    }
  }
}
