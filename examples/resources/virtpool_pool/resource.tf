# Three web servers spread over the hosts, never two on one host. The
# pool's specification is stored on the hosts, where the Nomad Autoscaler
# plugins find it; when the autoscaler manages the size, let it.
resource "virtpool_pool" "web" {
  name          = "web"
  hosts         = ["kvm1", "kvm2", "kvm3"]
  size          = 3
  min_size      = 2
  max_size      = 3
  placement     = "spread"
  anti_affinity = true

  template = {
    vcpus      = 2
    memory_mib = 2048
    # A copy-on-write overlay per member on a base image every host sees.
    base_image = "/srv/images/web-base.qcow2"
    bridge     = "br0"
  }

  lifecycle {
    ignore_changes = [size]
  }
}

# Direct kernel boot, each member with its own address on the command line.
resource "virtpool_pool" "workers" {
  name     = "workers"
  hosts    = ["kvm2", "kvm3"]
  size     = 4
  min_size = 0
  max_size = 8

  template = {
    vcpus      = 1
    memory_mib = 512
    kernel     = "/srv/images/vmlinuz"
    initrd     = "/srv/images/initrd.img"
    cmdline    = "console=ttyS0 ip={ip}::10.20.0.1:255.255.255.0:{name}::off"
    ip_base    = "10.20.0.11/24"
    bridge     = "br0"
  }
}

# Hot standby of every member: each one's memory is checkpointed every
# 4 s (512 MiB: at least 4 s) and shipped to a standby the scheduler
# places on another of the pool's hosts; after a host failure a member
# comes back there with its memory, under its own name (needs virtpool
# agent and each host's checkpoint helper).
resource "virtpool_pool" "sessions" {
  name     = "sessions"
  hosts    = ["kvm1", "kvm2", "kvm3"]
  size     = 2
  min_size = 2
  max_size = 4

  protection = {
    interval = "4s"
  }

  template = {
    vcpus      = 1
    memory_mib = 512
    kernel     = "/srv/images/vmlinuz"
    initrd     = "/srv/images/sessions-initrd.img"
    cmdline    = "console=ttyS0 ip={ip}::10.20.1.1:255.255.255.0:{name}::off"
    ip_base    = "10.20.1.11/24"
    bridge     = "br0"
  }
}
