package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/virtpool/virtpool/driver"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestAPI(t *testing.T) {
	l := newLab(t)
	srv := httptest.NewServer(l.a.Handler())
	defer srv.Close()
	if code, _ := get(t, srv.URL+"/health"); code != http.StatusServiceUnavailable {
		t.Errorf("health before a sample: %d, want 503", code)
	}
	l.step(t)
	l.step(t)
	if code, body := get(t, srv.URL+"/health"); code != http.StatusOK {
		t.Errorf("health: %d %s", code, body)
	}

	code, body := get(t, srv.URL+"/api/v1/state")
	var s State
	if err := json.Unmarshal([]byte(body), &s); err != nil || code != http.StatusOK {
		t.Fatalf("state: %d %v\n%s", code, err, body)
	}
	if len(s.Hosts) != 2 || len(s.Guests()) != 2 || len(s.Pools) != 1 {
		t.Errorf("state %+v", s)
	}
	for _, part := range []string{"hosts", "guests", "pools", "migrations", "history", "events"} {
		if code, body := get(t, srv.URL+"/api/v1/"+part); code != http.StatusOK || !json.Valid([]byte(body)) {
			t.Errorf("%s: %d %s", part, code, body)
		}
	}
	if code, _ := get(t, srv.URL+"/api/v1/events?since=x"); code != http.StatusBadRequest {
		t.Errorf("events?since=x: %d, want 400", code)
	}

	_, body = get(t, srv.URL+"/metrics")
	parser := expfmt.NewTextParser(model.LegacyValidation) // names Prometheus itself accepts
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		f := fams[name]
		if f == nil {
			return 0, false
		}
	next:
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.Gauge != nil {
				return m.Gauge.GetValue(), true
			}
			return m.Counter.GetValue(), true
		}
		return 0, false
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		lo, hi float64
	}{
		{"virtpool_host_up", map[string]string{"host": "h1"}, 1, 1},
		{"virtpool_host_state", map[string]string{"host": "h1", "state": "active"}, 1, 1},
		{"virtpool_host_state", map[string]string{"host": "h1", "state": "down"}, 0, 0},
		{"virtpool_host_cpu_utilisation_ratio", map[string]string{"host": "h1"}, 0.499, 0.501},
		{"virtpool_host_capacity_cpus", map[string]string{"host": "h1"}, 1, 1},
		{"virtpool_host_disk_bytes_per_second", map[string]string{"host": "h1"}, 0, 0},
		{"virtpool_host_network_bytes_per_second", map[string]string{"host": "h1"}, 0, 0},
		{"virtpool_guest_cpu_cores", map[string]string{"guest": "web-1", "host": "h1", "pool": "web"}, 0.249, 0.251},
		{"virtpool_pool_size", map[string]string{"pool": "web"}, 2, 2},
		{"virtpool_pool_max_size", map[string]string{"pool": "web"}, 4, 4},
		{"virtpool_agent_samples_total", map[string]string{"result": "ok"}, 2, 2},
		{"virtpool_migrations_in_flight", nil, 0, 0},
	} {
		v, ok := value(c.name, c.labels)
		if !ok || v < c.lo || v > c.hi {
			t.Errorf("%s%v = %v (found %v), want [%v, %v]", c.name, c.labels, v, ok, c.lo, c.hi)
		}
	}

	if code, body := get(t, srv.URL+"/"); code != http.StatusOK || !strings.Contains(body, `<script src="app.js">`) {
		t.Errorf("page: %d\n%s", code, body)
	}
	if code, body := get(t, srv.URL+"/app.js"); code != http.StatusOK || !strings.Contains(body, "EventSource") {
		t.Errorf("app.js: %d", code)
	}
}

// TestStream reads the page's stream: the state at once, then an event and
// the new state when a guest moves.
func TestStream(t *testing.T) {
	l := newLab(t)
	srv := httptest.NewServer(l.a.Handler())
	defer srv.Close()
	l.step(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	// next returns the next message's event name, id and data.
	next := func() (event, id, data string) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended: %v", err)
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if event != "" {
					return
				}
			case strings.HasPrefix(line, "event: "):
				event = line[7:]
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			}
		}
	}
	if ev, _, data := next(); ev != "state" || !strings.Contains(data, `"web-1"`) {
		t.Fatalf("first message %s %s", ev, data)
	}
	if _, err := l.d.Migrate(ctx, driver.MigrateRequest{Domain: "web-1", SourceURI: uri1, DestURI: uri2}, nil); err != nil {
		t.Fatal(err)
	}
	l.step(t)
	got := map[string]string{}
	for len(got) < 2 {
		ev, id, data := next()
		got[ev] = data
		if ev == "event" && id != "1" {
			t.Errorf("event id %q, want 1", id)
		}
	}
	if !strings.Contains(got["event"], `"kind":"migration_finished"`) || !strings.Contains(got["state"], `"host":"h2"`) {
		t.Errorf("after the move: %v", got)
	}
	_, metrics := get(t, srv.URL+"/metrics")
	for _, want := range []string{"virtpool_migration_downtime_seconds_count 1", "virtpool_migration_duration_seconds_sum 0.5",
		"virtpool_migrations_total 1"} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
