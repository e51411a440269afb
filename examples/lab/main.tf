# virtpool on the local lab: `make lab-up` (or any test run) brings up hosts
# h1..h3 as network namespaces with their own libvirtd; `make example-lab`
# applies this configuration with the real terraform CLI and destroys it.
#
# Everything about the lab (socket URIs, addresses, guest image) is read from
# the lab's own description, so this file works on any machine running it.

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

variable "driver_path" {
  description = "The virtpool-driver binary (default: beside the provider, then PATH)."
  type        = string
  default     = null
}

locals {
  lab = jsondecode(file(var.lab_json))
  img = local.lab.image
}

provider "virtpool" {
  driver_path = var.driver_path
  hosts = {
    for h in local.lab.hosts : h.name => {
      uri           = h.uri      # unix socket, from the root namespace
      peer_uri      = h.peer_uri # TCP, between the hosts' libvirtd
      migration_uri = h.migrate_to
      cpus          = h.cpus       # each lab host's CPU budget (its cgroup), not the machine's cores
      memory_mib    = h.memory_mib # memory for guests within the host's limit
      vcpu_ratio    = h.vcpu_ratio # vCPUs per core of that budget
    }
  }
  shutdown_timeout          = "0s" # the tiny guest has no ACPI: just stop it
  migration_bandwidth_mib   = 2000
  migration_max_downtime_ms = 50
}

# Two web servers on distinct hosts; each answers at 192.0.2.141, .142.
resource "virtpool_pool" "web" {
  name          = "lab-web"
  hosts         = ["h1", "h2", "h3"]
  size          = 2
  min_size      = 1
  max_size      = 3
  anti_affinity = true

  template = {
    vcpus       = 1
    memory_mib  = 64
    kernel      = local.img.kernel
    initrd      = local.img.initrd
    cmdline     = "${local.img.cmdline} virtpool.ip={ip} virtpool.name={name}"
    ip_base     = "192.0.2.141/24"
    bridge      = "br0"
    accelerator = "auto"
  }
}

resource "virtpool_migration_policy" "web" {
  pool            = virtpool_pool.web.name
  mode            = "balance"
  cpu_high        = 0.8
  bandwidth_mib   = 2000
  max_downtime_ms = 50
}

# One guest on h3: change host to "h1" and apply to live-migrate it.
resource "virtpool_domain" "db" {
  name        = "lab-db"
  host        = "h3"
  vcpus       = 1
  memory_mib  = 64
  kernel      = local.img.kernel
  initrd      = local.img.initrd
  cmdline     = "${local.img.cmdline} virtpool.ip=192.0.2.149/24 virtpool.name=lab-db"
  bridge      = "br0"
  accelerator = "auto"
}

data "virtpool_pool" "web" {
  name       = virtpool_pool.web.name
  depends_on = [virtpool_pool.web, virtpool_migration_policy.web]
}

output "web_members" {
  value = { for m in data.virtpool_pool.web.members : m.name => m.host }
}

output "db" {
  value = { host = virtpool_domain.db.host, uuid = virtpool_domain.db.uuid, state = virtpool_domain.db.state }
}
