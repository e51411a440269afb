package virt

import (
	"slices"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"
)

func fileDisk(dev, typ string, chain ...string) libvirtxml.DomainDisk {
	d := libvirtxml.DomainDisk{Device: "disk", Target: &libvirtxml.DomainDiskTarget{Dev: dev},
		Driver: &libvirtxml.DomainDiskDriver{Type: typ},
		Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: chain[0]}}}
	bs := &d.BackingStore
	for _, f := range chain[1:] {
		*bs = &libvirtxml.DomainDiskBackingStore{Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: f}}}
		bs = &(*bs).BackingStore
	}
	return d
}

// TestLayeredDisks: the writable qcow2 files are layered, with their
// chains; read-only disks and CD-ROMs are left out; a writable disk that
// cannot be layered refuses the checkpoint.
func TestLayeredDisks(t *testing.T) {
	ro := fileDisk("vdb", "raw", "/img/app.img")
	ro.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
	cd := fileDisk("sda", "raw", "/img/cd.iso")
	cd.Device = "cdrom"
	for _, tc := range []struct {
		name  string
		disks []libvirtxml.DomainDisk
		want  string // "vda:a,b,c" per disk, or part of the error
	}{
		{"none", nil, ""},
		{"an overlay of a base", []libvirtxml.DomainDisk{fileDisk("vda", "qcow2", "/o/g.qcow2", "/b/base.qcow2")}, "vda:/o/g.qcow2,/b/base.qcow2"},
		{"read-only and CD-ROM left out", []libvirtxml.DomainDisk{fileDisk("vda", "qcow2", "/o/g.qcow2"), ro, cd}, "vda:/o/g.qcow2"},
		{"a writable raw disk", []libvirtxml.DomainDisk{fileDisk("vdc", "raw", "/o/data.img")}, "disk vdc is writable and not a qcow2 file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			def := &libvirtxml.Domain{Devices: &libvirtxml.DomainDeviceList{Disks: tc.disks}}
			ls, err := layeredDisks(def)
			var got []string
			for _, l := range ls {
				got = append(got, l.target+":"+strings.Join(l.chain, ","))
			}
			s := strings.Join(got, " ")
			if err != nil {
				s = err.Error()
			}
			if tc.want == "" && s != "" || tc.want != "" && !strings.Contains(s, tc.want) {
				t.Errorf("got %q, want %q", s, tc.want)
			}
		})
	}
}

// TestMergeable: the layers below the newest frozen one (what the last
// image names), down to the disk's own file, are merged into that file;
// never the file being written nor the newest frozen one.
func TestMergeable(t *testing.T) {
	const root, base = "/o/g.qcow2", "/b/base.qcow2"
	l := func(i int) string { return layerPath(root, "g", "vda", time.Unix(0, int64(i))) }
	for _, tc := range []struct {
		name  string
		chain []string
		want  []string
	}{
		{"no checkpoint yet", []string{root, base}, nil},
		{"one: the overlay frozen, a layer written", []string{l(1), root, base}, nil},
		{"two: the newest frozen is a layer", []string{l(2), l(1), root, base}, nil},
		{"three: the oldest layer merged", []string{l(3), l(2), l(1), root, base}, []string{l(1)}},
		{"after failed ships: all below the newest frozen", []string{l(5), l(4), l(3), l(2), root, base}, []string{l(3), l(2)}},
		{"restored on a layer", []string{l(9), l(8), l(4), root}, []string{l(4)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, into := layeredDisk{target: "vda", chain: tc.chain}.mergeable()
			if !slices.Equal(got, tc.want) || len(got) > 0 && into != root {
				t.Errorf("merge %v into %q, want %v into %s", got, into, tc.want, root)
			}
		})
	}
}

// TestSnapshotXML: the memory into the file; each layered disk into a new
// layer next to the file it writes; every other disk left out.
func TestSnapshotXML(t *testing.T) {
	ro := fileDisk("vdb", "raw", "/img/app.img")
	ro.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
	def := &libvirtxml.Domain{Devices: &libvirtxml.DomainDeviceList{Disks: []libvirtxml.DomainDisk{
		fileDisk("vda", "qcow2", "/o/g.vda.ckpt-1.qcow2", "/o/g.qcow2"), ro}}}
	x, err := snapshotXML(def, "g", "/ship/out/g.img", time.Unix(0, 42))
	if err != nil {
		t.Fatal(err)
	}
	var snap libvirtxml.DomainSnapshot
	if err := snap.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	if snap.Memory.File != "/ship/out/g.img" || len(snap.Disks.Disks) != 2 {
		t.Fatalf("snapshot %s", x)
	}
	vda, vdb := snap.Disks.Disks[0], snap.Disks.Disks[1]
	if vda.Snapshot != "external" || vda.Source.File.File != "/o/g.vda.ckpt-42.qcow2" || vda.Driver.Type != "qcow2" {
		t.Errorf("vda: %s", x)
	}
	if vdb.Snapshot != "no" {
		t.Errorf("vdb: %s", x)
	}
}

func TestWithoutBackingStores(t *testing.T) {
	def := libvirtxml.Domain{Type: "kvm", Name: "g", Devices: &libvirtxml.DomainDeviceList{Disks: []libvirtxml.DomainDisk{
		fileDisk("vda", "qcow2", "/o/g.vda.ckpt-1.qcow2", "/o/g.vda.ckpt-0.qcow2", "/o/g.qcow2")}}}
	x, err := def.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	y, err := withoutBackingStores(x)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(y, "backingStore") || !strings.Contains(y, "/o/g.vda.ckpt-1.qcow2") {
		t.Errorf("%s", y)
	}
}
