package pool_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
)

func TestSpecHostSet(t *testing.T) {
	tests := []struct {
		name  string
		hosts []pool.HostEntry
		want  map[string]bool
	}{
		{"none", nil, map[string]bool{}},
		{"names only", []pool.HostEntry{{Name: "h1", URI: "fake:///h1"}, {Name: "h2", URI: "fake:///h2"}},
			map[string]bool{"h1": true, "h2": true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (pool.Spec{Hosts: tc.hosts}).HostSet(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("HostSet %v, want %v", got, tc.want)
			}
		})
	}
}

// listing is every host's domains: members of web and db (web-2 on two
// hosts, as in a migration), a single domain and a guest without labels.
func listing() map[string][]driver.Domain {
	member := func(p string, n int) driver.Domain {
		return driver.Domain{Name: pool.MemberName(p, n), Labels: pool.MemberLabels(pool.Spec{Name: p}, n)}
	}
	return map[string][]driver.Domain{
		"h1": {member("web", 2), member("db", 1), {Name: "solo", Labels: map[string]string{pool.LabelRole: pool.RoleDomain}}},
		"h2": {member("web", 1), member("web", 2), {Name: "other"}},
		"h3": {member("db", 2)},
	}
}

func render(ms []pool.Member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name+"@"+m.Host)
	}
	return strings.Join(s, " ")
}

func TestMembersOf(t *testing.T) {
	tests := []struct {
		name  string
		pick  func(map[string][]driver.Domain) []pool.Member
		want  string
		count int
	}{
		{"web", func(all map[string][]driver.Domain) []pool.Member { return pool.MembersOf("web", all) },
			"web-1@h2 web-2@h1 web-2@h2", 2},
		{"db", func(all map[string][]driver.Domain) []pool.Member { return pool.MembersOf("db", all) },
			"db-1@h1 db-2@h3", 2},
		{"no such pool", func(all map[string][]driver.Domain) []pool.Member { return pool.MembersOf("x", all) }, "", 0},
		{"every pool", pool.AllMembers, "db-1@h1 db-2@h3 web-1@h2 web-2@h1 web-2@h2", 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms := tc.pick(listing())
			if got := render(ms); got != tc.want {
				t.Errorf("members %q, want %q", got, tc.want)
			}
			// A member on two hosts (being migrated) is one member.
			if got := pool.CountMembers(ms); got != tc.count {
				t.Errorf("CountMembers %d, want %d", got, tc.count)
			}
		})
	}
}
