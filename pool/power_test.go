package pool_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/pool/pooltest"
)

// powerLab is pool web (1 GiB hosts h1 and h2, 768 MiB members: one a
// host) with web-1 on h1 and h2 on standby, put there by the autoscaler.
func powerLab(t *testing.T) (*pooltest.Driver, func() *pool.Ops) {
	t.Helper()
	fd := pooltest.New(4, 1, "fake:///h1", "fake:///h2")
	newOps := func() *pool.Ops {
		ops := &pool.Ops{Hosts: pool.Inventory{}, Driver: func(context.Context) (driver.Driver, error) { return fd, nil }}
		for _, h := range []string{"h1", "h2"} {
			ops.Hosts[h] = pool.HostEntry{Name: h, URI: "fake:///" + h}
		}
		return ops
	}
	ops, ctx := newOps(), context.Background()
	spec := pool.Spec{Name: "web", Size: 1, MaxSize: 2, Template: pool.Template{VCPUs: 1, MemoryMiB: 768, Kernel: "/k"}}
	for _, h := range []string{"h1", "h2"} {
		spec.Hosts = append(spec.Hosts, pool.HostEntry{Name: h, URI: "fake:///" + h})
	}
	if err := ops.SetAutoStandby(ctx, "h2", true); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.WritePool(ctx, pool.Record{Spec: spec}, nil); err != nil {
		t.Fatal(err)
	}
	if err := ops.Reconcile(ctx, mustRead(t, ops)); err != nil {
		t.Fatal(err)
	}
	return fd, newOps
}

func mustRead(t *testing.T, ops *pool.Ops) pool.Record {
	t.Helper()
	pr, _, found, err := ops.ReadPool(context.Background(), "web", []string{"h1"})
	if err != nil || !found {
		t.Fatalf("read web: %v (found %v)", err, found)
	}
	return pr
}

type sink []event.Event

func (s *sink) Emit(e event.Event) { *s = append(*s, e) }

// TestPowerOffAndOn: h2, on standby and empty, is powered off and noted
// so in web's record; web's reads do not wait for it. When web needs a
// second member, which fits only there, h2 is powered on, its fence
// dropped, brought back from standby and given the member.
func TestPowerOffAndOn(t *testing.T) {
	fd, newOps := powerLab(t)
	ctx := context.Background()
	ops := newOps()
	var offs int
	if err := ops.PowerOffStandby(ctx, "h2", func(context.Context) error {
		offs++
		fd.Host("fake:///h2").Down = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	fc, fenced := mustRead(t, ops).Fenced("h2")
	if offs != 1 || !fenced || !fc.Standby || len(fc.Members) != 0 {
		t.Fatalf("after power-off: %d actions, fence %+v (%v); want one action and a standby fence", offs, fc, fenced)
	}
	// A new operation (the target's next evaluation) knows h2 is off from
	// the record: web is at size, not short of unknown members.
	ops = newOps()
	if n, err := ops.ScaleTo(ctx, "web", 1); err != nil || n != 1 {
		t.Fatalf("web at size with h2 off: %d, %v", n, err)
	}
	var powered []string
	var evs sink
	ops.Events = &evs
	ops.PowerOn = func(_ context.Context, host string) error {
		powered = append(powered, host)
		fd.Host("fake:///" + host).Down = false
		return nil
	}
	if _, err := ops.ScaleTo(ctx, "web", 2); err != nil {
		t.Fatal(err)
	}
	if strings.Join(powered, " ") != "h2" {
		t.Errorf("powered on %v, want h2", powered)
	}
	if pr := mustRead(t, ops); len(pr.Fences) != 0 {
		t.Errorf("fences after power-on: %+v, want none", pr.Fences)
	}
	if st, err := ops.HostState(ctx, "h2"); err != nil || st.InStandby() {
		t.Errorf("h2 after power-on: %+v (%v), want active", st, err)
	}
	if w := fd.Where("web-2"); w["fake:///h2"] != driver.StateRunning {
		t.Errorf("web-2: %v, want running on h2", w)
	}
	if len(evs) == 0 || evs[0].Kind != event.HostPoweredOn || evs[0].Host != "h2" {
		t.Errorf("events %+v, want host_powered_on for h2 first", evs)
	}
}

// TestPowerOffRefused: a host that is not on standby, runs a guest, or
// whose power-off action fails stays on, and its fence is dropped again.
func TestPowerOffRefused(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		off     error
		wantErr string
		wantOff int
	}{
		{name: "not on standby", host: "h1", wantErr: "power off h1: host h1 is not on standby"},
		{name: "action fails", host: "h2", off: errors.New("exit status 1"), wantErr: "power off h2: exit status 1", wantOff: 1},
		{name: "runs a guest", host: "h2", wantErr: "power off h2: web-9 runs on h2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fd, newOps := powerLab(t)
			ops, ctx := newOps(), context.Background()
			if tc.name == "runs a guest" {
				fd.AddDomain("fake:///h2", driver.Domain{Name: "web-9", VCPUs: 1, MemoryMiB: 128}, 0)
			}
			offs := 0
			err := ops.PowerOffStandby(ctx, tc.host, func(context.Context) error { offs++; return tc.off })
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if offs != tc.wantOff {
				t.Errorf("power-off action run %d times, want %d", offs, tc.wantOff)
			}
			if pr := mustRead(t, ops); len(pr.Fences) != 0 {
				t.Errorf("fences left: %+v", pr.Fences)
			}
		})
	}
}
