# A host is imported by its name in the provider's hosts.
terraform import virtpool_host.kvm3 kvm3
