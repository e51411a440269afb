package virt

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/virtpool/virtpool/driver"
)

// The capabilities in testdata/ are written for these tests after the
// shapes libvirt reports (caps-qemu-*: libvirt 9.0 and QEMU 7.2 on Debian
// 12; caps-xen-*: libvirt's libxl driver on Xen 4.17). No Xen host ran them.

func loadCaps(t *testing.T, name string) *libvirtxml.Caps {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var caps libvirtxml.Caps
	if err := caps.Unmarshal(string(b)); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &caps
}

func kernelBoot() driver.DomainSpec {
	return driver.DomainSpec{
		Name: "vp-1", VCPUs: 2, MemoryMiB: 256,
		Kernel: "/boot/vmlinuz", Initrd: "/boot/initrd", Cmdline: "console=ttyS0",
		Bridge: "br0", MAC: "52:54:00:00:00:01",
	}
}

func diskBoot() driver.DomainSpec {
	return driver.DomainSpec{Name: "vp-2", VCPUs: 1, MemoryMiB: 128, BaseImage: "/var/lib/virtpool/base.qcow2", Bridge: "br0"}
}

const testOverlay = "/var/lib/virtpool/vp-2.qcow2"

func TestChooseGuest(t *testing.T) {
	const (
		xenEmu    = "/usr/lib/xen-4.17/bin/qemu-system-i386"
		hvmloader = "/usr/lib/xen-4.17/boot/hvmloader"
	)
	tests := []struct {
		name, caps string // "" for no capabilities
		spec       driver.DomainSpec
		accel      string
		want       guest
		wantErr    string
	}{
		{name: "kvm kernel", caps: "caps-qemu-kvm.xml", spec: kernelBoot(), accel: driver.AccelKVM,
			want: guest{DomainType: "kvm", OSType: "hvm", Arch: "x86_64"}},
		{name: "kvm disk", caps: "caps-qemu-kvm.xml", spec: diskBoot(), accel: driver.AccelKVM,
			want: guest{DomainType: "kvm", OSType: "hvm", Arch: "x86_64"}},
		// KVM offered but the probe failed: TCG, as before.
		{name: "kvm host, tcg", caps: "caps-qemu-kvm.xml", spec: kernelBoot(), accel: driver.AccelTCG,
			want: guest{DomainType: "qemu", OSType: "hvm", Arch: "x86_64"}},
		{name: "tcg host", caps: "caps-qemu-tcg.xml", spec: diskBoot(), accel: driver.AccelTCG,
			want: guest{DomainType: "qemu", OSType: "hvm", Arch: "x86_64"}},
		// The test driver offers os_type xen with domain type test: not Xen.
		{name: "test driver", caps: "", spec: kernelBoot(), accel: driver.AccelKVM,
			want: guest{DomainType: "kvm", OSType: "hvm", Arch: "x86_64"}},
		{name: "xen pv+hvm, kernel: PV", caps: "caps-xen-pv-hvm.xml", spec: kernelBoot(), accel: driver.AccelKVM,
			want: guest{DomainType: "xen", OSType: "xen", Arch: "x86_64", Machine: "xenpv"}},
		{name: "xen pv+hvm, disk: HVM", caps: "caps-xen-pv-hvm.xml", spec: diskBoot(), accel: driver.AccelKVM,
			want: guest{DomainType: "xen", OSType: "hvm", Arch: "x86_64", Machine: "xenfv", Loader: hvmloader, Emulator: xenEmu}},
		{name: "xen pvh, kernel: PVH", caps: "caps-xen-pvh.xml", spec: kernelBoot(), accel: driver.AccelKVM,
			want: guest{DomainType: "xen", OSType: "xenpvh", Arch: "x86_64", Machine: "xenpvh"}},
		{name: "xen pvh, disk: HVM", caps: "caps-xen-pvh.xml", spec: diskBoot(), accel: driver.AccelKVM,
			want: guest{DomainType: "xen", OSType: "hvm", Arch: "x86_64", Machine: "xenfv", Loader: hvmloader, Emulator: xenEmu}},
		{name: "xen pv only, kernel: PV", caps: "caps-xen-pv.xml", spec: kernelBoot(), accel: driver.AccelKVM,
			want: guest{DomainType: "xen", OSType: "xen", Arch: "x86_64", Machine: "xenpv"}},
		{name: "xen pv only, disk: refused", caps: "caps-xen-pv.xml", spec: diskBoot(), accel: driver.AccelKVM,
			wantErr: "boots only as HVM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var caps *libvirtxml.Caps
			if tt.caps != "" {
				caps = loadCaps(t, tt.caps)
			} else {
				caps = testDriverCaps(t)
			}
			got, err := chooseGuest(caps, tt.spec, tt.accel)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("guest = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// testDriverCaps are the capabilities of libvirt's test:///default.
func testDriverCaps(t *testing.T) *libvirtxml.Caps {
	t.Helper()
	c, err := newTestDriver(t).conns.get(t.Context(), testURI)
	if err != nil {
		t.Fatal(err)
	}
	caps, err := capabilities(c)
	if err != nil {
		t.Fatal(err)
	}
	return caps
}

// xmlCase is one generated domain: a host's capabilities and a spec.
type xmlCase struct {
	name, caps string
	spec       driver.DomainSpec
	accel      string
	overlay    string
	osType     string // force this Xen OS type instead of chooseGuest's pick
}

func xmlCases() []xmlCase {
	return []xmlCase{
		{name: "kvm-kernel", caps: "caps-qemu-kvm.xml", spec: kernelBoot(), accel: driver.AccelKVM},
		{name: "kvm-disk", caps: "caps-qemu-kvm.xml", spec: diskBoot(), accel: driver.AccelKVM, overlay: testOverlay},
		{name: "tcg-kernel", caps: "caps-qemu-tcg.xml", spec: kernelBoot(), accel: driver.AccelTCG},
		{name: "tcg-disk", caps: "caps-qemu-tcg.xml", spec: diskBoot(), accel: driver.AccelTCG, overlay: testOverlay},
		{name: "xen-pv-kernel", caps: "caps-xen-pv-hvm.xml", spec: kernelBoot()},
		{name: "xen-pvh-kernel", caps: "caps-xen-pvh.xml", spec: kernelBoot()},
		// HVM with a kernel is chosen only where PV and PVH are missing.
		{name: "xen-hvm-kernel", caps: "caps-xen-pvh.xml", spec: kernelBoot(), osType: osHVM},
		{name: "xen-hvm-disk", caps: "caps-xen-pv-hvm.xml", spec: diskBoot(), overlay: testOverlay},
	}
}

func (c xmlCase) generate(t *testing.T) (guest, string) {
	t.Helper()
	caps := loadCaps(t, c.caps)
	g, err := chooseGuest(caps, c.spec, c.accel)
	if c.osType != "" {
		var ok bool
		if g, ok = xenGuest(caps, c.osType); !ok {
			t.Fatalf("%s offers no %s guest", c.caps, c.osType)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	x, err := domainXML(c.spec, g, c.overlay)
	if err != nil {
		t.Fatal(err)
	}
	return g, x
}

// TestDomainXMLQEMUUnchanged: QEMU guests are defined byte for byte as
// before Xen support (the golden files are that code's output).
func TestDomainXMLQEMUUnchanged(t *testing.T) {
	for _, c := range xmlCases()[:4] {
		t.Run(c.name, func(t *testing.T) {
			_, x := c.generate(t)
			want, err := os.ReadFile(filepath.Join("testdata", "domain-"+c.name+".golden.xml"))
			if err != nil {
				t.Fatal(err)
			}
			if x+"\n" != string(want) {
				t.Errorf("domain XML changed:\n%s\nwant:\n%s", x, want)
			}
		})
	}
}

func TestDomainXMLXenElements(t *testing.T) {
	for _, c := range xmlCases()[4:] {
		t.Run(c.name, func(t *testing.T) {
			g, x := c.generate(t)
			var dom libvirtxml.Domain
			if err := dom.Unmarshal(x); err != nil {
				t.Fatal(err)
			}
			checkXenCommon(t, &dom, g)
			if g.OSType == osHVM {
				checkXenHVM(t, &dom, c.overlay != "")
			} else {
				checkXenPV(t, &dom)
			}
		})
	}
}

func checkXenCommon(t *testing.T, dom *libvirtxml.Domain, g guest) {
	t.Helper()
	if dom.Type != "xen" || dom.OS.Type.Type != g.OSType || dom.OS.Type.Machine != g.Machine || dom.OS.Type.Arch != "x86_64" {
		t.Errorf("domain type %q, os %+v; want xen, %+v", dom.Type, dom.OS.Type, g)
	}
	d := dom.Devices
	if len(d.Controllers) != 0 {
		t.Errorf("controllers = %+v, want none (no USB)", d.Controllers)
	}
	if len(d.Interfaces) != 1 || d.Interfaces[0].Model != nil || d.Interfaces[0].Source.Bridge.Bridge != "br0" {
		t.Errorf("interfaces = %+v, want one on br0 with libxl's default model", d.Interfaces)
	}
	if dom.Features != nil && dom.Features.TCG != nil {
		t.Error("TCG feature on a Xen guest")
	}
	for _, disk := range d.Disks {
		if disk.Target.Dev != "xvda" || disk.Target.Bus != "xen" || disk.Driver.Name != "qemu" || disk.Driver.Type != "qcow2" {
			t.Errorf("disk = %+v %+v, want xvda on bus xen, qdisk qcow2", disk.Target, disk.Driver)
		}
	}
}

func checkXenPV(t *testing.T, dom *libvirtxml.Domain) {
	t.Helper()
	d := dom.Devices
	if d.Emulator != "" || dom.OS.Loader != nil || dom.Features != nil {
		t.Errorf("PV/PVH with emulator %q, loader %+v, features %+v; want none", d.Emulator, dom.OS.Loader, dom.Features)
	}
	if dom.OS.Kernel != "/boot/vmlinuz" || dom.OS.Initrd != "/boot/initrd" || dom.OS.Cmdline == "" || len(dom.OS.BootDevices) != 0 {
		t.Errorf("os = %+v, want direct kernel boot", dom.OS)
	}
	if len(d.Serials) != 0 || len(d.Consoles) != 1 || d.Consoles[0].Target.Type != "xen" {
		t.Errorf("serials %+v, consoles %+v; want only a xen console", d.Serials, d.Consoles)
	}
}

func checkXenHVM(t *testing.T, dom *libvirtxml.Domain, disk bool) {
	t.Helper()
	d := dom.Devices
	if d.Emulator != "/usr/lib/xen-4.17/bin/qemu-system-i386" || dom.OS.Loader == nil || dom.OS.Loader.Path != "/usr/lib/xen-4.17/boot/hvmloader" {
		t.Errorf("HVM emulator %q, loader %+v; want the capabilities'", d.Emulator, dom.OS.Loader)
	}
	// libxl turns off what HVM features the XML leaves out.
	if f := dom.Features; f == nil || f.ACPI == nil || f.APIC == nil || f.PAE == nil {
		t.Errorf("HVM features %+v, want acpi, apic, pae", f)
	}
	if len(d.Serials) != 1 || d.Serials[0].Log != nil || len(d.Consoles) != 1 || d.Consoles[0].Target.Type != "serial" {
		t.Errorf("serials %+v, consoles %+v; want a serial console without a QEMU log", d.Serials, d.Consoles)
	}
	if disk != (len(d.Disks) == 1 && len(dom.OS.BootDevices) == 1 && dom.OS.BootDevices[0].Dev == "hd") {
		t.Errorf("disks %+v, boot %+v; want a disk booted from: %v", d.Disks, dom.OS.BootDevices, disk)
	}
}

// TestDomainXMLValidates checks every generated domain against libvirt's
// own schemas with virt-xml-validate. It fails, rather than skips, when
// the tool is missing: the schema check is what stands for a Xen host here.
func TestDomainXMLValidates(t *testing.T) {
	for _, tool := range []struct{ bin, pkg string }{
		{"virt-xml-validate", "libvirt-clients"},
		{"xmllint", "libxml2-utils"}, // what virt-xml-validate runs
	} {
		if _, err := exec.LookPath(tool.bin); err != nil {
			t.Fatalf("%s not found (%v): install %s (make deps does)", tool.bin, err, tool.pkg)
		}
	}
	dir := t.TempDir()
	for _, c := range xmlCases() {
		t.Run(c.name, func(t *testing.T) {
			_, x := c.generate(t)
			f := filepath.Join(dir, c.name+".xml")
			if err := os.WriteFile(f, []byte(x), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("virt-xml-validate", f, "domain").CombinedOutput()
			if err != nil {
				t.Errorf("virt-xml-validate: %v\n%s\n%s", err, out, x)
			}
		})
	}
}

// TestDomainXMLKernelWithDisk: a kernel booted with a disk (the lab's test
// guests with one) gets the overlay as a data disk, vda on virtio, and
// boots the kernel: no boot device.
func TestDomainXMLKernelWithDisk(t *testing.T) {
	s := kernelBoot()
	s.BaseImage = "/var/lib/virtpool/base.qcow2"
	c := xmlCase{name: "tcg-kernel-disk", caps: "caps-qemu-tcg.xml", spec: s, accel: driver.AccelTCG, overlay: "/var/lib/virtpool/vp-1.qcow2"}
	_, x := c.generate(t)
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	if dom.OS.Kernel != s.Kernel || dom.OS.Initrd != s.Initrd || len(dom.OS.BootDevices) != 0 {
		t.Errorf("os = %+v, want direct kernel boot and no boot device", dom.OS)
	}
	d := dom.Devices.Disks
	if len(d) != 1 || d[0].Target.Dev != "vda" || d[0].Target.Bus != "virtio" || d[0].Source.File.File != c.overlay || d[0].Driver.Cache != "none" {
		t.Errorf("disks = %+v, want the overlay as vda on virtio, cache=none", d)
	}
}

// TestHardwareVirt: KVM is tried only where the host CPU has VT-x or AMD-V
// (an x86 host without them runs firmware under KVM-PVM, not Linux).
func TestHardwareVirt(t *testing.T) {
	x86 := func(flags ...string) *libvirtxml.Caps {
		cpu := &libvirtxml.CapsHostCPU{Arch: "x86_64"}
		for _, f := range flags {
			cpu.FeatureFlags = append(cpu.FeatureFlags, libvirtxml.CapsHostCPUFeatureFlag{Name: f})
		}
		return &libvirtxml.Caps{Host: libvirtxml.CapsHost{CPU: cpu}}
	}
	for _, tc := range []struct {
		name string
		caps *libvirtxml.Caps
		want bool
	}{
		{"intel host (testdata)", loadCaps(t, "caps-qemu-kvm.xml"), true},
		{"vmx", x86("ss", "vmx"), true},
		{"svm", x86("svm"), true},
		{"kvm-pvm: hypervisor, no vmx or svm", x86("vme", "hypervisor", "xsaves"), false},
		{"aarch64: left to the probe", &libvirtxml.Caps{Host: libvirtxml.CapsHost{CPU: &libvirtxml.CapsHostCPU{Arch: "aarch64"}}}, true},
		{"no cpu element (test driver)", &libvirtxml.Caps{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := hardwareVirt(tc.caps)
			if got != tc.want {
				t.Fatalf("hardwareVirt = %v (%q), want %v", got, reason, tc.want)
			}
			if !got && reason == "" {
				t.Error("no reason given for refusing KVM")
			}
		})
	}
}
