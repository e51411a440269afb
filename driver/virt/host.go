package virt

import (
	"context"
	"fmt"
	"time"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/virtpool/virtpool/driver"
)

// HostInfo describes a host. Accelerators are probed once per host (by its
// UUID): KVM is listed only if a KVM guest actually starts and keeps
// running, because /dev/kvm can exist and still fail (nested or PVM hosts).
func (d *Driver) HostInfo(ctx context.Context, uri string) (driver.HostInfo, error) {
	const op = "host info"
	c, err := d.conns.get(ctx, uri)
	if err != nil {
		return driver.HostInfo{}, wrap(op, uri, "", err)
	}
	hi, caps, err := hostInfo(c)
	if err != nil {
		d.conns.check(uri, err)
		return driver.HostInfo{}, wrap(op, uri, "", err)
	}
	hi.URI = uri
	hi.Accelerators, err = d.accelerators(ctx, c, uri, caps)
	return hi, wrap(op, uri, "", err)
}

func hostInfo(c *lv.Connect) (driver.HostInfo, *libvirtxml.Caps, error) {
	var hi driver.HostInfo
	ni, err := c.GetNodeInfo()
	if err != nil {
		return hi, nil, err
	}
	hi.CPUs = int(ni.Cpus)
	hi.MemoryBytes = ni.Memory * 1024
	if hi.FreeMemoryBytes, err = c.GetFreeMemory(); err != nil {
		return hi, nil, err
	}
	if hi.Hostname, err = c.GetHostname(); err != nil {
		return hi, nil, err
	}
	if hi.Hypervisor, err = c.GetType(); err != nil {
		return hi, nil, err
	}
	if v, err := c.GetVersion(); err == nil {
		hi.HypervisorVersion = version(v)
	}
	if v, err := c.GetLibVersion(); err == nil {
		hi.LibvirtVersion = version(v)
	}
	caps, err := capabilities(c)
	if err != nil {
		return hi, nil, err
	}
	hi.UUID = caps.Host.UUID // empty for the test driver
	return hi, caps, nil
}

// capabilities reads and parses the host's capabilities (virConnectGetCapabilities).
func capabilities(c *lv.Connect) (*libvirtxml.Caps, error) {
	x, err := c.GetCapabilities()
	if err != nil {
		return nil, err
	}
	var caps libvirtxml.Caps
	if err := caps.Unmarshal(x); err != nil {
		return nil, fmt.Errorf("parse capabilities: %w", err)
	}
	return &caps, nil
}

// version formats libvirt's major*1e6+minor*1e3+micro.
func version(v uint32) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}

func (d *Driver) accelerators(ctx context.Context, c *lv.Connect, uri string, caps *libvirtxml.Caps) ([]string, error) {
	key := caps.Host.UUID
	if key == "" {
		key = uri
	}
	d.accelMu.Lock()
	defer d.accelMu.Unlock()
	if a, ok := d.accels[key]; ok {
		return a, nil
	}
	typ, err := c.GetType()
	if err != nil {
		return nil, err
	}
	var accels []string
	if typ != "QEMU" {
		// Other hypervisors (Xen, test) have no TCG/KVM choice.
		accels = []string{driver.AccelKVM}
	} else {
		if kvmAdvertised(c) {
			ok, reason := hardwareVirt(caps)
			if ok {
				ok, reason = probeKVM(ctx, c)
			}
			if ok {
				accels = append(accels, driver.AccelKVM)
			} else {
				d.log.Info("KVM advertised but unusable; guests will use TCG", "host", uri, "reason", reason)
			}
		}
		accels = append(accels, driver.AccelTCG)
	}
	d.accels[key] = accels
	return accels, nil
}

func kvmAdvertised(c *lv.Connect) bool {
	x, err := c.GetDomainCapabilities("", "x86_64", "", "kvm", 0)
	return err == nil && x != ""
}

// hardwareVirt reports whether an x86 host's CPU has Intel VT-x or AMD-V,
// which KVM proper needs. A host can offer /dev/kvm without them (KVM-PVM,
// some nested setups): firmware then runs, so probeKVM passes, but a Linux
// guest dies with an emulation failure. Other architectures are left to
// the probe.
func hardwareVirt(caps *libvirtxml.Caps) (bool, string) {
	cpu := caps.Host.CPU
	if cpu == nil || (cpu.Arch != "x86_64" && cpu.Arch != "i686") {
		return true, ""
	}
	for _, f := range cpu.FeatureFlags {
		if f.Name == "vmx" || f.Name == "svm" {
			return true, ""
		}
	}
	return false, "the host CPU has neither vmx nor svm (KVM without hardware virtualization, e.g. KVM-PVM)"
}

// kvmProbePrefix names probeKVM's guests, which listings leave out.
const kvmProbePrefix = "virtpool-kvm-probe-"

// probeKVM starts a small transient KVM guest (firmware only, no disk) and
// checks that it is still running shortly after: on hosts where KVM cannot
// run guests, QEMU fails to start or the guest stops with an emulation error.
func probeKVM(ctx context.Context, c *lv.Connect) (bool, string) {
	name := fmt.Sprintf("%s%d", kvmProbePrefix, time.Now().UnixNano())
	x, err := (&libvirtxml.Domain{
		Type:   "kvm",
		Name:   name,
		Memory: &libvirtxml.DomainMemory{Value: 32, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS:     &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm", Arch: "x86_64"}},
		CPU:    &libvirtxml.DomainCPU{Mode: "host-passthrough"},
		Devices: &libvirtxml.DomainDeviceList{
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none"}},
			MemBalloon:  &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}).Marshal()
	if err != nil {
		return false, err.Error()
	}
	dom, err := c.DomainCreateXML(x, lv.DOMAIN_START_AUTODESTROY)
	if err != nil {
		return false, err.Error()
	}
	defer dom.Free()
	defer func() { _ = dom.Destroy() }() // it may have stopped by itself: what the probe looks for
	select {
	case <-ctx.Done():
		return false, ctx.Err().Error()
	case <-time.After(time.Second):
	}
	state, reason, err := dom.GetState()
	if err != nil {
		return false, err.Error()
	}
	if state != lv.DOMAIN_RUNNING {
		return false, fmt.Sprintf("probe guest state %d (reason %d)", state, reason)
	}
	return true, ""
}

// chooseAccel resolves "auto" to the best working accelerator of the host
// and refuses one the host cannot run.
func (d *Driver) chooseAccel(ctx context.Context, c *lv.Connect, uri string, caps *libvirtxml.Caps, want string) (string, error) {
	have, err := d.accelerators(ctx, c, uri, caps)
	if err != nil {
		return "", err
	}
	if want == "" || want == driver.AccelAuto {
		return have[0], nil
	}
	for _, a := range have {
		if a == want {
			return want, nil
		}
	}
	return "", opError("choose accelerator", uri, "", driver.CodeInvalidArg,
		fmt.Errorf("accelerator %q does not work on this host (working: %v)", want, have))
}

// Stats samples all domains of a host in one libvirt call, plus the host.
func (d *Driver) Stats(ctx context.Context, uri string) (driver.HostStats, error) {
	const op = "stats"
	c, err := d.conns.get(ctx, uri)
	if err != nil {
		return driver.HostStats{}, wrap(op, uri, "", err)
	}
	hs, err := hostStats(c)
	if err != nil {
		d.conns.check(uri, err)
		return hs, wrap(op, uri, "", err)
	}
	// NOWAIT: a domain in a job (the destination of a migration) would
	// otherwise hold the whole host's sample until the job ends; libvirt
	// then leaves out what it cannot read at once.
	all, err := c.GetAllDomainStats(nil,
		lv.DOMAIN_STATS_STATE|lv.DOMAIN_STATS_CPU_TOTAL|lv.DOMAIN_STATS_BALLOON|
			lv.DOMAIN_STATS_VCPU|lv.DOMAIN_STATS_INTERFACE|lv.DOMAIN_STATS_BLOCK, lv.CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)
	if err != nil {
		d.conns.check(uri, err)
		return hs, wrap(op, uri, "", err)
	}
	for _, s := range all {
		ds := domainStats(s)
		if internal(s.Domain, ds.Name, ds.State != driver.StateShutoff) {
			s.Domain.Free()
			continue
		}
		if m, err := readMetadata(s.Domain); err == nil {
			ds.Labels = m.labels()
		}
		s.Domain.Free()
		hs.Domains = append(hs.Domains, ds)
	}
	return hs, nil
}

func hostStats(c *lv.Connect) (driver.HostStats, error) {
	hs := driver.HostStats{Time: time.Now()}
	ni, err := c.GetNodeInfo()
	if err != nil {
		return hs, err
	}
	hs.CPUs = int(ni.Cpus)
	// Drivers without node stats (test, some remote setups) still report
	// sizes, so fall back to those rather than fail the whole sample.
	cpu, err := c.GetCPUStats(int(lv.NODE_CPU_STATS_ALL_CPUS), 0)
	switch {
	case err == nil:
		hs.CPUUserNs, hs.CPUSystemNs, hs.CPUIdleNs, hs.CPUIowaitNs = cpu.User, cpu.Kernel, cpu.Idle, cpu.Iowait
	case !unsupported(err):
		return hs, err
	}
	mem, err := c.GetMemoryStats(int(lv.NODE_MEMORY_STATS_ALL_CELLS), 0)
	switch {
	case err == nil:
		hs.MemoryTotalBytes = mem.Total * 1024
		hs.MemoryFreeBytes = (mem.Free + mem.Buffers + mem.Cached) * 1024
	case unsupported(err):
		hs.MemoryTotalBytes = ni.Memory * 1024
		if hs.MemoryFreeBytes, err = c.GetFreeMemory(); err != nil {
			return hs, err
		}
	default:
		return hs, err
	}
	return hs, nil
}

func domainStats(s lv.DomainStats) driver.DomainStats {
	var ds driver.DomainStats
	ds.Name, _ = s.Domain.GetName()
	ds.UUID, _ = s.Domain.GetUUIDString()
	if s.State != nil && s.State.StateSet {
		ds.State = stateName(s.State.State)
	}
	if s.Cpu != nil {
		ds.CPUTimeNs = s.Cpu.Time
	}
	ds.VCPUs = len(s.Vcpu)
	if s.Balloon != nil {
		ds.BalloonKiB = s.Balloon.Current
		ds.RSSKiB = s.Balloon.Rss
	}
	for _, b := range s.Block {
		ds.BlockRdBytes += b.RdBytes
		ds.BlockWrBytes += b.WrBytes
	}
	for _, n := range s.Net {
		ds.NetRxBytes += n.RxBytes
		ds.NetTxBytes += n.TxBytes
	}
	return ds
}

func unsupported(err error) bool {
	return hasCode(err, lv.ERR_NO_SUPPORT)
}
