# The virtpool agent as a Nomad job (raw_exec: it needs the libvirt client
# library and the PKI of the host it runs on). Nomad checks /health, which
# answers 200 while samples reach a host and 503 otherwise.
#
#   nomad job run agent.nomad.hcl
#
# What differs from one site to another is in the variables below: set them
# with -var or -var-file rather than editing the job, e.g.
#
#   nomad job run -var port=9480 -var-file site.vars.hcl agent.nomad.hcl
#
# (make testacc-nomad runs this file with the lab's hosts that way.)

variable "virtpool" {
  description = "The virtpool binary, on every Nomad client that may run the agent."
  type        = string
  default     = "/usr/local/bin/virtpool"
}

variable "driver_path" {
  description = "The virtpool-driver binary the agent starts (docs/agent.md, driver_path)."
  type        = string
  default     = "/usr/local/libexec/virtpool/virtpool-driver"
}

variable "port" {
  description = "The agent's HTTP port (page, API, /metrics, /health), static so that it can be found."
  type        = number
  default     = 8480
}

variable "hosts" {
  description = "The hosts the agent watches: its configuration's hosts map (docs/agent.md)."
  type        = string
  default     = <<-EOT
    {
      kvm1 = { uri = "qemu+tls://kvm1.example.com/system", reserved_cpus = 2, reserved_memory_mib = 4096 }
      kvm2 = { uri = "qemu+tls://kvm2.example.com/system", reserved_cpus = 2, reserved_memory_mib = 4096 }
    }
  EOT
}

job "virtpool-agent" {
  type = "service"

  group "agent" {
    count = 1

    network {
      port "http" {
        static = var.port
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
        command = var.virtpool
        args    = ["agent", "-config", "local/agent.hcl"] # raw_exec runs in the task directory
      }

      template {
        destination = "local/agent.hcl"
        data        = <<-EOT
          listen          = "{{ env "NOMAD_ADDR_http" }}"
          sample_interval = "10s"
          retention       = "1h"
          driver_path     = "${var.driver_path}"
          hosts = ${var.hosts}
        EOT
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
