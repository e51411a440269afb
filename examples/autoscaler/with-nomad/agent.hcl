# Nomad Autoscaler agent for virtpool on a cluster that DOES run Nomad, with
# Nomad clients inside the pool's guests:
#
#   - policies for Nomad jobs come from their `scaling` blocks (the Nomad
#     policy source), scaled by the built-in nomad-target as usual;
#   - virtpool's pool policies come from files (./policies): clients-cluster
#     scales the pool "clients" on the share of its CPU Nomad has allocated,
#     as the cloud targets do (jobs/fill.nomad.hcl makes it grow), and
#     drains the Nomad client in each member it removes. The lab runs
#     exactly this end to end: see ../README.md, "Nomad cluster scaling".
#
#   nomad-autoscaler agent -config agent.hcl

log_level  = "INFO"
plugin_dir = "/opt/nomad-autoscaler/plugins" # virtpool-apm, virtpool-target, virtpool-driver

nomad {
  address = "https://nomad.service.consul:4646"
  # token, ca_cert, … as for any Nomad client. Plugins inherit these
  # settings (nomad_config_inherit, default true): virtpool-target drains
  # nodes with them.
}

policy {
  dir                         = "policies"
  default_cooldown            = "2m"
  default_evaluation_interval = "15s"

  source "nomad" {
    enabled = true # job scaling blocks
  }
  source "file" {
    enabled = true # virtpool pools
  }
}

apm "virtpool" {
  driver = "virtpool-apm"
  config = {
    hosts           = "kvm1=qemu+tls://kvm1.example.com/system, kvm2=qemu+tls://kvm2.example.com/system, kvm3=qemu+tls://kvm3.example.com/system"
    sample_interval = "10s"
  }
}

target "virtpool" {
  driver = "virtpool-target"
  config = {
    hosts            = "kvm1=qemu+tls://kvm1.example.com/system, kvm2=qemu+tls://kvm2.example.com/system, kvm3=qemu+tls://kvm3.example.com/system"
    sample_interval  = "10s"
    load_window      = "1m"
    shutdown_timeout = "2m" # members run Nomad: let them shut down cleanly
  }
}
