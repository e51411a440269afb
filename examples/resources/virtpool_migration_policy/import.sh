# A policy is imported by the name of its pool.
terraform import virtpool_migration_policy.web web
