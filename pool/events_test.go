package pool_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/scheduler"
)

// recorder is an EventSink that keeps the records, rendered short.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) Emit(e event.Event) {
	s := fmt.Sprintf("%s %s pool=%s", e.Kind, e.Guest, e.Pool)
	switch e.Kind {
	case event.MemberCreated, event.MemberRemoved:
		s += " host=" + e.Host
	default:
		s += fmt.Sprintf(" %s>%s", e.From, e.To)
	}
	if e.Error != "" {
		s += " error"
	}
	if e.Kind == event.MigrationProgress && e.Percent != 50 {
		s += fmt.Sprintf(" percent=%v", e.Percent)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, s)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

// Ops records what it does: members created and removed, and each
// migration's start, progress and end (with its pool where it knows it).
func TestOpsEvents(t *testing.T) {
	fd, ops, _ := setup(t, 3, nil)
	rec := &recorder{}
	ops.Events = rec
	ctx := context.Background()
	fd.DuringMigrate = func(req driver.MigrateRequest) error {
		if req.Domain == "web-2" {
			return errors.New("connection to the driver lost")
		}
		return nil
	}
	plan := func(moves ...scheduler.Move) error {
		v, err := ops.View(ctx, nil)
		if err != nil {
			return err
		}
		p := scheduler.Plan{Moves: moves}
		for i := range moves {
			p.Waves = append(p.Waves, []int{i})
		}
		_, err = ops.Apply(ctx, v, p, func(pool.Located) driver.MigrateOptions { return driver.MigrateOptions{} })
		return err
	}
	steps := []struct {
		name    string
		op      func() error
		wantErr bool
		want    []string
	}{
		{"scale up", func() error { _, err := ops.ScaleTo(ctx, "web", 2); return err }, false,
			[]string{"member_created web-1 pool=web host=h1", "member_created web-2 pool=web host=h2"}},
		{"a plan's move", func() error { return plan(scheduler.Move{Guest: "web-1", From: "h1", To: "h3"}) }, false,
			[]string{"migration_started web-1 pool=web h1>h3", "migration_progress web-1 pool=web h1>h3",
				"migration_finished web-1 pool=web h1>h3"}},
		{"a failed move", func() error { return plan(scheduler.Move{Guest: "web-2", From: "h2", To: "h1"}) }, true,
			[]string{"migration_started web-2 pool=web h2>h1", "migration_progress web-2 pool=web h2>h1",
				"migration_failed web-2 pool=web h2>h1 error"}},
		{"a guest moved by hand: no pool known", func() error { _, err := ops.Migrate(ctx, "web-1", "h3", "h2", driver.MigrateOptions{}); return err }, false,
			[]string{"migration_started web-1 pool= h3>h2", "migration_progress web-1 pool= h3>h2", "migration_finished web-1 pool= h3>h2"}},
		{"scale in", func() error { _, err := ops.ScaleTo(ctx, "web", 1); return err }, false,
			[]string{"member_removed web-1 pool=web host=h2"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.op(); (err != nil) != st.wantErr {
				t.Fatalf("error %v, want error: %v", err, st.wantErr)
			}
			if got := rec.take(); !slices.Equal(got, st.want) {
				t.Fatalf("records\n%q\nwant\n%q", got, st.want)
			}
		})
	}
}
