package target

import (
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/nomad-autoscaler/sdk"
)

// tracker is the plugin's bookkeeping between calls: the action each pool
// (or the cluster) is busy with in this plugin, so that Status says not
// ready and a second Scale does not start, and when each policy target
// last changed something, for Status's last event.
type tracker struct {
	mu      sync.Mutex
	cluster string               // the cluster's action in flight, if any
	pools   map[string]string    // pools' actions in flight, by pool
	last    map[string]time.Time // last events, by eventKey
}

func newTracker() *tracker {
	return &tracker{pools: map[string]string{}, last: map[string]time.Time{}}
}

// try marks pc's subject busy with what, unless it, or anything an action
// on it would touch, already is; it then returns what keeps it busy.
func (t *tracker) try(pc policyConfig, what string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b := t.busyLocked(pc); b != "" {
		return b, false
	}
	if pc.Cluster {
		t.cluster = what
	} else {
		t.pools[pc.Pool] = what
	}
	return "", true
}

// done ends pc's action.
func (t *tracker) done(pc policyConfig) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if pc.Cluster {
		t.cluster = ""
	} else {
		delete(t.pools, pc.Pool)
	}
}

// busy returns what keeps pc's subject busy ("" if nothing).
func (t *tracker) busy(pc policyConfig) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.busyLocked(pc)
}

// busyLocked: a pool is busy with its own action or the cluster's; the
// cluster with its own or any pool's. t.mu is held.
func (t *tracker) busyLocked(pc policyConfig) string {
	if t.cluster != "" {
		return t.cluster
	}
	if !pc.Cluster {
		return t.pools[pc.Pool]
	}
	names := make([]string, 0, len(t.pools))
	for n := range t.pools {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return ""
	}
	return t.pools[names[0]]
}

func eventKey(pc policyConfig) string { return pc.subject() + "/" + pc.Dimension }

// event records that pc's target changed something at at.
func (t *tracker) event(pc policyConfig, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last[eventKey(pc)] = at
}

// lastEventMeta sets the agent's last-event key in meta, if pc's target
// changed anything yet.
func (t *tracker) lastEventMeta(pc policyConfig, meta map[string]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if at, ok := t.last[eventKey(pc)]; ok {
		meta[sdk.TargetStatusMetaKeyLastEvent] = strconv.FormatInt(at.UnixNano(), 10)
	}
}
