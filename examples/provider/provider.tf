terraform {
  required_providers {
    virtpool = {
      source = "virtpool/virtpool"
    }
  }
}

# Three KVM hosts. The provider reaches each libvirtd at uri; during a live
# migration the source host's libvirtd reaches the destination at peer_uri
# (default: uri) and QEMU sends the guest's memory to migration_uri.
provider "virtpool" {
  hosts = {
    kvm1 = { uri = "qemu+tls://kvm1.example.net/system", migration_uri = "tcp://10.10.0.1" }
    kvm2 = { uri = "qemu+tls://kvm2.example.net/system", migration_uri = "tcp://10.10.0.2" }
    kvm3 = { uri = "qemu+tls://kvm3.example.net/system", migration_uri = "tcp://10.10.0.3" }
  }

  # libvirt's default migration bandwidth is low: set one.
  migration_bandwidth_mib   = 1000
  migration_max_downtime_ms = 300
  shutdown_timeout          = "60s"
}
