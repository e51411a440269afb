package scheduler

// Move is one live migration.
type Move struct {
	Guest  string
	From   string
	To     string
	Reason string // why the planner chose this move, for operators
	Bytes  int64  // memory to copy (see package doc)
	Wave   int    // index into Plan.Waves
}

// Plan is the output of a moving decision.
//
// Run it wave by wave: first power on PowerOn, then start every move of a
// wave (in any order, in parallel), wait for all of them, go to the next wave,
// and finally power off PowerOff. Running Moves one at a time in slice order
// is also safe.
type Plan struct {
	// Moves in execution order, sorted by wave.
	Moves []Move
	// Waves holds indices into Moves; the moves of one wave may run in
	// parallel.
	Waves [][]int
	// PowerOn lists standby hosts the plan moves guests to; bring them up
	// before the first wave.
	PowerOn []string
	// PowerOff lists hosts the plan leaves empty; they may go to standby
	// after the last wave.
	PowerOff []string
	// Infeasible is empty when the goal is reached, otherwise it says why
	// not. Moves are still valid and useful (see package doc).
	Infeasible string
}

// Feasible reports whether the plan reaches its goal.
func (p Plan) Feasible() bool { return p.Infeasible == "" }

// Bytes is the total memory the plan copies.
func (p Plan) Bytes() int64 {
	var n int64
	for _, m := range p.Moves {
		n += m.Bytes
	}
	return n
}
