# A pool is imported by name; its specification is read from the hosts.
terraform import virtpool_pool.web web
