#!/bin/sh
# /app/run of a lab pool member that runs a Nomad client (lab.NomadDisk:
# this script and the nomad binary on an ext2 disk the guest mounts on
# /app). The client joins the server the kernel command line names and
# carries node meta naming its domain and pool, which virtpool-target
# matches members to nodes by:
#
#   virtpool.name=DOMAIN virtpool.ip=A.B.C.D/N virtpool.nomad=SERVER:RPCPORT
#   virtpool.pool=POOL (also the node class) virtpool.app=1
set -eu
name= ip= servers= pool=
for kv in $(cat /proc/cmdline); do
	case $kv in
	virtpool.name=*) name=${kv#*=} ;;
	virtpool.ip=*) ip=${kv#*=} ip=${ip%/*} ;;
	virtpool.nomad=*) servers=${kv#*=} ;;
	virtpool.pool=*) pool=${kv#*=} ;;
	esac
done
[ -n "$name" ] && [ -n "$ip" ] && [ -n "$servers" ] || {
	echo "nomad-client: virtpool.name, virtpool.ip and virtpool.nomad are needed on the kernel command line" >&2
	exit 1
}
# A nomad built with cgo loads the libc it was built with: lab.NomadDisk
# puts it and its loader in /app/lib, found where the loader looks.
if [ -d /app/lib ]; then
	mkdir -p /lib64 /lib/x86_64-linux-gnu
	for f in /app/lib/*; do ln -sf "$f" /lib/x86_64-linux-gnu/; done
	[ ! -e /app/lib/ld-linux-x86-64.so.2 ] || ln -sf /app/lib/ld-linux-x86-64.so.2 /lib64/
fi
# Nomad gives allocation directories to nobody.
grep -q '^nobody:' /etc/passwd || echo 'nobody:x:65534:65534:nobody:/:/bin/false' >>/etc/passwd
grep -q '^nogroup:' /etc/group 2>/dev/null || echo 'nogroup:x:65534:' >>/etc/group
mkdir -p /run/nomad
# Under TCG the CPU has no frequency to fingerprint: cpu_total_compute
# gives each member 1000 MHz to allocate. Only raw_exec, and no cgroup or
# bridge fingerprint: the guest's kernel has neither (Nomad 1.6 refuses to
# start when its cgroup fingerprint fails). The cloud, Consul and Vault
# fingerprinters are off: no traffic leaves the lab (Consul's address is a
# socket nothing listens on).
cat >/run/nomad.hcl <<HCL
name                 = "$name"
data_dir             = "/run/nomad"
bind_addr            = "$ip"
log_level            = "WARN"
disable_update_check = true

client {
  enabled           = true
  servers           = ["$servers"]
  node_class        = "$pool"
  network_interface = "eth0"
  cpu_total_compute = 1000
  meta {
    "virtpool.domain" = "$name"
    "virtpool.pool"   = "$pool"
  }
  options = {
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean,consul,vault,cgroup,bridge"
    "driver.allowlist"     = "raw_exec"
  }
}

consul {
  address          = "unix:///run/no-consul.sock"
  auto_advertise   = false
  client_auto_join = false
}

plugin "raw_exec" {
  config {
    enabled    = true
    no_cgroups = true
  }
}
HCL
echo "nomad-client: starting as $name ($ip), servers $servers"
exec /app/nomad agent -config /run/nomad.hcl
