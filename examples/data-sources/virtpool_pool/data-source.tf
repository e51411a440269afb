# A pool made elsewhere (another configuration, or the autoscaler's
# changes): where each member runs now.
data "virtpool_pool" "web" {
  name = "web"
}

output "web_members" {
  value = { for m in data.virtpool_pool.web.members : m.name => m.host }
}
