package virt

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"time"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/virtpool/virtpool/driver"
)

// ListDomains lists every domain of a host with its virtpool labels.
func (d *Driver) ListDomains(ctx context.Context, uri string) ([]driver.Domain, error) {
	c, err := d.conns.get(ctx, uri)
	if err != nil {
		return nil, wrap("list domains", uri, "", err)
	}
	doms, err := c.ListAllDomains(0)
	if err != nil {
		d.conns.check(uri, err)
		return nil, wrap("list domains", uri, "", err)
	}
	out := make([]driver.Domain, 0, len(doms))
	var firstErr error
	for i := range doms {
		dom := &doms[i]
		dd, err := describe(dom)
		// Records are virtpool's own data, not guests (see record.go).
		if err == nil && internal(dom, dd.Name, dd.State != driver.StateShutoff) {
			dom.Free()
			continue
		}
		dom.Free()
		if err != nil {
			// A domain that vanished while we listed is not an error.
			if hasCode(err, lv.ERR_NO_DOMAIN) {
				continue
			}
			if firstErr == nil {
				firstErr = wrap("list domains", uri, dd.Name, err)
			}
			continue
		}
		out = append(out, dd)
	}
	return out, firstErr
}

func describe(dom *lv.Domain) (driver.Domain, error) {
	var dd driver.Domain
	var err error
	if dd.Name, err = dom.GetName(); err != nil {
		return dd, err
	}
	if dd.UUID, err = dom.GetUUIDString(); err != nil {
		return dd, err
	}
	info, err := dom.GetInfo()
	if err != nil {
		return dd, err
	}
	dd.State = stateName(info.State)
	dd.VCPUs = int(info.NrVirtCpu)
	dd.MemoryMiB = info.MaxMem / 1024
	if dd.Persistent, err = dom.IsPersistent(); err != nil {
		return dd, err
	}
	m, err := readMetadata(dom)
	if err != nil {
		return dd, err
	}
	dd.Labels = m.labels()
	return dd, nil
}

func stateName(s lv.DomainState) string {
	switch s {
	case lv.DOMAIN_RUNNING, lv.DOMAIN_BLOCKED:
		return driver.StateRunning
	case lv.DOMAIN_PAUSED, lv.DOMAIN_PMSUSPENDED:
		return driver.StatePaused
	case lv.DOMAIN_SHUTDOWN:
		return driver.StateShutdown
	case lv.DOMAIN_SHUTOFF:
		return driver.StateShutoff
	case lv.DOMAIN_CRASHED:
		return driver.StateCrashed
	}
	return driver.StateOther
}

// CreateDomain defines a persistent domain from spec and starts it. If it
// cannot start, the definition and overlay are removed again, so a failed
// create leaves nothing behind.
func (d *Driver) CreateDomain(ctx context.Context, uri string, spec driver.DomainSpec) (driver.Domain, error) {
	const op = "create domain"
	if err := validateSpec(spec); err != nil {
		return driver.Domain{}, opError(op, uri, spec.Name, driver.CodeInvalidArg, err)
	}
	c, err := d.conns.get(ctx, uri)
	if err != nil {
		return driver.Domain{}, wrap(op, uri, spec.Name, err)
	}
	caps, err := capabilities(c)
	if err != nil {
		d.conns.check(uri, err)
		return driver.Domain{}, wrap(op, uri, spec.Name, err)
	}
	accel, err := d.chooseAccel(ctx, c, uri, caps, spec.Accelerator)
	if err != nil {
		return driver.Domain{}, wrap(op, uri, spec.Name, err)
	}
	g, err := chooseGuest(caps, spec, accel)
	if err != nil {
		return driver.Domain{}, opError(op, uri, spec.Name, driver.CodeInvalidArg, err)
	}
	var overlay string
	var created bool // by this call: a reused overlay is never deleted here
	if spec.BaseImage != "" {
		if overlay, created, err = d.overlay(c, uri, spec); err != nil {
			return driver.Domain{}, wrap(op, uri, spec.Name, err)
		}
	}
	cleanupOverlay := func() {
		if created {
			if err := deleteVolume(c, overlay); err != nil {
				d.log.Warn("overlay left behind", "path", overlay, "error", err)
			}
		}
	}
	x, err := domainXML(spec, g, overlay)
	if err != nil {
		cleanupOverlay()
		return driver.Domain{}, opError(op, uri, spec.Name, 0, err)
	}
	dom, err := c.DomainDefineXMLFlags(x, lv.DOMAIN_DEFINE_VALIDATE)
	if err != nil {
		cleanupOverlay()
		d.conns.check(uri, err)
		return driver.Domain{}, wrap(op, uri, spec.Name, err)
	}
	defer dom.Free()
	if err := writeMetadata(dom, newMetadata(spec.Labels, overlay)); err != nil {
		_ = dom.Undefine() // undoing the define; err is what went wrong
		cleanupOverlay()
		return driver.Domain{}, wrap(op, uri, spec.Name, err)
	}
	if err := dom.Create(); err != nil {
		_ = dom.Undefine() // undoing the define; err is what went wrong
		cleanupOverlay()
		return driver.Domain{}, wrap(op, uri, spec.Name, fmt.Errorf("start: %w", err))
	}
	d.log.Info("domain started", "host", uri, "domain", spec.Name, "accel", accel, "type", g.DomainType, "os", g.OSType)
	dd, err := describe(dom)
	return dd, wrap(op, uri, spec.Name, err)
}

func validateSpec(s driver.DomainSpec) error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if s.VCPUs <= 0 {
		errs = append(errs, fmt.Errorf("vcpus must be positive, got %d", s.VCPUs))
	}
	if s.MemoryMiB == 0 {
		errs = append(errs, errors.New("memory_mib must be positive"))
	}
	if s.Kernel == "" && s.BaseImage == "" {
		errs = append(errs, errors.New("set kernel or base_image (or both: a kernel booted with a disk)"))
	}
	switch s.Accelerator {
	case "", driver.AccelAuto, driver.AccelKVM, driver.AccelTCG:
	default:
		errs = append(errs, fmt.Errorf("accelerator %q: want auto, kvm or tcg", s.Accelerator))
	}
	return errors.Join(errs...)
}

// domainXML builds the domain definition with libvirtxml's typed structs:
// what every guest has, then the devices of its kind (QEMU or Xen).
func domainXML(s driver.DomainSpec, g guest, overlay string) (string, error) {
	dom := &libvirtxml.Domain{
		Type:   g.DomainType,
		Name:   s.Name,
		Memory: &libvirtxml.DomainMemory{Value: uint(s.MemoryMiB), Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: uint(s.VCPUs)},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Type: g.OSType, Arch: g.Arch, Machine: g.Machine},
			Kernel:  s.Kernel,
			Initrd:  s.Initrd,
			Cmdline: s.Cmdline,
		},
		Clock:      &libvirtxml.DomainClock{Offset: "utc"},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices:    &libvirtxml.DomainDeviceList{},
	}
	if g.xen() {
		xenDomainParts(dom, s, g, overlay)
	} else {
		qemuDomainParts(dom, s, g, overlay)
	}
	return dom.Marshal()
}

// qemuDomainParts are the QEMU (KVM or TCG) guest's features and devices.
func qemuDomainParts(dom *libvirtxml.Domain, s driver.DomainSpec, g guest, overlay string) {
	dom.Features = &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}}
	if g.DomainType == "qemu" {
		// Cap TCG's translation cache; QEMU's default (1 GiB) dwarfs a tiny guest.
		dom.Features.TCG = &libvirtxml.DomainFeatureTCG{TBCache: &libvirtxml.DomainFeatureTCGTBCache{Unit: "MiB", Size: 64}}
	}
	// No USB: nothing uses it, and it slows boot under emulation.
	dom.Devices.Controllers = []libvirtxml.DomainController{{Type: "usb", Model: "none"}}
	dom.Devices.Serials = []libvirtxml.DomainSerial{{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Log:    &libvirtxml.DomainChardevLog{File: "/var/log/libvirt/qemu/" + s.Name + "-console.log", Append: "off"},
	}}
	dom.Devices.Consoles = []libvirtxml.DomainConsole{ptyConsole("serial")}
	if iface, ok := bridgeInterface(s); ok {
		iface.Model = &libvirtxml.DomainInterfaceModel{Type: "virtio"}
		dom.Devices.Interfaces = []libvirtxml.DomainInterface{iface}
	}
	if overlay != "" {
		// cache=none keeps the disk consistent across hosts during migration.
		disk := overlayDisk(overlay, "vda", "virtio")
		disk.Driver.Cache = "none"
		dom.Devices.Disks = []libvirtxml.DomainDisk{disk}
		if s.Kernel == "" { // else a data disk: the kernel boots
			dom.OS.BootDevices = []libvirtxml.DomainBootDevice{{Dev: "hd"}}
		}
	}
}

// xenDomainParts are the Xen guest's: libxl turns features it is not told
// about off for HVM, runs a device model only for HVM, and gives PV and PVH
// guests a PV console (hvc0) rather than a serial port. No USB controller
// and no NIC model: libxl adds none unasked, and its default NIC (netfront,
// with an emulated twin for HVM) is the paravirtual one.
func xenDomainParts(dom *libvirtxml.Domain, s driver.DomainSpec, g guest, overlay string) {
	if g.OSType == osHVM {
		dom.Features = &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{}, APIC: &libvirtxml.DomainFeatureAPIC{}, PAE: &libvirtxml.DomainFeature{},
		}
		if g.Loader != "" {
			dom.OS.Loader = &libvirtxml.DomainLoader{Path: g.Loader}
		}
		dom.Devices.Emulator = g.Emulator
		dom.Devices.Serials = []libvirtxml.DomainSerial{{
			Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		}}
		dom.Devices.Consoles = []libvirtxml.DomainConsole{ptyConsole("serial")}
	} else {
		dom.Devices.Consoles = []libvirtxml.DomainConsole{ptyConsole("xen")}
	}
	if iface, ok := bridgeInterface(s); ok {
		dom.Devices.Interfaces = []libvirtxml.DomainInterface{iface}
	}
	if overlay != "" {
		// driver qemu: libxl's qdisk backend, the one that reads qcow2.
		dom.Devices.Disks = []libvirtxml.DomainDisk{overlayDisk(overlay, "xvda", "xen")}
		if g.OSType == osHVM && s.Kernel == "" {
			dom.OS.BootDevices = []libvirtxml.DomainBootDevice{{Dev: "hd"}}
		}
	}
}

func ptyConsole(target string) libvirtxml.DomainConsole {
	return libvirtxml.DomainConsole{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Target: &libvirtxml.DomainConsoleTarget{Type: target},
	}
}

func bridgeInterface(s driver.DomainSpec) (libvirtxml.DomainInterface, bool) {
	if s.Bridge == "" {
		return libvirtxml.DomainInterface{}, false
	}
	iface := libvirtxml.DomainInterface{
		Source: &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: s.Bridge}},
	}
	if s.MAC != "" {
		iface.MAC = &libvirtxml.DomainInterfaceMAC{Address: s.MAC}
	}
	return iface, true
}

func overlayDisk(overlay, dev, bus string) libvirtxml.DomainDisk {
	return libvirtxml.DomainDisk{
		Device: "disk",
		Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
		Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: overlay}},
		Target: &libvirtxml.DomainDiskTarget{Dev: dev, Bus: bus},
	}
}

// ShutdownDomain asks for a graceful power-off and destroys the domain if
// it is still running after timeout.
func (d *Driver) ShutdownDomain(ctx context.Context, uri, name string, timeout time.Duration) error {
	err := d.withDomain(ctx, "shutdown domain", uri, name, func(_ *lv.Connect, dom *lv.Domain) error {
		if active, err := dom.IsActive(); err != nil || !active {
			return err
		}
		if err := dom.Shutdown(); err != nil {
			d.log.Debug("graceful shutdown refused, destroying", "domain", name, "error", err)
			return destroyIfActive(dom)
		}
		deadline := time.NewTimer(timeout)
		defer deadline.Stop()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-deadline.C:
				d.log.Info("guest did not power off in time, destroying", "domain", name, "timeout", timeout.String())
				return destroyIfActive(dom)
			case <-tick.C:
				if active, err := dom.IsActive(); err != nil || !active {
					return err
				}
			}
		}
	})
	if driver.IsNotFound(err) {
		return nil
	}
	return err
}

func destroyIfActive(dom *lv.Domain) error {
	err := dom.Destroy()
	if hasCode(err, lv.ERR_OPERATION_INVALID) {
		return nil // it stopped meanwhile
	}
	return err
}

// UndefineDomain removes a stopped domain and, unless opts.KeepStorage,
// the overlay virtpool made.
func (d *Driver) UndefineDomain(ctx context.Context, uri, name string, opts driver.UndefineOptions) error {
	const op = "undefine domain"
	err := d.withDomain(ctx, op, uri, name, func(c *lv.Connect, dom *lv.Domain) error {
		if active, err := dom.IsActive(); err != nil {
			return err
		} else if active {
			return opError(op, uri, name, driver.CodeOperationInvalid, errors.New("domain is running; shut it down first"))
		}
		m, err := readMetadata(dom)
		if err != nil {
			return err
		}
		var layers []string // its checkpoint layers, above its overlay
		if !opts.KeepStorage && m.Overlay != "" {
			if layers, err = diskLayers(c, dom); err != nil {
				return fmt.Errorf("find the checkpoint layers of its disks: %w", err)
			}
		}
		if err := dom.UndefineFlags(lv.DOMAIN_UNDEFINE_MANAGED_SAVE | lv.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA); err != nil {
			return err
		}
		if m.Overlay != "" && opts.KeepStorage {
			d.log.Info("domain removed, its overlay kept (another copy uses it)", "host", uri, "domain", name, "overlay", m.Overlay)
		} else if m.Overlay != "" {
			for _, f := range append(layers, m.Overlay) {
				if err := deleteVolume(c, f); err != nil {
					return fmt.Errorf("remove overlay %s: %w", f, err)
				}
			}
		}
		return nil
	})
	if driver.IsNotFound(err) {
		return nil
	}
	return err
}

// overlay returns the overlay of a domain being created, and whether it
// created it: <dir>/<name>.qcow2 (driver.OverlayPath) backed by the base
// image, made through libvirt's storage API, so it works on remote hosts
// too. One that exists already is used as it is with spec.ReuseOverlay
// (after driver.CheckReuse), and refused without.
func (d *Driver) overlay(c *lv.Connect, uri string, s driver.DomainSpec) (string, bool, error) {
	path := driver.OverlayPath(s)
	dir := filepath.Dir(path)
	pool, err := dirPool(c, dir)
	if err != nil {
		return "", false, err
	}
	defer pool.Free()
	if err := pool.Refresh(0); err != nil {
		return "", false, fmt.Errorf("refresh storage pool %s: %w", dir, err)
	}
	if v, err := pool.LookupStorageVolByName(filepath.Base(path)); err == nil {
		defer v.Free()
		if !s.ReuseOverlay {
			return "", false, fmt.Errorf("overlay %s exists already (another guest's disk, or one left behind): not overwritten", path)
		}
		if err := reusable(c, v, path, s.BaseImage); err != nil {
			return "", false, err
		}
		d.log.Info("existing overlay reused", "host", uri, "domain", s.Name, "overlay", path, "base", s.BaseImage)
		return path, false, nil
	} else if !hasCode(err, lv.ERR_NO_STORAGE_VOL) {
		return "", false, fmt.Errorf("overlay %s: %w", path, err)
	}
	if s.ReuseOverlay {
		d.log.Warn("no overlay to reuse: a new one is made from the base image (is the overlay directory on storage the hosts share?)",
			"host", uri, "domain", s.Name, "overlay", path, "base", s.BaseImage)
	}
	base, err := lookupVolume(c, s.BaseImage)
	if err != nil {
		return "", false, fmt.Errorf("base image %s: %w", s.BaseImage, err)
	}
	baseXMLStr, err := base.GetXMLDesc(0)
	base.Free()
	if err != nil {
		return "", false, err
	}
	var baseVol libvirtxml.StorageVolume
	if err := baseVol.Unmarshal(baseXMLStr); err != nil {
		return "", false, fmt.Errorf("base image %s: %w", s.BaseImage, err)
	}
	baseFormat := "raw"
	if baseVol.Target != nil && baseVol.Target.Format != nil {
		baseFormat = baseVol.Target.Format.Type
	}
	vol := libvirtxml.StorageVolume{
		Name:     filepath.Base(path),
		Capacity: baseVol.Capacity,
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
		BackingStore: &libvirtxml.StorageVolumeBackingStore{
			Path:   s.BaseImage,
			Format: &libvirtxml.StorageVolumeTargetFormat{Type: baseFormat},
		},
	}
	x, err := vol.Marshal()
	if err != nil {
		return "", false, err
	}
	v, err := pool.StorageVolCreateXML(x, 0)
	if err != nil {
		return "", false, fmt.Errorf("create overlay in %s: %w", dir, err)
	}
	defer v.Free()
	got, err := v.GetPath()
	return got, true, err
}

// reusable checks that the volume v at path, an overlay that exists, is a
// qcow2 backed by base, which exists (driver.CheckReuse).
func reusable(c *lv.Connect, v *lv.StorageVol, path, base string) error {
	x, err := v.GetXMLDesc(0)
	if err != nil {
		return fmt.Errorf("overlay %s: %w", path, err)
	}
	var vol libvirtxml.StorageVolume
	if err := vol.Unmarshal(x); err != nil {
		return fmt.Errorf("overlay %s: %w", path, err)
	}
	if vol.Target != nil && vol.Target.Format != nil && vol.Target.Format.Type != "qcow2" {
		return fmt.Errorf("overlay %s exists but is %s, not qcow2: not reused", path, vol.Target.Format.Type)
	}
	var backing string
	if vol.BackingStore != nil {
		backing = vol.BackingStore.Path
	}
	var baseErr error
	if b, err := lookupVolume(c, base); err != nil {
		baseErr = err
	} else {
		b.Free()
	}
	return driver.CheckReuse(path, backing, base, baseErr)
}

// lookupVolume finds the volume of a file, its directory's storage pool
// refreshed first (a dir pool lists what it saw at its last refresh).
func lookupVolume(c *lv.Connect, path string) (*lv.StorageVol, error) {
	pool, err := dirPool(c, filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer pool.Free()
	if err := pool.Refresh(0); err != nil {
		return nil, fmt.Errorf("refresh storage pool %s: %w", filepath.Dir(path), err)
	}
	return c.LookupStorageVolByPath(path)
}

// dirPool finds the storage pool of a directory, or starts a transient one.
func dirPool(c *lv.Connect, dir string) (*lv.StoragePool, error) {
	if p, err := c.LookupStoragePoolByTargetPath(dir); err == nil {
		return p, nil
	}
	// Another caller may have started it since (or libvirt's test driver,
	// which has no lookup by path, did).
	if p, err := c.LookupStoragePoolByName(dirPoolName(dir)); err == nil {
		return p, nil
	}
	x, err := (&libvirtxml.StoragePool{
		Type:   "dir",
		Name:   dirPoolName(dir),
		Target: &libvirtxml.StoragePoolTarget{Path: dir},
	}).Marshal()
	if err != nil {
		return nil, err
	}
	p, err := c.StoragePoolCreateXML(x, 0)
	if err != nil {
		return nil, fmt.Errorf("storage pool for %s: %w", dir, err)
	}
	return p, nil
}

// dirPoolName names the transient storage pool of an overlay directory:
// its base name, for people reading virsh pool-list, and a hash of the
// whole path, so that /a/images and /b/images get pools of their own
// (libvirt refuses a second pool of one name).
func dirPoolName(dir string) string {
	h := fnv.New32a()
	h.Write([]byte(filepath.Clean(dir)))
	return fmt.Sprintf("virtpool-%s-%08x", filepath.Base(dir), h.Sum32())
}

func deleteVolume(c *lv.Connect, path string) error {
	pool, err := dirPool(c, filepath.Dir(path))
	if err != nil {
		return err
	}
	defer pool.Free()
	_ = pool.Refresh(0) // best effort: the lookup below is what decides
	v, err := c.LookupStorageVolByPath(path)
	if err != nil {
		if hasCode(err, lv.ERR_NO_STORAGE_VOL) {
			return nil
		}
		return err
	}
	defer v.Free()
	return v.Delete(0)
}
