package pool_test

import (
	"strings"
	"testing"

	"github.com/virtpool/virtpool/pool"
)

func TestValidHostName(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{"h1", true},
		{"rack-2.host_7", true},
		{"H", true},
		{"1h", true},
		{strings.Repeat("h", 63), true},
		{"", false},
		{"-h", false},
		{".h", false},
		{"_h", false},
		{"h/1", false},
		{"h 1", false},
		{"b@d", false},
		{"h=1", false},
		{strings.Repeat("h", 64), false},
	}
	for _, c := range cases {
		err := pool.ValidHostName(c.name)
		if (err == nil) != c.ok {
			t.Errorf("ValidHostName(%q) = %v, want ok=%v", c.name, err, c.ok)
			continue
		}
		// The message names the host and says what is allowed.
		if err != nil {
			for _, want := range []string{`host name "` + c.name + `"`, "letters, digits", "at most 63"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("ValidHostName(%q) = %q, does not say %q", c.name, err, want)
				}
			}
		}
	}
}

func TestHostStateReceives(t *testing.T) {
	cases := []struct {
		st   pool.HostState
		want string // "" if it receives guests
	}{
		{pool.HostState{}, ""},
		{pool.HostState{Found: true, Generation: 3}, ""},
		{pool.HostState{Maintenance: true}, "host h2 is in maintenance and receives no guest: choose another host, or end it (virtpool_host maintenance = false) first"},
		{pool.HostState{Standby: true}, "host h2 is standby and receives no guest: choose another host, or take it out of standby (virtpool_host standby = false) first"},
		{pool.HostState{AutoStandby: true}, "host h2 is on standby, put there by the autoscaler"},
	}
	for _, c := range cases {
		err := c.st.Receives("h2")
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.st, err, c.want)
		}
	}
}
