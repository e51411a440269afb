package apm

import (
	"fmt"
	"sort"
	"strings"
)

// Query is a parsed virtpool-apm query. Its text is white-space separated
// key=value pairs, in any order:
//
//	pool=NAME     the members of a pool (running guests labelled with it)
//	  of=hosts    …or, with pool, the pool's hosts that are in use (not on
//	              standby or in maintenance)
//	host=NAME     one host
//	guest=NAME    one guest, wherever it runs
//	              (none of pool, host, guest: every host)
//	metric=M      what to measure (required, see below)
//	agg=A         how the values of several guests or hosts combine into
//	              one per sample: avg (default), min, max, sum, count
//	reduce=R      how the samples in the query window combine: none
//	              (default: one point per sample), avg, min, max, last
//
// Metrics; percentages are 0-100:
//
//	cpu           guest: % of its vCPUs used; host: % of its CPUs used by
//	              its guests (the planner's measure of a host's load)
//	cpu_cores     CPU used, in cores
//	host_cpu      host: % of its CPUs busy from the host's own counters
//	              (everything that runs there); not for guests
//	memory        guest: resident memory as % of its configured memory;
//	              host: configured memory of its guests as % of the host's
//	memory_bytes  resident memory of the guest, or of the host's guests
//	disk          disk bytes read and written per second
//	net           network bytes received and sent per second
//	guests        running guests (per host; for a pool, its members)
//	up            host: 1 if it answered the sample, 0 if not; hosts on
//	              standby or in maintenance count too (agg=sum: how many
//	              answer, agg=min: 0 while any is down); not for guests
//
// Examples:
//
//	pool=web metric=cpu agg=avg            average CPU of web's members
//	pool=web of=hosts metric=cpu agg=avg   average load of web's hosts
//	metric=cpu agg=max                     load of the busiest host
//	pool=web metric=guests agg=count       how many members run
//	host=h1 metric=host_cpu reduce=avg     h1's busy CPU over the window
//	metric=up agg=sum                      how many hosts answer
type Query struct {
	Pool, Host, Guest string
	OfHosts           bool
	Metric            string
	Agg               string
	Reduce            string
}

// Query keys.
const (
	keyPool   = "pool"
	keyOf     = "of"
	keyHost   = "host"
	keyGuest  = "guest"
	keyMetric = "metric"
	keyAgg    = "agg"
	keyReduce = "reduce"
)

// Metrics.
const (
	MetricCPU         = "cpu"
	MetricCPUCores    = "cpu_cores"
	MetricHostCPU     = "host_cpu"
	MetricMemory      = "memory"
	MetricMemoryBytes = "memory_bytes"
	MetricDisk        = "disk"
	MetricNet         = "net"
	MetricGuests      = "guests"
	MetricUp          = "up"
)

var (
	queryKeys = []string{keyPool, keyOf, keyHost, keyGuest, keyMetric, keyAgg, keyReduce}
	metrics   = []string{MetricCPU, MetricCPUCores, MetricHostCPU, MetricMemory, MetricMemoryBytes, MetricDisk, MetricNet, MetricGuests, MetricUp}
	aggs      = []string{"avg", "min", "max", "sum", "count"}
	reduces   = []string{"none", "avg", "min", "max", "last"}
)

func oneOf(key, v string, allowed []string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s=%s: want one of %s", key, v, strings.Join(allowed, ", "))
}

// ParseQuery parses a query, naming what is wrong if it cannot.
func ParseQuery(s string) (Query, error) {
	q := Query{Agg: "avg", Reduce: "none"}
	seen := map[string]bool{}
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return q, fmt.Errorf("empty query: want e.g. %q", "pool=web metric=cpu agg=avg")
	}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return q, fmt.Errorf("%q is not key=value (keys: %s)", f, strings.Join(queryKeys, ", "))
		}
		if v == "" {
			return q, fmt.Errorf("%s has no value", k)
		}
		if seen[k] {
			return q, fmt.Errorf("%s given twice", k)
		}
		seen[k] = true
		switch k {
		case keyPool:
			q.Pool = v
		case keyHost:
			q.Host = v
		case keyGuest:
			q.Guest = v
		case keyOf:
			if err := oneOf(k, v, []string{"members", "hosts"}); err != nil {
				return q, err
			}
			q.OfHosts = v == "hosts"
		case keyMetric:
			if err := oneOf(k, v, metrics); err != nil {
				return q, err
			}
			q.Metric = v
		case keyAgg:
			if err := oneOf(k, v, aggs); err != nil {
				return q, err
			}
			q.Agg = v
		case keyReduce:
			if err := oneOf(k, v, reduces); err != nil {
				return q, err
			}
			q.Reduce = v
		default:
			sorted := append([]string(nil), queryKeys...)
			sort.Strings(sorted)
			return q, fmt.Errorf("unknown key %q (keys: %s)", k, strings.Join(sorted, ", "))
		}
	}
	n := 0
	for _, sel := range []string{q.Pool, q.Host, q.Guest} {
		if sel != "" {
			n++
		}
	}
	switch {
	case q.Metric == "":
		return q, fmt.Errorf("metric missing: add metric=one of %s", strings.Join(metrics, ", "))
	case n > 1:
		return q, fmt.Errorf("pool, host and guest select different things: give at most one")
	case seen[keyOf] && q.Pool == "":
		return q, fmt.Errorf("of= needs pool=")
	case (q.Metric == MetricHostCPU || q.Metric == MetricUp) && !q.overHosts():
		return q, fmt.Errorf("metric=%s measures hosts: use it with host=, pool= of=hosts, or no selector", q.Metric)
	}
	return q, nil
}

// overHosts reports whether the query measures hosts (not guests).
func (q Query) overHosts() bool {
	return q.Host != "" || q.OfHosts || (q.Pool == "" && q.Guest == "")
}

// String renders the query in its canonical form.
func (q Query) String() string {
	var b []string
	switch {
	case q.Pool != "":
		b = append(b, keyPool+"="+q.Pool)
		if q.OfHosts {
			b = append(b, keyOf+"=hosts")
		}
	case q.Host != "":
		b = append(b, keyHost+"="+q.Host)
	case q.Guest != "":
		b = append(b, keyGuest+"="+q.Guest)
	}
	b = append(b, keyMetric+"="+q.Metric, keyAgg+"="+q.Agg)
	if q.Reduce != "none" {
		b = append(b, keyReduce+"="+q.Reduce)
	}
	return strings.Join(b, " ")
}
