package virt

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
)

// What CheckpointDomain refuses before it touches the guest (test:///default
// has a running domain "test"); the capture itself is tested on the lab
// (acctest.TestAccCheckpointRestore).
func TestCheckpointRefuses(t *testing.T) {
	d := newTestDriver(t)
	ctx := context.Background()
	if err := d.ShutdownDomain(ctx, testURI, "test", time.Second); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, domain string
		opts         driver.CheckpointOptions
		code         int
		want         string
	}{
		{"relative path", "test", driver.CheckpointOptions{Path: "ckpt/test.img"}, driver.CodeInvalidArg, `"ckpt/test.img": give an absolute path`},
		{"negative downtime", "test", driver.CheckpointOptions{Path: "/c/t.img", MaxDowntime: -time.Millisecond}, driver.CodeInvalidArg, "negative"},
		{"not running", "test", driver.CheckpointOptions{Path: "/c/t.img"}, driver.CodeOperationInvalid, "checkpoint domain test on test:///default: the domain is not running"},
		{"no such domain", "nope", driver.CheckpointOptions{Path: "/c/t.img"}, driver.CodeNoDomain, "checkpoint domain nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.CheckpointDomain(ctx, testURI, tc.domain, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || driver.CodeOf(err) != tc.code {
				t.Fatalf("error %v (code %d), want one with %q and code %d", err, driver.CodeOf(err), tc.want, tc.code)
			}
		})
	}
	if err := d.RestoreDomain(ctx, testURI, "t.img"); driver.CodeOf(err) != driver.CodeInvalidArg {
		t.Errorf("restore from a relative path: %v, want an invalid argument", err)
	}
}
