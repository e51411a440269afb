package pool

// Newest keeps, by pool name, the pool record of the highest generation
// offered: a write interrupted after reaching only some of a pool's hosts
// leaves older generations on the others, and the newest one is the pool.
// On a tie the record offered first stays.
type Newest map[string]Record

// Offer keeps pr as pool name's record unless one of the same or a higher
// generation is kept, and reports whether it kept it. name is given apart
// from pr.Spec because a record that could not be decoded still has a name
// and a generation, and must still win when it is the newest.
func (n Newest) Offer(name string, pr Record) bool {
	if kept, ok := n[name]; ok && pr.Generation <= kept.Generation {
		return false
	}
	n[name] = pr
	return true
}
