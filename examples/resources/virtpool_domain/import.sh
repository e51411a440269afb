# A domain is imported by name, from whichever host runs it.
terraform import virtpool_domain.db db-1
