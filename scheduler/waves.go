package scheduler

import (
	"cmp"
	"slices"
)

// buildPlan turns the recorded steps into a Plan with waves.
//
// Steps are valid one after another (each planner checked its destination
// against the state left by the steps before). Waves let independent steps
// run together. A step joins the latest wave that touches either of its
// hosts, or the one after it, so the steps that touch any one host keep
// their order. Within a wave a destination must hold, under Validate's
// limits, everything it had at the start of the wave plus every incoming
// guest: state after the step plus the guests leaving it in that wave. The
// next wave is always safe: it starts from the sequential state.
func (s *sim) buildPlan(infeasible string) Plan {
	p := Plan{Infeasible: infeasible}
	for i := range s.hosts {
		if s.hosts[i].powerOn {
			p.PowerOn = append(p.PowerOn, s.hosts[i].Name)
		}
	}
	if len(s.steps) == 0 {
		return p
	}
	n := len(s.hosts)
	use := slices.Clone(s.initUse)
	lastWave := make([]int, n) // latest wave touching each host
	count := make([]int, n)    // moves of the host in lastWave
	out := make([]usage, n)    // guests leaving the host in lastWave
	outGroups := make([][]int32, n)
	for i := range lastWave {
		lastWave[i] = -1
	}
	par := s.pol.MaxParallelPerHost
	waveOf := make([]int, len(s.steps))
	nw := 0
	for j, st := range s.steps {
		g := &s.guests[st.guest]
		use[st.from].sub(g)
		use[st.to].add(g)
		w := max(lastWave[st.from], lastWave[st.to], 0)
		ok := func() bool {
			f, t := 0, 0
			if lastWave[st.from] == w {
				f = count[st.from]
			}
			if lastWave[st.to] != w {
				return f < par
			}
			t = count[st.to]
			worst := use[st.to]
			worst.cpu += out[st.to].cpu
			worst.mem += out[st.to].mem
			worst.vcpu += out[st.to].vcpu
			return f < par && t < par &&
				s.hosts[st.to].high.holds(worst.cpu, worst.mem, worst.vcpu) &&
				(g.group < 0 || !slices.Contains(outGroups[st.to], g.group))
		}()
		if !ok {
			w = max(lastWave[st.from], lastWave[st.to]) + 1
		}
		for _, h := range [2]int32{st.from, st.to} {
			if lastWave[h] < w {
				lastWave[h], count[h], out[h], outGroups[h] = w, 0, usage{}, outGroups[h][:0]
			}
			count[h]++
		}
		out[st.from].add(g)
		if g.group >= 0 {
			outGroups[st.from] = append(outGroups[st.from], g.group)
		}
		waveOf[j] = w
		nw = max(nw, w+1)
	}
	order := make([]int, len(s.steps))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(waveOf[a], waveOf[b]) })
	p.Moves = make([]Move, len(order))
	p.Waves = make([][]int, nw)
	for i, j := range order {
		st := s.steps[j]
		g := &s.guests[st.guest]
		p.Moves[i] = Move{Guest: g.Name, From: s.hosts[st.from].Name, To: s.hosts[st.to].Name,
			Reason: st.reason, Bytes: g.bytes, Wave: waveOf[j]}
		p.Waves[waveOf[j]] = append(p.Waves[waveOf[j]], i)
	}
	return p
}
