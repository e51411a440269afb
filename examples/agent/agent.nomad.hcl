# The virtpool agent as a Nomad job (raw_exec: it needs the libvirt client
# library and the PKI of the host it runs on). Nomad checks /health, which
# answers 200 while samples reach a host and 503 otherwise.
#
#   nomad job run agent.nomad.hcl

job "virtpool-agent" {
  type = "service"

  group "agent" {
    count = 1

    network {
      port "http" {
        static = 8480
      }
    }

    service {
      name     = "virtpool-agent"
      port     = "http"
      provider = "nomad"

      check {
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "agent" {
      driver = "raw_exec"

      config {
        command = "/usr/local/bin/virtpool"
        args    = ["agent", "-config", "local/agent.hcl"] # raw_exec runs in the task directory
      }

      template {
        destination = "local/agent.hcl"
        data        = <<-EOT
          listen          = "{{ env "NOMAD_ADDR_http" }}"
          sample_interval = "10s"
          retention       = "1h"
          driver_path     = "/usr/local/libexec/virtpool/virtpool-driver"
          hosts = {
            kvm1 = { uri = "qemu+tls://kvm1.example.com/system", reserved_cpus = 2, reserved_memory_mib = 4096 }
            kvm2 = { uri = "qemu+tls://kvm2.example.com/system", reserved_cpus = 2, reserved_memory_mib = 4096 }
          }
        EOT
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
