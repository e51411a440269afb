package virt

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// Checkpoint layers. A checkpoint freezes each writable qcow2 disk in the
// same snapshot as the memory: libvirt captures the memory while the
// guest runs, pauses it, switches each disk to a new, empty layer above
// the file it was writing and resumes it. The image names the frozen
// file (the one the guest wrote when the capture began), which with the
// files below it holds the disk exactly as the image's memory knew it:
// restored, the guest goes on writing there, and the layers above it are
// dropped. Layers sit next to the disk's file, on the storage its hosts
// share: <dir>/<domain>.<disk>.ckpt-<ns>.qcow2.

// layerMark is in the name of every checkpoint layer, and of no other file.
const layerMark = ".ckpt-"

func isLayer(file string) bool { return strings.Contains(path.Base(file), layerMark) }

// layerPath names a new layer for disk target of domain name, above top.
func layerPath(top, name, target string, now time.Time) string {
	return path.Join(path.Dir(top), fmt.Sprintf("%s.%s%s%d.qcow2", name, target, layerMark, now.UnixNano()))
}

// layeredDisk is a disk a checkpoint layers, with its files from the one
// written (chain[0]) down its backing chain, as libvirt knows it.
type layeredDisk struct {
	target string
	chain  []string
}

// layeredDisks lists def's disks that a checkpoint layers: the writable
// qcow2 files (a read-only disk does not change, a CD-ROM neither). A
// writable disk that is not a qcow2 file cannot be layered, so the
// checkpoint is refused rather than taken inconsistent.
func layeredDisks(def *libvirtxml.Domain) ([]layeredDisk, error) {
	if def.Devices == nil {
		return nil, nil
	}
	var out []layeredDisk
	for _, d := range def.Devices.Disks {
		if d.Target == nil || d.ReadOnly != nil || d.Device != "" && d.Device != "disk" {
			continue
		}
		if d.Source == nil || d.Source.File == nil || d.Driver == nil || d.Driver.Type != "qcow2" {
			return nil, fmt.Errorf("disk %s is writable and not a qcow2 file: it cannot be checkpointed with the memory", d.Target.Dev)
		}
		ld := layeredDisk{target: d.Target.Dev, chain: []string{d.Source.File.File}}
		for bs := d.BackingStore; bs != nil && bs.Source != nil && bs.Source.File != nil; bs = bs.BackingStore {
			ld.chain = append(ld.chain, bs.Source.File.File)
		}
		out = append(out, ld)
	}
	return out, nil
}

// mergeable are the layers of ld the last image does not need: those
// below the newest frozen one (chain[1], the file the last image names),
// down to the disk's own file (the first file that is no layer), into
// which they are merged. None when the disk has fewer layers.
func (ld layeredDisk) mergeable() (layers []string, into string) {
	root := slices.IndexFunc(ld.chain, func(f string) bool { return !isLayer(f) })
	if root < 3 {
		return nil, ""
	}
	return ld.chain[2:root], ld.chain[root]
}

// compact merges the layers of each disk that the last image does not
// need into the disk's own file (a commit block job, which leaves the
// chain readable throughout: interrupted, the layers are still there and
// whole), then deletes them once libvirt's chain no longer has them.
func (d *Driver) compact(ctx context.Context, c *lv.Connect, dom *lv.Domain, disks []layeredDisk) error {
	for _, ld := range disks {
		layers, into := ld.mergeable()
		if len(layers) == 0 {
			continue
		}
		if err := dom.BlockCommit(ld.target, into, layers[0], 0, 0); err != nil {
			return fmt.Errorf("merge the layers %v of disk %s into %s: %w", layers, ld.target, into, err)
		}
		if err := waitBlockJob(ctx, dom, ld.target); err != nil {
			return fmt.Errorf("merge the layers %v of disk %s into %s: %w", layers, ld.target, into, err)
		}
		def, err := domainDef(dom, 0)
		if err != nil {
			return err
		}
		now, err := layeredDisks(def)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(now, func(n layeredDisk) bool { return n.target == ld.target })
		if i < 0 || slices.Contains(now[i].chain, layers[0]) {
			return fmt.Errorf("merge the layers %v of disk %s into %s: still in its chain after the job", layers, ld.target, into)
		}
		for _, f := range layers {
			if err := deleteVolume(c, f); err != nil {
				return fmt.Errorf("delete layer %s, merged into %s: %w", f, into, err)
			}
		}
		name, _ := dom.GetName()
		d.log.Debug("checkpoint layers merged", "domain", name, "disk", ld.target, "into", into, "layers", len(layers))
	}
	return nil
}

// waitBlockJob waits until disk's block job is over; cancelling ctx
// aborts it (a commit aborted leaves its layers in place).
func waitBlockJob(ctx context.Context, dom *lv.Domain, disk string) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ji, err := dom.GetBlockJobInfo(disk, 0)
		if err != nil {
			return err
		}
		if ji.Type == 0 { // no job: it ended
			return nil
		}
		select {
		case <-ctx.Done():
			_ = dom.BlockJobAbort(disk, 0)
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// domainDef reads dom's definition: the running one (flags 0) or, with
// lv.DOMAIN_XML_INACTIVE, the one it boots from.
func domainDef(dom *lv.Domain, flags lv.DomainXMLFlags) (*libvirtxml.Domain, error) {
	s, err := dom.GetXMLDesc(flags)
	if err != nil {
		return nil, err
	}
	var def libvirtxml.Domain
	if err := def.Unmarshal(s); err != nil {
		return nil, fmt.Errorf("read domain XML: %w", err)
	}
	return &def, nil
}

// withoutBackingStores is def's XML with no disk's backing chain: a
// restore then reads each chain from the files (where a merge may have
// changed it since the capture), not from the image.
func withoutBackingStores(x string) (string, error) {
	var def libvirtxml.Domain
	if err := def.Unmarshal(x); err != nil {
		return "", fmt.Errorf("read domain XML: %w", err)
	}
	if def.Devices != nil {
		for i := range def.Devices.Disks {
			def.Devices.Disks[i].BackingStore = nil
		}
	}
	return def.Marshal()
}

// layersBelow lists top and the layers below it (down to the first file
// that is no layer), as the files' own backing chains say: what a
// domain whose disk is top leaves when it is removed. Nothing if top is
// no layer.
func layersBelow(c *lv.Connect, top string) ([]string, error) {
	var out []string
	refreshed := map[string]bool{} // a directory's pool, once: it lists the layers' volumes
	for f := top; isLayer(f); {
		out = append(out, f)
		if dir := path.Dir(f); !refreshed[dir] {
			pool, err := dirPool(c, dir)
			if err != nil {
				return out, err
			}
			_ = pool.Refresh(0)
			_ = pool.Free()
			refreshed[dir] = true
		}
		v, err := c.LookupStorageVolByPath(f)
		if err != nil {
			if hasCode(err, lv.ERR_NO_STORAGE_VOL) {
				return out, nil
			}
			return out, err
		}
		x, err := v.GetXMLDesc(0)
		_ = v.Free()
		if err != nil {
			return out, err
		}
		var sv libvirtxml.StorageVolume
		if err := sv.Unmarshal(x); err != nil {
			return out, fmt.Errorf("read volume %s: %w", f, err)
		}
		if sv.BackingStore == nil {
			return out, nil
		}
		f = sv.BackingStore.Path
	}
	return out, nil
}

// diskLayers lists the checkpoint layers of dom's disks, from the file
// each disk writes down to the disk's own file (layersBelow).
func diskLayers(c *lv.Connect, dom *lv.Domain) ([]string, error) {
	def, err := domainDef(dom, lv.DOMAIN_XML_INACTIVE)
	if err != nil {
		return nil, err
	}
	var out []string
	if def.Devices == nil {
		return nil, nil
	}
	for _, disk := range def.Devices.Disks {
		if disk.Source == nil || disk.Source.File == nil {
			continue
		}
		ls, err := layersBelow(c, disk.Source.File.File)
		if err != nil {
			return out, err
		}
		out = append(out, ls...)
	}
	return out, nil
}
