package target

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/sdk"
	"github.com/hashicorp/nomad-autoscaler/sdk/helper/scaleutils/nodeselector"
	"github.com/hashicorp/nomad/api"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
)

// fakeNomad answers the Nomad API calls of a scale-in and a status: list
// and read nodes, drain a node (draining for doneAfter reads) or cancel its
// drain, a node's allocations, purge a node, read an allocation.
type fakeNomad struct {
	mu        sync.Mutex
	nodes     []*api.Node
	allocs    map[string][]*api.Allocation // by node ID
	selfAlloc map[string]string            // allocation ID: node ID
	failDrain map[string]bool              // node IDs whose drain request fails
	doneAfter int
	reads     map[string]int
	drains    map[string]*api.NodeUpdateDrainRequest
	undone    map[string]bool // drain cancelled, node eligible again
	purged    []string
}

func newFakeNomad(t *testing.T, nodes ...*api.Node) (*fakeNomad, *api.Client) {
	t.Helper()
	fn := &fakeNomad{nodes: nodes, allocs: map[string][]*api.Allocation{}, selfAlloc: map[string]string{},
		failDrain: map[string]bool{}, reads: map[string]int{}, drains: map[string]*api.NodeUpdateDrainRequest{},
		undone: map[string]bool{}}
	srv := httptest.NewServer(fn)
	t.Cleanup(srv.Close)
	c, err := api.NewClient(&api.Config{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return fn, c
}

// node is a ready, eligible Nomad node with meta (key=value pairs).
func node(id, name string, meta ...string) *api.Node {
	n := &api.Node{ID: id, Name: name, Status: api.NodeStatusReady, SchedulingEligibility: api.NodeSchedulingEligible,
		Datacenter: "dc1", NodeClass: "virt", NodePool: "default", Meta: map[string]string{},
		NodeResources: &api.NodeResources{Cpu: api.NodeCpuResources{CpuShares: 1000}, Memory: api.NodeMemoryResources{MemoryMB: 1000}}}
	for _, kv := range meta {
		k, v, _ := strings.Cut(kv, "=")
		n.Meta[k] = v
	}
	return n
}

// running is a running service allocation of cpu MHz and as many MB.
func running(cpu int) *api.Allocation {
	typ := api.JobTypeService
	return &api.Allocation{ClientStatus: api.AllocClientStatusRunning, DesiredStatus: api.AllocDesiredStatusRun,
		Job: &api.Job{Type: &typ}, Resources: &api.Resources{CPU: &cpu, MemoryMB: &cpu}}
}

func (n *fakeNomad) find(id string) *api.Node {
	for _, nd := range n.nodes {
		if nd.ID == id {
			return nd
		}
	}
	return nil
}

func (n *fakeNomad) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	defer n.mu.Unlock()
	rest, isNode := strings.CutPrefix(r.URL.Path, "/v1/node/")
	id, sub, _ := strings.Cut(rest, "/")
	switch {
	case r.URL.Path == "/v1/nodes":
		var out []*api.NodeListStub
		for _, nd := range n.nodes {
			out = append(out, &api.NodeListStub{ID: nd.ID, Name: nd.Name, Status: nd.Status, Drain: nd.DrainStrategy != nil,
				SchedulingEligibility: nd.SchedulingEligibility, Datacenter: nd.Datacenter, NodeClass: nd.NodeClass,
				NodePool: nd.NodePool, CreateIndex: nd.CreateIndex, NodeResources: nd.NodeResources})
		}
		reply(w, out)
	case strings.HasPrefix(r.URL.Path, "/v1/allocation/"):
		reply(w, &api.Allocation{ID: strings.TrimPrefix(r.URL.Path, "/v1/allocation/"),
			NodeID: n.selfAlloc[strings.TrimPrefix(r.URL.Path, "/v1/allocation/")]})
	case !isNode || n.find(id) == nil:
		http.NotFound(w, r)
	case sub == "drain":
		var req api.NodeUpdateDrainRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch {
		case n.failDrain[id] && req.DrainSpec != nil:
			http.Error(w, "drain refused", http.StatusInternalServerError)
			return
		case req.DrainSpec == nil && req.MarkEligible:
			n.undone[id] = true
		default:
			n.drains[id] = &req
		}
		reply(w, api.NodeDrainUpdateResponse{NodeModifyIndex: 1})
	case sub == "allocations":
		reply(w, n.allocs[id])
	case sub == "purge":
		n.purged = append(n.purged, id)
		reply(w, api.NodePurgeResponse{})
	case sub == "":
		n.reads[id]++
		nd := *n.find(id)
		if d := n.drains[id]; d != nil && !n.undone[id] && n.reads[id] <= n.doneAfter {
			nd.DrainStrategy = &api.DrainStrategy{DrainSpec: *d.DrainSpec}
		}
		reply(w, &nd)
	default:
		http.NotFound(w, r)
	}
}

// reply writes v as the response's JSON body. It fails only when the client
// has gone, which the client then reports.
func reply(w http.ResponseWriter, v any) { _ = json.NewEncoder(w).Encode(v) }

func TestDrainNode(t *testing.T) {
	drainPoll = 5 * time.Millisecond
	tests := []struct {
		name      string
		doneAfter int
		ctxAfter  time.Duration
		wantErr   string
	}{
		{name: "drained once complete", doneAfter: 3},
		{name: "drain never completes", doneAfter: 1 << 30, ctxAfter: 100 * time.Millisecond,
			wantErr: "drain of Nomad node n1 of member web-1 not complete"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fn, c := newFakeNomad(t, node("n1", "web-1"))
			fn.doneAfter = tc.doneAfter
			ctx := context.Background()
			if tc.ctxAfter > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxAfter)
				defer cancel()
			}
			err := drainNode(ctx, c, "web-1", "n1", 3*time.Minute, true, hclog.NewNullLogger())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			fn.mu.Lock()
			defer fn.mu.Unlock()
			d := fn.drains["n1"]
			if d == nil || d.DrainSpec == nil || d.DrainSpec.Deadline != 3*time.Minute || !d.DrainSpec.IgnoreSystemJobs || d.MarkEligible {
				t.Fatalf("drain request %+v", d)
			}
			if tc.wantErr == "" && fn.reads["n1"] <= tc.doneAfter {
				t.Errorf("returned after %d reads, before the drain completed", fn.reads["n1"])
			}
		})
	}
}

func TestMemberNodes(t *testing.T) {
	down := func(n *api.Node) *api.Node { n.Status = api.NodeStatusDown; return n }
	tests := []struct {
		name    string
		nodes   []*api.Node
		want    string // member=node ID …
		wantErr string
	}{
		{name: "by name", nodes: []*api.Node{node("n1", "web-1"), node("n2", "web-2"), node("x", "other")},
			want: "web-1=n1 web-2=n2"},
		{name: "by meta, whatever the name", nodes: []*api.Node{node("n1", "ip-10-0-0-5", "virtpool.domain=web-1", "virtpool.pool=web")},
			want: "web-1=n1"},
		{name: "meta wins over name", nodes: []*api.Node{node("n1", "web-1"), node("n2", "host-b", "virtpool.domain=web-1")},
			want: "web-1=n2"},
		{name: "another pool's member", nodes: []*api.Node{node("n1", "web-1", "virtpool.domain=web-1", "virtpool.pool=db")}},
		{name: "rebooted member: the down node ignored", nodes: []*api.Node{down(node("old", "web-1")), node("new", "web-1")},
			want: "web-1=new"},
		{name: "two live nodes of one name", nodes: []*api.Node{node("a", "web-1"), node("b", "web-1")},
			wantErr: "member web-1 has two Nomad nodes that are not down (a, b)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newFakeNomad(t, tc.nodes...)
			got, err := memberNodes(context.Background(), c, "web", []string{"web-1", "web-2"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, m := range slices.Sorted(maps.Keys(got)) {
				s = append(s, m+"="+got[m].ID)
			}
			if g := strings.Join(s, " "); g != tc.want {
				t.Errorf("nodes %q, want %q", g, tc.want)
			}
		})
	}
}

func TestChooseVictims(t *testing.T) {
	member := func(name string, st string) pool.Member {
		return pool.Member{Located: pool.Located{Domain: driver.Domain{Name: name, State: st}}}
	}
	run := driver.StateRunning
	// Virtpool's order: web-1 first.
	cands := []pool.Member{member("web-1", run), member("web-2", run), member("web-3", run), member("web-4", run)}
	stub := func(id, class string, created uint64) *api.NodeListStub {
		return &api.NodeListStub{ID: id, NodeClass: class, CreateIndex: created, Status: api.NodeStatusReady}
	}
	allNodes := map[string]*api.NodeListStub{"web-1": stub("n1", "virt", 10), "web-2": stub("n2", "virt", 40),
		"web-3": stub("n3", "virt", 30), "web-4": stub("n4", "virt", 20)}
	classFilter, _ := parseNodeChoice(map[string]string{"node_class": "virt"}, true)
	tests := []struct {
		name     string
		cands    []pool.Member
		nodes    map[string]*api.NodeListStub
		self     string
		selector string
		choice   *nodeChoice
		k        int
		want     string // victims
		drain    string // members drained
		wantErr  string
	}{
		{name: "newest nodes, in virtpool's order", selector: "newest_create_index", k: 2, want: "web-2 web-3", drain: "web-2 web-3"},
		{name: "oldest nodes", selector: "oldest_create_index", k: 2, want: "web-1 web-4", drain: "web-1 web-4"},
		{name: "no node, stopped first: nothing to drain", selector: "newest_create_index", k: 2,
			cands: []pool.Member{member("web-1", run), member("web-5", driver.StateShutoff), member("web-6", run)},
			want:  "web-5 web-6"},
		{name: "own node spared", selector: "newest_create_index", self: "n2", k: 1, want: "web-3", drain: "web-3"},
		{name: "nodes outside the filter spared", selector: "oldest_create_index", choice: &classFilter, k: 1,
			cands: cands[:2], nodes: map[string]*api.NodeListStub{"web-1": stub("n1", "edge", 10), "web-2": stub("n2", "virt", 40)},
			want: "web-2", drain: "web-2"},
		{name: "too few may go", selector: "newest_create_index", choice: &classFilter, k: 2,
			nodes:   map[string]*api.NodeListStub{"web-1": stub("n1", "edge", 10), "web-2": stub("n2", "virt", 40), "web-3": stub("n3", "edge", 1), "web-4": stub("n4", "edge", 1)},
			wantErr: `2 member(s) to remove, 0 without a Nomad node to drain; of the 1 whose node may go (node_class virt`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nc := nodeChoice{Selector: tc.selector}
			if tc.choice != nil {
				nc.Filter = tc.choice.Filter
			}
			c, n := cands, allNodes
			if tc.cands != nil {
				c = tc.cands
			}
			if tc.nodes != nil {
				n = tc.nodes
			}
			sel, err := nodeselector.NewSelector(map[string]string{"node_selector_strategy": tc.selector}, nil, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			victims, drain, err := chooseVictims(c, n, tc.self, nc, tc.k, sel, hclog.NewNullLogger())
			if failedAsWanted(t, err, tc.wantErr) {
				return
			}
			if g := memberNames(victims); g != tc.want {
				t.Errorf("victims %q, want %q", g, tc.want)
			}
			if g := strings.Join(slices.Sorted(maps.Keys(drain)), " "); g != tc.drain {
				t.Errorf("drained %q, want %q", g, tc.drain)
			}
		})
	}
}

// The Nomad selectors that read allocations: least_busy takes the least
// allocated nodes, empty only nodes without allocations.
func TestChooseVictimsAllocSelectors(t *testing.T) {
	tests := []struct {
		selector string
		k        int
		want     string
		wantErr  string
	}{
		{selector: "least_busy", k: 2, want: "web-2 web-3"},
		{selector: "empty", k: 1, want: "web-3"},
		{selector: "empty", k: 2, wantErr: `node_selector_strategy "empty" picks 1`},
		{selector: "empty_ignore_system", k: 2, want: "web-1 web-3"},
	}
	for _, tc := range tests {
		t.Run(tc.selector, func(t *testing.T) {
			fn, c := newFakeNomad(t, node("n1", "web-1"), node("n2", "web-2"), node("n3", "web-3"))
			sys := running(600)
			typ := api.JobTypeSystem
			sys.Job.Type = &typ
			fn.allocs = map[string][]*api.Allocation{"n1": {sys}, "n2": {running(300)}}
			nodes, err := memberNodes(context.Background(), c, "web", []string{"web-1", "web-2", "web-3"})
			if err != nil {
				t.Fatal(err)
			}
			sel, err := nodeselector.NewSelector(map[string]string{"node_selector_strategy": tc.selector}, c, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			run := driver.StateRunning
			var cands []pool.Member
			for _, n := range []string{"web-1", "web-2", "web-3"} {
				cands = append(cands, pool.Member{Located: pool.Located{Domain: driver.Domain{Name: n, State: run}}})
			}
			victims, _, err := chooseVictims(cands, nodes, "", nodeChoice{Selector: tc.selector}, tc.k, sel, hclog.NewNullLogger())
			if failedAsWanted(t, err, tc.wantErr) {
				return
			}
			if g := memberNames(victims); g != tc.want {
				t.Errorf("victims %q, want %q", g, tc.want)
			}
		})
	}
}

func TestDrainAll(t *testing.T) {
	drainPoll = 5 * time.Millisecond
	tests := []struct {
		name    string
		fail    string // node whose drain request fails
		wantErr string
	}{
		{name: "all drained"},
		{name: "one fails: every drain cancelled", fail: "n2", wantErr: "drain Nomad node n2 of member web-2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fn, c := newFakeNomad(t, node("n1", "web-1"), node("n2", "web-2"), node("n3", "web-3"))
			fn.doneAfter = 2
			if tc.fail != "" {
				fn.failDrain[tc.fail] = true
			}
			nodes := map[string]*api.NodeListStub{"web-1": {ID: "n1"}, "web-2": {ID: "n2"}, "web-3": {ID: "n3"}}
			err := drainAll(context.Background(), c, nodes, time.Minute, false, hclog.NewNullLogger())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			fn.mu.Lock()
			defer fn.mu.Unlock()
			for _, id := range []string{"n1", "n2", "n3"} {
				if id != tc.fail && fn.drains[id] == nil {
					t.Errorf("%s not drained", id)
				}
				if fn.undone[id] != (tc.fail != "") {
					t.Errorf("%s drain cancelled: %v", id, fn.undone[id])
				}
			}
		})
	}
}

func TestNomadNotReady(t *testing.T) {
	st := func(n *api.Node, f func(*api.Node)) *api.Node { f(n); return n }
	nodes := []*api.Node{
		node("n1", "web-1"),
		st(node("n2", "web-2"), func(n *api.Node) { n.Status = api.NodeStatusInit }),
		st(node("n3", "web-3"), func(n *api.Node) { n.DrainStrategy = &api.DrainStrategy{} }),
		st(node("n4", "web-4"), func(n *api.Node) { n.SchedulingEligibility = api.NodeSchedulingIneligible }),
		st(node("n6", "web-6"), func(n *api.Node) { n.NodeClass = "edge"; n.Status = api.NodeStatusInit }),
	}
	member := func(name string, st string) pool.Member {
		return pool.Member{Located: pool.Located{Domain: driver.Domain{Name: name, State: st}}}
	}
	run := driver.StateRunning
	members := []pool.Member{member("web-1", run), member("web-2", run), member("web-3", run), member("web-4", run),
		member("web-5", run), member("web-6", run), member("web-7", driver.StateShutoff)}
	classFilter, _ := parseNodeChoice(map[string]string{"node_class": "virt"}, true)
	tests := []struct {
		name   string
		choice nodeChoice
		want   string
	}{
		{name: "any node", want: "web-2=initializing web-3=draining web-4=ineligible web-5=not registered web-6=initializing"},
		{name: "node_class filter", choice: classFilter,
			want: "web-2=initializing web-3=draining web-4=ineligible web-5=not registered"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newFakeNomad(t, nodes...)
			got, err := nomadNotReady(context.Background(), c, "web", members, tc.choice)
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, m := range slices.Sorted(maps.Keys(got)) {
				s = append(s, m+"="+got[m])
			}
			if g := strings.Join(s, " "); g != tc.want {
				t.Errorf("not ready %q, want %q", g, tc.want)
			}
		})
	}
}

// Scale-in with node_drain drains the victims' Nomad nodes (the agent's
// nomad_address) before removing the members, purges them with node_purge;
// when a drain fails no member goes, every drain is cancelled and the pool's
// size is stored back. Status is not ready while a member's node is.
func TestScaleSizeDrains(t *testing.T) {
	drainPoll = 5 * time.Millisecond
	tests := []struct {
		name     string
		policy   map[string]string
		fail     string // node whose drain fails
		self     string // the autoscaler's node
		wantErr  string
		left     string // members left
		purged   string
		initNode string // a node that then re-registers: Status not ready
		notReady string
	}{
		{name: "drained then removed", left: "web-1"},
		{name: "purged", policy: map[string]string{"node_purge": "true"}, left: "web-1", purged: "n2 n3"},
		{name: "own node spared", self: "n2", left: "web-2"},
		{name: "status waits for a member's node", left: "web-1", initNode: "n1", notReady: "web-1"},
		{name: "a drain fails: nothing removed", fail: "n3", wantErr: "drain Nomad node n3 of member web-3",
			left: "web-1 web-2 web-3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fn, _ := newFakeNomad(t, node("n1", "web-1"), node("n2", "ip-2", "virtpool.domain=web-2"), node("n3", "web-3"))
			srv := httptest.NewServer(fn)
			defer srv.Close()
			fn.doneAfter = 1
			if tc.fail != "" {
				fn.failDrain[tc.fail] = true
			}
			if tc.self != "" {
				fn.selfAlloc["alloc-1"] = tc.self
				t.Setenv("NOMAD_ALLOC_ID", "alloc-1")
			}
			f := newFixture(t, 3, 1, 3, nil)
			if err := f.p.SetConfig(map[string]string{"hosts": "fake:///h1", "sample_interval": "1s", "load_window": "5s",
				"nomad_address": srv.URL}); err != nil {
				t.Fatal(err)
			}
			f.member("h1", 1, 0.5)
			f.member("h2", 2, 0.1)
			f.member("h3", 3, 0.2)
			f.sample(3)
			policy := map[string]string{"pool": "web", "dimension": "size", "node_drain": "true", "node_drain_deadline": "1m",
				"node_selector_strategy": "newest_create_index"}
			maps.Copy(policy, tc.policy)
			err := f.p.Scale(sdk.ScalingAction{Count: 1}, policy)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, m := range strings.Fields(f.placement()) {
				left = append(left, strings.Split(m, "@")[0])
			}
			if g := strings.Join(left, " "); g != tc.left {
				t.Errorf("members left %q, want %q", g, tc.left)
			}
			if tc.initNode != "" {
				fn.mu.Lock()
				fn.find(tc.initNode).Status = api.NodeStatusInit
				fn.mu.Unlock()
			}
			st, err := f.p.Status(policy)
			if err != nil {
				t.Fatal(err)
			}
			if st.Ready != (tc.notReady == "") || st.Meta[metaNomadNotReady] != tc.notReady {
				t.Errorf("status ready=%v %s=%q, want not ready for %q", st.Ready, metaNomadNotReady,
					st.Meta[metaNomadNotReady], tc.notReady)
			}
			fn.mu.Lock()
			defer fn.mu.Unlock()
			for _, n := range fn.nodes {
				m := n.Meta["virtpool.domain"]
				if m == "" {
					m = n.Name
				}
				kept := slices.Contains(left, m)
				drained := fn.drains[n.ID] != nil
				switch {
				case tc.fail == "" && drained == kept:
					t.Errorf("node %s (%s) drained=%v, kept=%v", n.ID, m, drained, kept)
				case tc.fail != "" && drained && !fn.undone[n.ID]:
					t.Errorf("node %s drained and not made eligible again after the failed drain", n.ID)
				}
			}
			slices.Sort(fn.purged)
			if g := strings.Join(fn.purged, " "); g != tc.purged {
				t.Errorf("purged %q, want %q", g, tc.purged)
			}
			if tc.wantErr != "" {
				pr, _, _, err := f.ops.ReadPool(context.Background(), "web", nil)
				if err != nil || pr.Spec.Size != 3 {
					t.Errorf("stored size %d (%v), want 3 back", pr.Spec.Size, err)
				}
			}
		})
	}
}

// failedAsWanted fails t unless err is as wanted (an error holding want,
// or none if want is ""), and says whether an error was wanted.
func failedAsWanted(t *testing.T, err error, want string) bool {
	t.Helper()
	if want != "" {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want %q", err, want)
		}
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	return false
}

// memberNames lists members' names, space-separated.
func memberNames(ms []pool.Member) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return strings.Join(out, " ")
}
