package target

import (
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/nomad-autoscaler/sdk"
)

func TestTracker(t *testing.T) {
	web, db := policyConfig{Pool: "web", Dimension: DimensionSize}, policyConfig{Pool: "db", Dimension: DimensionSize}
	cluster := policyConfig{Cluster: true, Dimension: DimensionHosts}
	// A step starts an action (try, want: "" if it starts, else what
	// blocks it), ends one (done) or asks what keeps a subject busy (busy,
	// want: the answer).
	type step struct {
		op   string
		pc   policyConfig
		what string
		want string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"pools apart", []step{
			{"try", web, "size to 3", ""},
			{"try", db, "size to 1", ""},
			{"try", web, "size to 4", "size to 3"},
			{"busy", db, "", "size to 1"},
			{"done", web, "", ""},
			{"busy", web, "", ""},
			{"busy", db, "", "size to 1"},
		}},
		{"the cluster waits for any pool", []step{
			{"try", web, "size to 3", ""},
			{"busy", cluster, "", "size to 3"},
			{"try", cluster, "hosts to 1", "size to 3"},
			{"done", web, "", ""},
			{"try", cluster, "hosts to 1", ""},
		}},
		{"every pool waits for the cluster", []step{
			{"try", cluster, "hosts to 1", ""},
			{"try", web, "size to 3", "hosts to 1"},
			{"busy", db, "", "hosts to 1"},
			{"done", cluster, "", ""},
			{"busy", db, "", ""},
			{"try", web, "size to 3", ""},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			for i, s := range tc.steps {
				var got string
				switch s.op {
				case "try":
					b, ok := tr.try(s.pc, s.what)
					if ok != (b == "") {
						t.Fatalf("step %d: try returned %q, %v", i, b, ok)
					}
					got = b
				case "done":
					tr.done(s.pc)
				case "busy":
					got = tr.busy(s.pc)
				}
				if got != s.want {
					t.Errorf("step %d: %s %s: %q, want %q", i, s.op, s.pc.subject(), got, s.want)
				}
			}
		})
	}
}

func TestTrackerLastEvent(t *testing.T) {
	tr := newTracker()
	web := policyConfig{Pool: "web", Dimension: DimensionHotHosts}
	cluster := policyConfig{Cluster: true, Dimension: DimensionHotHosts}
	at := time.Unix(1700000000, 5)
	tr.event(web, at)
	tests := []struct {
		pc   policyConfig
		want string
	}{
		{web, strconv.FormatInt(at.UnixNano(), 10)},
		{policyConfig{Pool: "web", Dimension: DimensionSize}, ""}, // another dimension, another target
		{cluster, ""},
	}
	for _, tc := range tests {
		meta := map[string]string{}
		tr.lastEventMeta(tc.pc, meta)
		if got := meta[sdk.TargetStatusMetaKeyLastEvent]; got != tc.want {
			t.Errorf("%s %s: last event %q, want %q", tc.pc.subject(), tc.pc.Dimension, got, tc.want)
		}
	}
}
