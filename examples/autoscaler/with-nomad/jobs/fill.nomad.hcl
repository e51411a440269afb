# A job whose allocations take CPU of the pool's Nomad clients: each asks
# 400 MHz, so two take 80 % of a 1000 MHz member, above the policy's 70 %.
# `nomad job run jobs/fill.nomad.hcl` makes the pool grow; raise count for
# more; `nomad job stop -purge fill` makes it shrink.
job "fill" {
  datacenters = ["dc1"]
  type        = "service"

  group "g" {
    count = 2

    constraint {
      attribute = "${node.class}"
      value     = "clients"
    }

    # Nomad's default asks 300 MB of the node's disk per allocation (and
    # 100 MB of it for logs, see logs below).
    ephemeral_disk {
      size = 10
    }

    # Allocations move off a draining member as soon as their
    # replacement runs.
    migrate {
      max_parallel     = 1
      health_check     = "task_states"
      min_healthy_time = "1s"
      healthy_deadline = "1m"
    }

    task "sleep" {
      driver = "raw_exec"

      config {
        command = "/bin/sleep"
        args    = ["3600"]
      }

      resources {
        cpu    = 400
        memory = 16
      }

      logs {
        max_files     = 2
        max_file_size = 1
      }
    }
  }
}
