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
# virtpool plans with what each host reports, less what is reserved for the
# hypervisor itself: here 2 cores and 4 GiB per host (libvirtd, QEMU's own
# threads and memory overhead, the host OS); cpus and memory_mib would
# instead set the capacity outright.
provider "virtpool" {
  hosts = {
    kvm1 = { uri = "qemu+tls://kvm1.example.net/system", migration_uri = "tcp://10.10.0.1", reserved_cpus = 2, reserved_memory_mib = 4096 }
    kvm2 = { uri = "qemu+tls://kvm2.example.net/system", migration_uri = "tcp://10.10.0.2", reserved_cpus = 2, reserved_memory_mib = 4096 }
    kvm3 = { uri = "qemu+tls://kvm3.example.net/system", migration_uri = "tcp://10.10.0.3", reserved_cpus = 2, reserved_memory_mib = 4096 }
  }

  # libvirt's default migration bandwidth is low: set one.
  migration_bandwidth_mib   = 1000
  migration_max_downtime_ms = 300
  # A migration that cannot converge is aborted (the guest stays where it
  # was) unless auto-converge or post-copy may finish it.
  migration_auto_converge = true
  # Encrypt the migration streams too (each host's QEMU needs its x509
  # certificates: see the transports guide).
  migration_tls    = true
  shutdown_timeout = "60s"
}
