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

# A guest with a hot standby: virtpool agent checkpoints its memory every
# 5 s (a pause of milliseconds) and the hosts' helpers keep its last image
# on kvm2; if kvm1 fails (and is fenced) or its QEMU dies, it goes on on kvm2
# with its memory as of that checkpoint, then is protected onto kvm3.
# Memory only: a guest with a base_image disk cannot be protected yet.
resource "virtpool_domain" "cache" {
  name       = "cache-1"
  host       = "kvm1"
  vcpus      = 2
  memory_mib = 512
  kernel     = "/srv/images/vmlinuz"
  initrd     = "/srv/images/cache-initrd.img"
  cmdline    = "console=ttyS0"
  bridge     = "br0"
  mac        = "52:54:00:12:34:56" # kept by the restore

  protection = {
    standby_hosts = ["kvm2", "kvm3"]
    interval      = "5s"
  }
}
