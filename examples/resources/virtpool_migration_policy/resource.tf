# Keep the web pool's hosts below 75 % CPU by live migration, moving at most
# two guests per autoscaler round.
resource "virtpool_migration_policy" "web" {
  pool                     = virtpool_pool.web.name
  mode                     = "balance"
  cpu_low                  = 0.3
  cpu_high                 = 0.75
  memory_low               = 0.3
  memory_high              = 0.85
  target_utilisation       = 0.6
  max_migrations_per_round = 2
  max_parallel_migrations  = 1
  bandwidth_mib            = 1000
  max_downtime_ms          = 300
  # A guest that writes memory faster than it can be sent: throttle it,
  # then switch to post-copy; give up on a migration after 2 minutes
  # without progress (see the guide "Live migrations that always end").
  auto_converge      = true
  post_copy          = true
  progress_timeout_s = 120
}
