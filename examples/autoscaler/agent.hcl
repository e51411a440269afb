# Nomad Autoscaler agent for virtpool, WITHOUT a Nomad server.
#
# Run it from this directory after `make` (which builds bin/nomad-autoscaler
# and installs the plugins into bin/plugins) and `make lab-up` (the local
# lab, hosts h1..h3), with the pool of examples/lab applied:
#
#   ../../bin/nomad-autoscaler agent -config agent.hcl
#
# The policies in ./policies are read at start and on SIGHUP.

log_level = "INFO"

# virtpool-apm, virtpool-target and the virtpool-driver they start.
plugin_dir = "../../bin/plugins"

http {
  bind_address = "127.0.0.1"
  bind_port    = 8080
}

policy {
  dir = "policies"

  default_cooldown            = "1m"
  default_evaluation_interval = "10s"

  # There is no Nomad server: without this the agent's Nomad policy source
  # keeps failing and restarting the policy manager, and nothing scales.
  source "nomad" {
    enabled = false
  }
}

# Load of hosts, pools and guests, sampled from the hosts through the
# virtpool driver. Queries: see examples/autoscaler/README.md.
apm "virtpool" {
  driver = "virtpool-apm"
  config = {
    # Where pool records are found: "name=libvirt URI", comma separated.
    # The hosts of every pool found are added from its record, so one host
    # per pool is enough; list them all so that any may be down. For real
    # hosts: "kvm1=qemu+tls://kvm1.example.com/system, …".
    hosts = "h1=qemu+unix:///system?socket=/var/lib/virtpool/lab/hosts/h1/run/libvirt-sock, h2=qemu+unix:///system?socket=/var/lib/virtpool/lab/hosts/h2/run/libvirt-sock, h3=qemu+unix:///system?socket=/var/lib/virtpool/lab/hosts/h3/run/libvirt-sock"

    sample_interval = "5s"  # one sample of every host
    retention       = "30m" # samples kept (also bounded by max_samples)
    max_samples     = "1000"
  }
}

# Scales pools and live-migrates their members.
target "virtpool" {
  driver = "virtpool-target"
  config = {
    hosts           = "h1=qemu+unix:///system?socket=/var/lib/virtpool/lab/hosts/h1/run/libvirt-sock, h2=qemu+unix:///system?socket=/var/lib/virtpool/lab/hosts/h2/run/libvirt-sock, h3=qemu+unix:///system?socket=/var/lib/virtpool/lab/hosts/h3/run/libvirt-sock"
    sample_interval = "5s"

    # Guests' CPU demand is averaged over this window to tell hot hosts
    # and to plan moves.
    load_window = "30s"

    # A removed member gets this long to power off (the lab's tiny guest
    # has no ACPI: stop it at once).
    shutdown_timeout = "0s"

    # Migration defaults; a pool's virtpool_migration_policy overrides them.
    migration_bandwidth_mib = "2000"
    migration_max_downtime  = "50ms"
  }
}
