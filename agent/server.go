package agent

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed web
var web embed.FS

// Handler serves the agent's page, API and metrics:
//
//	/                      the live page
//	/api/v1/state          hosts, pools and migrations in flight (JSON)
//	/api/v1/hosts|guests|pools|migrations   parts of it
//	/api/v1/history        every host's load over the retained samples
//	/api/v1/events         events after ?since=SEQ (JSON), or as a stream
//	                       (Server-Sent Events) with Accept: text/event-stream
//	/api/v1/stream         Server-Sent Events: "state" after each sample, "event" for each event
//	/metrics               Prometheus exposition
//	/health                200 while samples reach a host, 503 otherwise
func (a *Agent) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{a}, a.durations, a.downtimes, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	static, _ := fs.Sub(web, "web") // cannot fail: the directory is embedded
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(static))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.Health(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	parts := map[string]func(State) any{
		"state":      func(s State) any { return s },
		"hosts":      func(s State) any { return s.Hosts },
		"guests":     func(s State) any { return s.Guests() },
		"pools":      func(s State) any { return s.Pools },
		"migrations": func(s State) any { return s.Migrations },
	}
	for name, part := range parts {
		mux.HandleFunc("GET /api/v1/"+name, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, part(a.State())) })
	}
	mux.HandleFunc("GET /api/v1/history", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.History()) })
	mux.HandleFunc("GET /api/v1/events", a.serveEvents)
	mux.HandleFunc("GET /api/v1/stream", a.serveStream)
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away
}

// since is the sequence number a client has seen: ?since=N, or the
// Last-Event-ID an EventSource sends when it reconnects.
func since(r *http.Request) (int64, error) {
	s := r.URL.Query().Get("since")
	if s == "" {
		s = r.Header.Get("Last-Event-ID")
	}
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("since: %q is not an event sequence number", s)
	}
	return n, nil
}

func (a *Agent) serveEvents(w http.ResponseWriter, r *http.Request) {
	seq, err := since(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.Header.Get("Accept") != "text/event-stream" {
		writeJSON(w, a.events.Since(seq))
		return
	}
	a.stream(w, r, seq, false)
}

func (a *Agent) serveStream(w http.ResponseWriter, r *http.Request) {
	seq, err := since(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.stream(w, r, seq, true)
}

// stream writes Server-Sent Events until the client goes away: the events
// after seq and each new one (id: its sequence number, so that a client
// that reconnects resumes where it was), and with states, the state now
// and after each sample.
func (a *Agent) stream(w http.ResponseWriter, r *http.Request, seq int64, states bool) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	past, next, cancel := a.events.Subscribe(seq)
	defer cancel()
	var stateCh <-chan State
	if states {
		ch, stop := a.Watch()
		defer stop()
		stateCh = ch
		if err := sse(w, "state", "", a.State()); err != nil {
			return
		}
	}
	for _, e := range past {
		if err := sse(w, "event", strconv.FormatInt(e.Seq, 10), e); err != nil {
			return
		}
	}
	flusher.Flush()
	// A comment now and then keeps proxies from closing an idle stream.
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-next:
			if !ok {
				return // too slow: the client reconnects with Last-Event-ID
			}
			err = sse(w, "event", strconv.FormatInt(e.Seq, 10), e)
		case s := <-stateCh:
			err = sse(w, "state", "", s)
		case <-keep.C:
			_, err = fmt.Fprint(w, ": keep-alive\n\n")
		}
		if err != nil {
			return
		}
		flusher.Flush()
	}
}

func sse(w http.ResponseWriter, event, id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if id != "" {
		if _, err := fmt.Fprintf(w, "id: %s\n", id); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
	return err
}
