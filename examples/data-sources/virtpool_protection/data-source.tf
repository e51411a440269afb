# The hot standby of a protected domain, as virtpool agent reports it.
data "virtpool_protection" "db" {
  agent_url = "http://127.0.0.1:8480/"
  domain    = virtpool_domain.db.name
}

output "db_standby" {
  value = "${data.virtpool_protection.db.primary} → ${data.virtpool_protection.db.standby}, last image ${data.virtpool_protection.db.age_ms} ms old"
}
