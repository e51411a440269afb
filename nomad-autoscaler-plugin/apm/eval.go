package apm

import (
	"math"

	"github.com/hashicorp/nomad-autoscaler/sdk"

	"github.com/virtpool/virtpool/fleet"
)

// Eval computes the query over frames: one point per frame in which the
// query finds something to measure, then reduced as the query says. It
// returns no points (and no error) when nothing matched.
func Eval(q Query, frames []fleet.Frame) sdk.TimestampedMetrics {
	var out sdk.TimestampedMetrics
	for _, f := range frames {
		vals := values(q, f)
		v, ok := aggregate(q.Agg, vals)
		if !ok {
			continue
		}
		out = append(out, sdk.TimestampedMetric{Timestamp: f.Time, Value: v})
	}
	return reduce(q.Reduce, out)
}

// inUse reports whether a host counts as used by a pool or the cluster.
func inUse(h *fleet.HostFrame) bool { return !h.State.Maintenance && !h.State.InStandby() }

// values returns the metric of every entity the query selects in a frame.
func values(q Query, f fleet.Frame) []float64 {
	var vals []float64
	if q.Metric == MetricUp {
		return up(q, f)
	}
	if q.overHosts() {
		var hosts []*fleet.HostFrame
		switch {
		case q.Host != "":
			if h, ok := f.Hosts[q.Host]; ok {
				hosts = append(hosts, h)
			}
		case q.Pool != "":
			for _, n := range f.Pools[q.Pool] {
				if h, ok := f.Hosts[n]; ok && inUse(h) {
					hosts = append(hosts, h)
				}
			}
		default:
			for _, h := range f.Hosts {
				if inUse(h) {
					hosts = append(hosts, h)
				}
			}
		}
		for _, h := range hosts {
			vals = append(vals, hostValue(q.Metric, h))
		}
		return vals
	}
	if q.Guest != "" {
		var best *fleet.GuestFrame
		for _, h := range f.Hosts {
			for i, g := range h.Guests {
				if g.Name == q.Guest && (best == nil || g.CPU > best.CPU) {
					best = &h.Guests[i]
				}
			}
		}
		if best != nil {
			vals = append(vals, guestValue(q.Metric, *best))
		}
		return vals
	}
	// Pool members; one copy of a member seen on two hosts (mid-migration).
	seen := map[string]fleet.GuestFrame{}
	for _, h := range f.Hosts {
		for _, g := range h.Guests {
			if g.Member(q.Pool) {
				if o, ok := seen[g.UUID]; !ok || g.CPU > o.CPU {
					seen[g.UUID] = g
				}
			}
		}
	}
	for _, g := range seen {
		vals = append(vals, guestValue(q.Metric, g))
	}
	return vals
}

// up is 1 for each host the query selects that answered the frame's
// round, 0 for each that did not; standby and maintenance hosts count.
func up(q Query, f fleet.Frame) []float64 {
	var names []string
	switch {
	case q.Host != "":
		names = []string{q.Host}
	case q.Pool != "":
		names = f.Pools[q.Pool]
	default:
		for n := range f.Up {
			names = append(names, n)
		}
	}
	var vals []float64
	for _, n := range names {
		answered, known := f.Up[n]
		switch {
		case answered:
			vals = append(vals, 1)
		case known:
			vals = append(vals, 0)
		}
	}
	return vals
}

func hostValue(metric string, h *fleet.HostFrame) float64 {
	t := h.Totals()
	switch metric {
	case MetricCPU:
		return pct(t.CPU, h.Cores)
	case MetricCPUCores:
		return t.CPU
	case MetricHostCPU:
		return 100 * h.Busy
	case MetricMemory:
		return pct(float64(t.MemoryBytes), float64(h.MemoryBytes))
	case MetricMemoryBytes:
		return float64(t.RSSBytes)
	case MetricDisk:
		return t.DiskBps
	case MetricNet:
		return t.NetBps
	case MetricGuests:
		return float64(len(h.Guests))
	}
	return math.NaN()
}

func guestValue(metric string, g fleet.GuestFrame) float64 {
	switch metric {
	case MetricCPU:
		return pct(g.CPU, float64(max(g.VCPUs, 1)))
	case MetricCPUCores:
		return g.CPU
	case MetricMemory:
		return pct(float64(g.RSSBytes), float64(g.MemoryBytes))
	case MetricMemoryBytes:
		return float64(g.RSSBytes)
	case MetricDisk:
		return g.DiskBps
	case MetricNet:
		return g.NetBps
	case MetricGuests:
		return 1
	}
	return math.NaN()
}

func pct(v, of float64) float64 {
	if of <= 0 {
		return 0
	}
	return 100 * v / of
}

// aggregate combines the values of one frame; false when there is nothing
// to combine (count and sum of nothing are 0).
func aggregate(agg string, vals []float64) (float64, bool) {
	switch agg {
	case "count":
		return float64(len(vals)), true
	case "sum":
		s := 0.0
		for _, v := range vals {
			s += v
		}
		return s, true
	}
	if len(vals) == 0 {
		return 0, false
	}
	r := vals[0]
	for _, v := range vals[1:] {
		switch agg {
		case "min":
			r = min(r, v)
		case "max":
			r = max(r, v)
		default:
			r += v
		}
	}
	if agg == "avg" {
		r /= float64(len(vals))
	}
	return r, true
}

// reduce combines the points of the window into one, stamped with the
// newest point's time ("none" keeps them all).
func reduce(how string, ms sdk.TimestampedMetrics) sdk.TimestampedMetrics {
	if how == "none" || len(ms) == 0 {
		return ms
	}
	last := ms[len(ms)-1]
	v := last.Value
	switch how {
	case "avg":
		v = 0
		for _, m := range ms {
			v += m.Value
		}
		v /= float64(len(ms))
	case "min", "max":
		v = ms[0].Value
		for _, m := range ms[1:] {
			if how == "min" {
				v = min(v, m.Value)
			} else {
				v = max(v, m.Value)
			}
		}
	}
	return sdk.TimestampedMetrics{{Timestamp: last.Timestamp, Value: v}}
}
