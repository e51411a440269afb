# Balancing (DRS-like): "no host is hot". A host is hot above the high CPU
# or memory watermark of the pool's virtpool_migration_policy; Scale moves
# members off hot hosts (live migration, with the policy's bandwidth,
# downtime, parallelism and per-round cap) until none is. This is how
# balancing happens when neither the pool's size nor its hosts change.
scaling "lab-web-hot-hosts" {
  enabled = true
  min     = 0
  max     = 3 # the pool's hosts

  policy {
    evaluation_interval = "10s"
    cooldown            = "30s"

    # fixed-value needs no metric: the target counts hot hosts itself.
    check "no_hot_host" {
      strategy "fixed-value" {
        value = 0
      }
    }

    target "virtpool" {
      pool      = "lab-web"
      dimension = "hot_hosts"
    }
  }
}
