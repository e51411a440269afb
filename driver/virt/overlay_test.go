package virt

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/virtpool/virtpool/driver"
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

// baseImage makes a raw volume of 64 MiB in dir (its storage pool started
// if need be) and returns its path.
func baseImage(t *testing.T, c *lv.Connect, dir, name string) string {
	t.Helper()
	p, err := dirPool(c, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Free()
	x, err := (&libvirtxml.StorageVolume{Name: name, Capacity: &libvirtxml.StorageVolumeSize{Value: 64 << 20},
		Target: &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "raw"}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.StorageVolCreateXML(x, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Free()
	path, err := v.GetPath()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOverlayKeptAndReused: a guest's overlay is on storage its hosts
// share, at one path for every copy. Removing a copy with KeepStorage
// leaves it; creating the guest again with ReuseOverlay (an HA restart on
// another host) runs on it, and only if it is a qcow2 of the guest's base
// image, which must exist; without ReuseOverlay an existing overlay is
// refused; a create that fails never deletes an overlay it reused; a
// plain UndefineDomain (the guest removed everywhere) deletes it.
func TestOverlayKeptAndReused(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	c, err := d.conns.get(ctx, testURI)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// before runs once the first copy was removed, its overlay kept.
		before func(t *testing.T, dir, base string)
		// spec changes the second create's spec (ReuseOverlay is set).
		spec func(s *driver.DomainSpec, dir string)
		want []string // words of the second create's error ("" for none); %d: the dir
		// kept: the overlay exists after a failed second create.
		kept bool
	}{
		{name: "reused"},
		{name: "not asked to reuse: refused", spec: func(s *driver.DomainSpec, _ string) { s.ReuseOverlay = false },
			want: []string{"overlay %d/vp-keep-2.qcow2 exists already", "not overwritten"}, kept: true},
		{name: "another base image", spec: func(s *driver.DomainSpec, dir string) { s.BaseImage = dir + "/other.raw" },
			before: func(t *testing.T, dir, _ string) { baseImage(t, c, dir, "other.raw") },
			want:   []string{"overlay %d/vp-keep-3.qcow2 exists but is backed by %d/base.raw, not by the domain's base image %d/other.raw"}, kept: true},
		{name: "base image missing",
			before: func(t *testing.T, _, base string) {
				v, err := c.LookupStorageVolByPath(base)
				if err != nil {
					t.Fatal(err)
				}
				defer v.Free()
				if err := v.Delete(0); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"overlay %d/vp-keep-4.qcow2 exists but its base image %d/base.raw is missing"}, kept: true},
		{name: "define fails: the reused overlay stays", spec: func(s *driver.DomainSpec, _ string) { s.Bridge, s.MAC = "br0", "not-a-mac" },
			want: []string{"failed to validate"}, kept: true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			base := baseImage(t, c, dir, "base.raw")
			spec := kernelSpec(fmt.Sprintf("vp-keep-%d", i+1))
			spec.BaseImage = base
			overlay := driver.OverlayPath(spec)
			exists := func() bool {
				v, err := lookupVolume(c, overlay)
				if err != nil {
					if !hasCode(err, lv.ERR_NO_STORAGE_VOL) {
						t.Fatal(err)
					}
					return false
				}
				v.Free()
				return true
			}
			if _, err := d.CreateDomain(ctx, testURI, spec); err != nil {
				t.Fatal(err)
			}
			if err := d.ShutdownDomain(ctx, testURI, spec.Name, time.Second); err != nil {
				t.Fatal(err)
			}
			if err := d.UndefineDomain(ctx, testURI, spec.Name, driver.UndefineOptions{KeepStorage: true}); err != nil {
				t.Fatal(err)
			}
			if !exists() {
				t.Fatalf("overlay %s deleted by an undefine that keeps storage", overlay)
			}
			if tc.before != nil {
				tc.before(t, dir, base)
			}
			again := spec
			again.ReuseOverlay = true
			if tc.spec != nil {
				tc.spec(&again, dir)
			}
			_, err := d.CreateDomain(ctx, testURI, again)
			if len(tc.want) > 0 {
				for _, w := range tc.want {
					if w = strings.ReplaceAll(w, "%d", dir); err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("second create: %v, want an error with %q", err, w)
					}
				}
				if exists() != tc.kept {
					t.Errorf("after the failed create, overlay exists %v, want %v", exists(), tc.kept)
				}
				return
			}
			if err != nil {
				t.Fatalf("create reusing the overlay: %v", err)
			}
			dom, err := c.LookupDomainByName(spec.Name)
			if err != nil {
				t.Fatal(err)
			}
			m, err := readMetadata(dom)
			dom.Free()
			if err != nil || m.Overlay != overlay {
				t.Errorf("the domain's overlay %q (%v), want %s", m.Overlay, err, overlay)
			}
			if err := d.ShutdownDomain(ctx, testURI, spec.Name, time.Second); err != nil {
				t.Fatal(err)
			}
			if err := d.UndefineDomain(ctx, testURI, spec.Name, driver.UndefineOptions{}); err != nil {
				t.Fatal(err)
			}
			if exists() {
				t.Errorf("overlay %s still there once the guest is removed everywhere", overlay)
			}
		})
	}
}

// TestOverlayCreatedWhenNoneToReuse: ReuseOverlay without an overlay
// there makes one, and a create that fails deletes the one it made.
func TestOverlayCreatedWhenNoneToReuse(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	c, err := d.conns.get(ctx, testURI)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spec := kernelSpec("vp-fresh-1")
	spec.BaseImage, spec.ReuseOverlay = baseImage(t, c, dir, "base.raw"), true
	bad := spec
	bad.Name, bad.Bridge, bad.MAC = "vp-fresh-2", "br0", "not-a-mac"
	if _, err := d.CreateDomain(ctx, testURI, bad); err == nil {
		t.Fatal("create with a bad MAC: no error")
	}
	if v, err := lookupVolume(c, driver.OverlayPath(bad)); err == nil {
		v.Free()
		t.Errorf("a failed create left the overlay it made, %s", driver.OverlayPath(bad))
	}
	if _, err := d.CreateDomain(ctx, testURI, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.ShutdownDomain(ctx, testURI, spec.Name, 0)
		_ = d.UndefineDomain(ctx, testURI, spec.Name, driver.UndefineOptions{})
	})
	v, err := lookupVolume(c, driver.OverlayPath(spec))
	if err != nil {
		t.Fatalf("overlay %s: %v", driver.OverlayPath(spec), err)
	}
	v.Free()
}
