# Empty kvm3 for maintenance: apply live-migrates its guests to the other
# hosts (pool members only to their pool's hosts) and nothing is placed
# there until maintenance is set back to false or the resource removed.
resource "virtpool_host" "kvm3" {
  name        = "kvm3"
  maintenance = true
}

# Keep new guests off kvm2 without moving the ones it runs.
resource "virtpool_host" "kvm2" {
  name    = "kvm2"
  standby = true
}
