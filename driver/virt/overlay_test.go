package virt

import (
	"context"
	"strings"
	"testing"
)

// Two overlay directories with the same base name get storage pools of
// their own (the pool name once was virtpool-<base name>, and the second
// directory's pool could not be created).
func TestDirPoolSameBaseName(t *testing.T) {
	a, b := dirPoolName("/srv/a/images"), dirPoolName("/srv/b/images")
	if a == b || !strings.HasPrefix(a, "virtpool-images-") || dirPoolName("/srv/a/images/") != a {
		t.Fatalf("pool names %q and %q", a, b)
	}
	d := newTestDriver(t)
	c, err := d.conns.get(context.Background(), "test:///default")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{t.TempDir() + "/images", t.TempDir() + "/images"} {
		p, err := dirPool(c, dir)
		if err != nil {
			t.Fatalf("storage pool for %s: %v", dir, err)
		}
		p.Free()
	}
}
