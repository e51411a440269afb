# virtpool agent on the local lab ('make lab-up'): samples the three lab
# hosts every second and serves the live page, the API and /metrics on
# http://127.0.0.1:8480/. Run from this directory:
#
#   ../../bin/virtpool agent -config agent.hcl
#
# Keys are documented in docs/agent.md. On real hosts, use qemu+tls:// or
# qemu+ssh:// URIs (see production.hcl).

listen          = "127.0.0.1:8480"
sample_interval = "1s"
retention       = "15m"
# The driver process beside the virtpool binary (bin/) is found without
# driver_path.

# The lab's hosts, with the CPU and memory budget each has (lab.json).
# Pool records found on them add their pools' hosts too.
# Each host's fence action is the lab's power-off: try 'virtpool lab crash
# h3' and watch the agent fence h3 after failover_grace and restore its
# pools on h1 and h2; 'virtpool lab start h3' brings it back.
failover_grace = "5s"
hosts = {
  h1 = { uri = "qemu+unix:///system?socket=/var/lib/virtpool/lab/hosts/h1/run/libvirt-sock", cpus = 0.5, memory_mib = 2048, vcpu_ratio = 16,
         fence = ["../../bin/virtpool", "lab", "fence", "h1"] }
  h2 = { uri = "qemu+unix:///system?socket=/var/lib/virtpool/lab/hosts/h2/run/libvirt-sock", cpus = 0.5, memory_mib = 2048, vcpu_ratio = 16,
         fence = ["../../bin/virtpool", "lab", "fence", "h2"] }
  h3 = { uri = "qemu+unix:///system?socket=/var/lib/virtpool/lab/hosts/h3/run/libvirt-sock", cpus = 0.5, memory_mib = 2048, vcpu_ratio = 16,
         fence = ["../../bin/virtpool", "lab", "fence", "h3"] }
}
