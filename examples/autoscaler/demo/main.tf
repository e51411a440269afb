# The pool `make demo` lets the autoscaler drive (see ../README.md): three
# lab hosts, two members to start with, a migration policy that allows
# consolidation. The autoscaler owns the size: Terraform ignores it.

terraform {
  required_providers {
    virtpool = {
      source = "virtpool/virtpool"
    }
  }
}

variable "lab_json" {
  description = "The running lab's description, written by 'virtpool lab up'."
  type        = string
  default     = "/var/lib/virtpool/lab/lab.json"
}

locals {
  lab = jsondecode(file(var.lab_json))
  img = local.lab.image
}

provider "virtpool" {
  hosts = {
    for h in local.lab.hosts : h.name => {
      uri           = h.uri
      peer_uri      = h.peer_uri
      migration_uri = h.migrate_to
      cpus          = h.cpus # the lab host's CPU budget
      memory_mib    = h.memory_mib
      vcpu_ratio    = h.vcpu_ratio
    }
  }
  shutdown_timeout          = "0s"
  migration_bandwidth_mib   = 2000
  migration_max_downtime_ms = 50
}

resource "virtpool_pool" "demo" {
  name     = "demo"
  hosts    = ["h1", "h2", "h3"]
  size     = 2
  min_size = 1
  max_size = 3

  template = {
    vcpus       = 1
    memory_mib  = 64
    kernel      = local.img.kernel
    initrd      = local.img.initrd
    cmdline     = "${local.img.cmdline} virtpool.ip={ip} virtpool.name={name}"
    ip_base     = "192.0.2.171/24"
    bridge      = "br0"
    accelerator = "auto"
  }

  lifecycle {
    ignore_changes = [size] # the autoscaler's
  }
}

resource "virtpool_migration_policy" "demo" {
  pool                    = virtpool_pool.demo.name
  mode                    = "consolidate" # the hosts policy may free hosts
  cpu_low                 = 0.1
  cpu_high                = 0.8
  target_utilisation      = 0.6
  max_parallel_migrations = 1
  bandwidth_mib           = 2000
  max_downtime_ms         = 50
}

# What `virtpool story` reads after apply (terraform output -json): the pool
# it drives and shows, and its migration policy.
output "pool" {
  description = "The pool: its name, hosts, size as applied, and member 1's address (member n has the n-th)."
  value = {
    name    = virtpool_pool.demo.name
    hosts   = virtpool_pool.demo.hosts
    size    = virtpool_pool.demo.size
    ip_base = virtpool_pool.demo.template.ip_base
  }
}

output "migration_policy" {
  description = "The pool's migration policy: its mode and high CPU watermark (a fraction of a host's CPUs)."
  value = {
    mode     = virtpool_migration_policy.demo.mode
    cpu_high = virtpool_migration_policy.demo.cpu_high
  }
}
