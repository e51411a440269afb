package virt

import (
	"errors"
	"fmt"

	"libvirt.org/go/libvirtxml"

	"github.com/virtpool/virtpool/driver"
)

// guestArch is the one guest architecture virtpool defines domains for.
const guestArch = "x86_64"

// libvirt's OS types (<os><type>) and the Xen domain type.
const (
	osHVM    = "hvm"    // full virtualization: QEMU/KVM, Xen HVM
	osXenPV  = "xen"    // Xen paravirtualized
	osXenPVH = "xenpvh" // Xen PVH: HVM container, no device model
	virtXen  = "xen"
)

// guest is how a host runs a domain: libvirt's domain and OS types and, for
// Xen, what the host's capabilities name for that OS type.
type guest struct {
	DomainType string // kvm, qemu or xen
	OSType     string // hvm, xen (PV) or xenpvh
	Arch       string
	Machine    string // Xen only: xenfv, xenpv, xenpvh ("" lets libvirt choose)
	Loader     string // Xen HVM: the firmware (hvmloader)
	Emulator   string // Xen HVM: the device model
}

func (g guest) xen() bool { return g.DomainType == virtXen }

// chooseGuest picks the domain and OS type for spec on a host with these
// capabilities, accel being chooseAccel's answer. A host is a Xen host when
// its capabilities offer domain type xen; every other host (QEMU, the test
// driver) gets what virtpool always defined: hvm, kvm or qemu (TCG) by accel.
func chooseGuest(caps *libvirtxml.Caps, s driver.DomainSpec, accel string) (guest, error) {
	if caps != nil && offersXen(caps) {
		return chooseXen(caps, s)
	}
	g := guest{DomainType: "kvm", OSType: osHVM, Arch: guestArch}
	if accel == driver.AccelTCG {
		g.DomainType = "qemu"
	}
	return g, nil
}

func offersXen(caps *libvirtxml.Caps) bool {
	for i := range caps.Guests {
		if xenDomain(&caps.Guests[i].Arch) != nil {
			return true
		}
	}
	return false
}

// xenPreference is the order OS types are tried in on Xen. A kernel boots
// best as PVH (no PV MMU, no device model), then PV; a disk image needs
// firmware to boot it, which only HVM has (virtpool sets no PV bootloader:
// pygrub runs the guest's config in dom0).
func xenPreference(s driver.DomainSpec) []string {
	if s.Kernel != "" {
		return []string{osXenPVH, osXenPV, osHVM}
	}
	return []string{osHVM}
}

func chooseXen(caps *libvirtxml.Caps, s driver.DomainSpec) (guest, error) {
	want := xenPreference(s)
	for _, t := range want {
		if g, ok := xenGuest(caps, t); ok {
			return g, nil
		}
	}
	if s.Kernel == "" {
		return guest{}, errors.New("xen host offers no x86_64 hvm guest: a disk image (base_image) boots only as HVM on Xen; boot a kernel instead")
	}
	return guest{}, fmt.Errorf("xen host offers none of %v for x86_64", want)
}

// xenGuest finds the capabilities' x86_64 Xen guest of an OS type.
func xenGuest(caps *libvirtxml.Caps, osType string) (guest, bool) {
	for i := range caps.Guests {
		cg := &caps.Guests[i]
		if cg.OSType != osType || cg.Arch.Name != guestArch {
			continue
		}
		dom := xenDomain(&cg.Arch)
		if dom == nil {
			continue
		}
		g := guest{DomainType: virtXen, OSType: osType, Arch: guestArch, Machine: firstMachine(dom.Machines, cg.Arch.Machines)}
		if osType == osHVM {
			// PV and PVH run no device model for the guest itself; HVM
			// needs the firmware and emulator the host names.
			g.Loader = cg.Arch.Loader
			g.Emulator = firstNonEmpty(dom.Emulator, cg.Arch.Emulator)
		}
		return g, true
	}
	return guest{}, false
}

func xenDomain(a *libvirtxml.CapsGuestArch) *libvirtxml.CapsGuestDomain {
	for i := range a.Domains {
		if a.Domains[i].Type == virtXen {
			return &a.Domains[i]
		}
	}
	return nil
}

// firstMachine is the domain's own machine list if it has one (libvirt's
// override of the arch's), else the arch's.
func firstMachine(lists ...[]libvirtxml.CapsGuestMachine) string {
	for _, l := range lists {
		if len(l) > 0 {
			return l[0].Name
		}
	}
	return ""
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
