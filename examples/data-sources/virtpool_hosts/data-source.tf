data "virtpool_hosts" "all" {}

# The busiest host's name.
output "busiest_host" {
  value = one([for h in data.virtpool_hosts.all.hosts : h.name if h.cpu_utilisation == max([for x in data.virtpool_hosts.all.hosts : x.cpu_utilisation]...)])
}
