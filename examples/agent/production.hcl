# virtpool agent for real KVM hosts, reached over TLS (libvirt's default
# PKI in /etc/pki: CA, client certificate and key). Keys are documented in
# docs/agent.md.

listen          = "0.0.0.0:8480"
sample_interval = "10s"
retention       = "1h"
driver_path     = "/usr/local/libexec/virtpool/virtpool-driver"

# A host that does not answer for 30 s is fenced (powered off through its
# BMC; the password is IPMI_PASSWORD in the agent's environment), then its
# pools are restored on the hosts left. A host without a fence action is
# never restarted elsewhere.
failover_grace = "30s"
fence_timeout  = "1m"

# kvm1 also has a power-on action: on standby (the autoscaler packed its
# guests onto fewer hosts) and empty for 15 minutes, it is powered off
# with its fence action, and powered on again when a pool needs it.
standby_power_off_after = "15m"

# Protected domains (a protection block in Terraform) are checkpointed
# through each host's helper, 'virtpool ship serve -dir
# /var/lib/virtpool/checkpoints', over mutual TLS with libvirt's client
# certificate (checkpoint_ca, checkpoint_cert, checkpoint_key to change it).
hosts = {
  # 2 cores and 4 GiB kept for the hypervisor itself on each host.
  kvm1 = { uri = "qemu+tls://kvm1.example.com/system", reserved_cpus = 2, reserved_memory_mib = 4096,
           checkpoint_url = "https://kvm1.example.com:8481", checkpoint_dir = "/var/lib/virtpool/checkpoints",
           fence    = ["ipmitool", "-I", "lanplus", "-H", "kvm1-bmc.example.com", "-U", "virtpool", "-E", "chassis", "power", "off"],
           power_on = ["ipmitool", "-I", "lanplus", "-H", "kvm1-bmc.example.com", "-U", "virtpool", "-E", "chassis", "power", "on"] }
  kvm2 = { uri = "qemu+tls://kvm2.example.com/system", reserved_cpus = 2, reserved_memory_mib = 4096,
           checkpoint_url = "https://kvm2.example.com:8481", checkpoint_dir = "/var/lib/virtpool/checkpoints" }
  # Over SSH, with the host key checked against known_hosts.
  kvm3 = { uri = "qemu+ssh://virtpool@kvm3.example.com/system?keyfile=/etc/virtpool/id_ed25519", reserved_cpus = 2, reserved_memory_mib = 4096 }
}
