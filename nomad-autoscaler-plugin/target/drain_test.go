package target

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/sdk"
	"github.com/hashicorp/nomad/api"
)

// fakeNomad answers the few Nomad API calls a drain makes: list nodes,
// update a node's drain, read a node (draining for doneAfter reads).
type fakeNomad struct {
	mu        sync.Mutex
	nodes     []*api.NodeListStub
	doneAfter int
	reads     map[string]int
	drains    map[string]*api.NodeUpdateDrainRequest
}

func (n *fakeNomad) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case r.URL.Path == "/v1/nodes":
		reply(w, n.nodes)
	case strings.HasSuffix(r.URL.Path, "/drain"):
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/node/"), "/drain")
		var req api.NodeUpdateDrainRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n.drains[id] = &req
		reply(w, api.NodeDrainUpdateResponse{NodeModifyIndex: 1})
	case strings.HasPrefix(r.URL.Path, "/v1/node/"):
		id := strings.TrimPrefix(r.URL.Path, "/v1/node/")
		n.reads[id]++
		node := &api.Node{ID: id}
		if d := n.drains[id]; d != nil && n.reads[id] <= n.doneAfter {
			node.DrainStrategy = &api.DrainStrategy{DrainSpec: *d.DrainSpec}
		}
		reply(w, node)
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
		nodes     []*api.NodeListStub
		doneAfter int
		ctxAfter  time.Duration
		wantErr   string
		drained   string // node ID expected drained
	}{
		{name: "drained once complete", nodes: []*api.NodeListStub{{ID: "n1", Name: "web-1"}, {ID: "n2", Name: "web-2"}},
			doneAfter: 3, drained: "n1"},
		{name: "no such node: nothing to drain", nodes: []*api.NodeListStub{{ID: "n2", Name: "web-2"}}},
		{name: "two nodes of that name", nodes: []*api.NodeListStub{{ID: "a", Name: "web-1"}, {ID: "b", Name: "web-1"}},
			wantErr: "two Nomad nodes are named web-1"},
		{name: "drain never completes", nodes: []*api.NodeListStub{{ID: "n1", Name: "web-1"}}, doneAfter: 1 << 30,
			ctxAfter: 100 * time.Millisecond, wantErr: "drain of Nomad node web-1 not complete", drained: "n1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fn := &fakeNomad{nodes: tc.nodes, doneAfter: tc.doneAfter, reads: map[string]int{}, drains: map[string]*api.NodeUpdateDrainRequest{}}
			srv := httptest.NewServer(fn)
			defer srv.Close()
			c, err := api.NewClient(&api.Config{Address: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tc.ctxAfter > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxAfter)
				defer cancel()
			}
			err = drainNode(ctx, c, "web-1", 3*time.Minute, true, hclog.NewNullLogger())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			fn.mu.Lock()
			defer fn.mu.Unlock()
			if tc.drained == "" {
				if len(fn.drains) != 0 {
					t.Errorf("drained %v", fn.drains)
				}
				return
			}
			d := fn.drains[tc.drained]
			if d == nil || d.DrainSpec == nil || d.DrainSpec.Deadline != 3*time.Minute || !d.DrainSpec.IgnoreSystemJobs || d.MarkEligible {
				t.Fatalf("drain request %+v", d)
			}
			if tc.wantErr == "" && fn.reads[tc.drained] <= tc.doneAfter {
				t.Errorf("returned after %d reads, before the drain completed", fn.reads[tc.drained])
			}
		})
	}
}

// Scale-in with node_drain drains each victim's Nomad node before the
// member is removed, with the agent's Nomad settings (nomad_address).
func TestScaleSizeDrains(t *testing.T) {
	drainPoll = 5 * time.Millisecond
	fn := &fakeNomad{nodes: []*api.NodeListStub{{ID: "n1", Name: "web-1"}, {ID: "n2", Name: "web-2"}, {ID: "n3", Name: "web-3"}},
		doneAfter: 1, reads: map[string]int{}, drains: map[string]*api.NodeUpdateDrainRequest{}}
	srv := httptest.NewServer(fn)
	defer srv.Close()
	f := newFixture(t, 3, 1, 3, nil)
	if err := f.p.SetConfig(map[string]string{"hosts": "fake:///h1", "sample_interval": "1s", "load_window": "5s",
		"nomad_address": srv.URL}); err != nil {
		t.Fatal(err)
	}
	f.member("h1", 1, 0.5)
	f.member("h2", 2, 0.1)
	f.member("h3", 3, 0.2)
	f.sample(3)
	err := f.p.Scale(sdk.ScalingAction{Count: 1}, map[string]string{"pool": "web", "dimension": "size",
		"node_drain": "true", "node_drain_deadline": "1m"})
	if err != nil {
		t.Fatal(err)
	}
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if got := f.placement(); strings.Count(got, "@") != 1 {
		t.Fatalf("placement %s, want one member left", got)
	}
	left := strings.Split(f.placement(), "@")[0]
	for _, n := range fn.nodes {
		drained := fn.drains[n.ID] != nil
		if drained == (n.Name == left) {
			t.Errorf("node %s (%s) drained=%v, member left: %s", n.ID, n.Name, drained, left)
		}
	}
}
