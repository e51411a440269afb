package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/fleet"
)

// Serve runs the agent cfg describes until ctx ends: the driver process,
// the sampling and the HTTP server. ready, if not nil, gets the address
// the server listens on once it does.
func Serve(ctx context.Context, cfg Config, log hclog.Logger, ready func(addr string)) error {
	f, closeDriver, err := fleet.Open(cfg.Config, log)
	if err != nil {
		return err
	}
	defer closeDriver()
	return New(cfg, f, log).Serve(ctx, ready)
}

// Serve samples and serves HTTP on the configured address until ctx ends;
// ready is as for the package's Serve.
func (a *Agent) Serve(ctx context.Context, ready func(addr string)) error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("%s: %w", KeyListen, err)
	}
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Requests end with the agent: event streams never hold it up.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	a.log.Info("agent listening", "url", "http://"+ln.Addr().String()+"/", "hosts", len(a.cfg.Seeds),
		"sample_interval", a.cfg.SampleInterval, "retention", a.cfg.Retention)
	if ready != nil {
		ready(ln.Addr().String())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(ctx)
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // requests' contexts are ctx: they are ending
	}()
	err = srv.Serve(ln)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
