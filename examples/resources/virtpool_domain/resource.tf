# One guest. Change host to "kvm2" and apply: the plan shows an in-place
# update and the running guest is live-migrated, keeping its UUID.
resource "virtpool_domain" "db" {
  name       = "db-1"
  host       = "kvm1"
  vcpus      = 4
  memory_mib = 8192
  base_image = "/srv/images/postgres-base.qcow2"
  bridge     = "br0"
  labels = {
    team = "data"
  }

  timeouts = {
    update = "30m" # a migration of a busy 8 GiB guest can take a while
  }
}
