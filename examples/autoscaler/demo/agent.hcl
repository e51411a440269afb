# The agent `make demo` runs (from this directory, with -plugin-dir): the
# same plugins as ../agent.hcl, sampling every second and reacting within
# seconds, for a demo on the lab. virtpool story runs it with an event_log
# added to the target's config (the records its timeline shows).
log_level = "INFO"

policy {
  dir                         = "policies"
  default_cooldown            = "5s"
  default_evaluation_interval = "2s"
  source "nomad" {
    enabled = false
  }
}

apm "virtpool" {
  driver = "virtpool-apm"
  config = {
    hosts           = "h1=qemu+unix:///system?socket=/var/lib/virtpool/lab/hosts/h1/run/libvirt-sock"
    sample_interval = "1s"
    retention       = "10m"
  }
}

target "virtpool" {
  driver = "virtpool-target"
  config = {
    hosts            = "h1=qemu+unix:///system?socket=/var/lib/virtpool/lab/hosts/h1/run/libvirt-sock"
    sample_interval  = "1s"
    load_window      = "6s"
    shutdown_timeout = "0s"
  }
}
