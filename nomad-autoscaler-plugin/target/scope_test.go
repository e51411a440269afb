package target

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
)

// What a policy acts on: its pool (the record's hosts, placement and
// policy), or the whole cluster (every host the plugin knows, every pool's
// members, the target block's migration policy).
func TestResolve(t *testing.T) {
	clusterPol := pool.DefaultPolicy()
	clusterPol.Mode = "consolidate"
	tests := []struct {
		name      string
		pc        policyConfig
		cluster   bool
		hosts     string
		allowed   string // "all": nil, every host
		members   string
		policy    string // its migration policy's mode
		wantErr   error
		migration int64 // bandwidth for a member of no known pool
	}{
		{name: "pool", pc: policyConfig{Pool: "web"}, hosts: "h1 h2 h3", allowed: "h1 h2 h3",
			members: "web-1 web-2", policy: "balance", migration: 500},
		{name: "cluster", pc: policyConfig{Cluster: true, ClusterPolicy: &clusterPol}, cluster: true,
			hosts: "h1 h2 h3 h4", allowed: "all", members: "lost-1 web-1 web-2", policy: "consolidate", migration: 100},
		{name: "unknown pool", pc: policyConfig{Pool: "db"}, wantErr: errPoolNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0, 0, 5, hotPolicy())
			f.member("h1", 1, 0)
			f.member("h2", 2, 0)
			// A member of a pool whose record is gone.
			f.fd.AddDomain("fake:///h4", driver.Domain{Name: "lost-1", Labels: pool.MemberLabels(pool.Spec{Name: "lost"}, 1)}, 0)
			f.sample(0)
			c, fl, err := f.p.state()
			if err != nil {
				t.Fatal(err)
			}
			s, err := resolve(context.Background(), fl, tc.pc)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.cluster != tc.cluster || strings.Join(s.hosts.Names(), " ") != tc.hosts || s.placement != "spread" ||
				s.policy == nil || s.policy.Mode != tc.policy {
				t.Errorf("scope cluster %v, hosts %v, placement %s, policy %+v", s.cluster, s.hosts.Names(), s.placement, s.policy)
			}
			allowed := "all"
			if a := s.allowed(); a != nil {
				var names []string
				for h, ok := range a {
					if ok {
						names = append(names, h)
					}
				}
				sort.Strings(names)
				allowed = strings.Join(names, " ")
			}
			if allowed != tc.allowed {
				t.Errorf("allowed %s, want %s", allowed, tc.allowed)
			}
			all, err := s.newOps(c, fl, nil).ListAll(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range s.members(all) {
				names = append(names, m.Name)
			}
			if got := strings.Join(names, " "); got != tc.members {
				t.Errorf("members %q, want %q", got, tc.members)
			}
			// A member's own pool's options win; others get the scope's.
			opts := s.migrateOpts(c.Migration)
			if got := opts(pool.Located{Domain: driver.Domain{Labels: pool.MemberLabels(pool.Spec{Name: "web"}, 1)}}); got.BandwidthMiBs != 500 {
				t.Errorf("web member bandwidth %d, want the pool's 500", got.BandwidthMiBs)
			}
			if got := opts(pool.Located{Domain: driver.Domain{Labels: pool.MemberLabels(pool.Spec{Name: "lost"}, 1)}}); got.BandwidthMiBs != uint64(tc.migration) {
				t.Errorf("lost member bandwidth %d, want %d", got.BandwidthMiBs, tc.migration)
			}
		})
	}
}
