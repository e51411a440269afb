package pool

// Nomad node meta keys a pool member's Nomad client sets (the guest image
// writes them into the client's meta block), so the autoscaler finds the
// member of a node without relying on node names.
const (
	// NomadMetaDomain is the member's domain name (MemberName).
	NomadMetaDomain = "virtpool.domain"
	// NomadMetaPool is the member's pool name.
	NomadMetaPool = "virtpool.pool"
)
