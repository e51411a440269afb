package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Config says what lab to bring up.
type Config struct {
	Hosts int
	// GuestDir holds the guest image (vmlinux, initramfs.img, cmdline),
	// built by BuildGuest if empty.
	GuestDir string
	// NoBudgets lets every host use the whole machine: no cgroups, and
	// virtpool plans with what libvirt reports. For runs that measure
	// migration rather than placement: see lab/cgroup.go.
	NoBudgets bool
	// Transport is how virtpool and the hosts reach the hosts' libvirtds
	// ("": Unix).
	Transport Transport
	// ShipBin, if set, is the virtpool binary each host runs 'ship serve'
	// of: its checkpoint helper (ShipPort).
	ShipBin string
	Log     hclog.Logger
}

// Up brings the lab up, or completes a partial one: it is idempotent.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	log := cfg.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if cfg.Hosts < 2 {
		return nil, fmt.Errorf("lab needs at least 2 hosts, got %d", cfg.Hosts)
	}
	if cfg.Hosts > 50 {
		return nil, fmt.Errorf("lab supports at most 50 hosts, got %d", cfg.Hosts)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the lab needs root (network namespaces, libvirtd)")
	}
	transport, err := ParseTransport(string(cfg.Transport))
	if err != nil {
		return nil, err
	}
	bins := []string{"ip", "unshare", "libvirtd", "virtlogd", "qemu-system-x86_64", "tini", "virsh", "certtool"}
	if cfg.ShipBin != "" {
		bins = append(bins, cfg.ShipBin, "socat")
	}
	switch transport {
	case TLS:
		bins = append(bins, "saslpasswd2", "socat")
	case SSH:
		bins = append(bins, "ssh", "ssh-keygen", "/usr/sbin/sshd", "virt-ssh-helper", "socat")
	}
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s not found: run 'make deps' (or install Debian's libvirt-daemon, qemu-system-x86, iproute2, util-linux, tini, libvirt-clients, gnutls-bin, sasl2-bin, openssh-server, socat)", bin)
		}
	}
	l := &Lab{ClientNamespace: clientNS, ClientIP: clientIP, ImageDir: filepath.Join(Dir, "images")}
	old, loadErr := Load()
	up := loadErr == nil // a lab (or part of one) is up already
	if up && len(old.Hosts) != cfg.Hosts {
		return nil, fmt.Errorf("a lab with %d hosts is up; run 'virtpool lab down' first", len(old.Hosts))
	}
	l.Budgets = !cfg.NoBudgets
	if up && old.Budgets != l.Budgets {
		return nil, fmt.Errorf("a lab %s host budgets is up, this needs one %s; run 'virtpool lab down' first",
			withOrWithout(old.Budgets), withOrWithout(l.Budgets))
	}
	if up && old.Transport() != transport {
		return nil, fmt.Errorf("a lab reached over %s is up, this needs one over %s; run 'virtpool lab down' first", old.Transport(), transport)
	}
	if up && cfg.GuestDir == "" {
		l.Image = old.Image // keep the image the lab was started with
	} else {
		if err := os.MkdirAll(l.ImageDir, 0o755); err != nil {
			return nil, err
		}
		if l.Image, err = installImage(ctx, log, cfg.GuestDir, l.ImageDir); err != nil {
			return nil, err
		}
	}

	start := time.Now()
	if err := ensureNS(ctx, switchNS); err != nil {
		return nil, err
	}
	if err := ensureLink(ctx, switchNS, "sw0", "bridge"); err != nil {
		return nil, err
	}
	if err := plug(ctx, clientNS, "client", clientIP, false); err != nil {
		return nil, err
	}
	var hosts []Host
	for i := 1; i <= cfg.Hosts; i++ {
		h := newHost(i, l.Budgets, transport)
		h.ShipBin = cfg.ShipBin
		hosts = append(hosts, h)
	}
	if err := prepareTransport(ctx, transport, hosts); err != nil {
		return nil, err
	}
	for _, h := range hosts {
		if l.Budgets {
			if h.Cgroups, err = makeCgroups(h.Name); err != nil {
				return nil, err
			}
		}
		if err := plug(ctx, h.Namespace, h.Name, h.IP, true); err != nil {
			return nil, err
		}
		// A partitioned host is up only once healed (plug has set its
		// switch port up again; its libvirtd is still stopped).
		if err := Heal(ctx, h); err != nil {
			return nil, err
		}
		if err := startDaemons(ctx, h); err != nil {
			return nil, fmt.Errorf("host %s: %w", h.Name, err)
		}
		if err := startShip(ctx, h); err != nil {
			return nil, err
		}
		if err := startRelays(ctx, transport, h); err != nil {
			return nil, err
		}
		l.Hosts = append(l.Hosts, h)
	}
	for _, h := range l.Hosts {
		if err := waitSocket(ctx, h.Socket()); err != nil {
			return nil, fmt.Errorf("host %s: libvirtd did not start (see %s): %w", h.Name, filepath.Join(h.StateDir, "log", "libvirtd.log"), err)
		}
		if h.ShipBin != "" {
			if err := waitShip(ctx, h); err != nil {
				return nil, err
			}
		}
	}
	if err := warm(ctx, l.Hosts); err != nil {
		return nil, err
	}
	if err := l.save(); err != nil {
		return nil, err
	}
	log.Info("lab up", "hosts", len(l.Hosts), "took", time.Since(start).Round(time.Millisecond))
	return l, nil
}

func withOrWithout(budgets bool) string {
	if budgets {
		return "with"
	}
	return "without"
}

// newHost describes lab host i; with budgets it declares its budget as its
// capacity, without it plans with what libvirt reports (the machine).
func newHost(i int, budgets bool, t Transport) Host {
	name := fmt.Sprintf("h%d", i)
	ip := fmt.Sprintf("%s%d", subnet, hostIPBase+i)
	state := filepath.Join(Dir, "hosts", name)
	h := Host{
		Name:      name,
		Namespace: nsPrefix + name,
		IP:        ip,
		// Distinct host UUIDs: libvirt refuses to migrate to "the same host".
		UUID:      fmt.Sprintf("7669f0a1-1ab0-4000-8000-%012d", i),
		MigrateTo: "tcp://" + ip,
		Bridge:    GuestBridge,
		StateDir:  state,
		Transport: t,
	}
	h.Loopback = loopbackIP(i)
	h.uris(t)
	if budgets {
		h.CPUs, h.MemoryMiB, h.VCPURatio = HostCPUs, hostPlannedMemoryMiB, hostVCPURatio
	}
	return h
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func nsExists(ns string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", ns))
	return err == nil
}

func ensureNS(ctx context.Context, ns string) error {
	if nsExists(ns) {
		return nil
	}
	if err := run(ctx, "ip", "netns", "add", ns); err != nil {
		return err
	}
	return run(ctx, "ip", "-n", ns, "link", "set", "lo", "up")
}

func linkExists(ctx context.Context, ns, link string) bool {
	return exec.CommandContext(ctx, "ip", "-n", ns, "link", "show", link).Run() == nil
}

func ensureLink(ctx context.Context, ns, link, kind string) error {
	if !linkExists(ctx, ns, link) {
		if err := run(ctx, "ip", "-n", ns, "link", "add", link, "type", kind); err != nil {
			return err
		}
	}
	return run(ctx, "ip", "-n", ns, "link", "set", link, "up")
}

// plug creates namespace ns and connects it to the switch with a veth pair
// (eth0 inside). With bridged, eth0 joins bridge br0, which carries the
// address and which guests join too.
func plug(ctx context.Context, ns, name, ip string, bridged bool) error {
	if err := ensureNS(ctx, ns); err != nil {
		return err
	}
	swEnd := switchPort(name)
	if !linkExists(ctx, switchNS, swEnd) {
		if err := run(ctx, "ip", "-n", switchNS, "link", "add", swEnd, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
			return err
		}
	}
	if err := run(ctx, "ip", "-n", switchNS, "link", "set", swEnd, "master", "sw0", "up"); err != nil {
		return err
	}
	// A fixed, low MAC: a Linux bridge takes the lowest MAC of its ports
	// unless one is set, and a migrating guest's tap (fe:54:…, the same on
	// both hosts) would otherwise become both hosts' bridge address
	// whenever eth0's random MAC is higher, cutting the hosts apart.
	mac, err := hostMAC(ip)
	if err != nil {
		return err
	}
	if err := run(ctx, "ip", "-n", ns, "link", "set", "eth0", "address", mac); err != nil {
		return err
	}
	dev := "eth0"
	if bridged {
		if err := ensureLink(ctx, ns, GuestBridge, "bridge"); err != nil {
			return err
		}
		if err := run(ctx, "ip", "-n", ns, "link", "set", GuestBridge, "address", mac); err != nil {
			return err
		}
		if err := run(ctx, "ip", "-n", ns, "link", "set", "eth0", "master", GuestBridge); err != nil {
			return err
		}
		dev = GuestBridge
	}
	if err := run(ctx, "ip", "-n", ns, "link", "set", "eth0", "up"); err != nil {
		return err
	}
	addr := fmt.Sprintf("%s/%d", ip, prefixLen)
	out, _ := exec.CommandContext(ctx, "ip", "-n", ns, "-o", "addr", "show", "dev", dev).Output()
	if !strings.Contains(string(out), " "+addr+" ") {
		return run(ctx, "ip", "-n", ns, "addr", "add", addr, "dev", dev)
	}
	return nil
}

// switchPort is the switch's end of the veth pair that plugs namespace
// name (h1, client) into the switch: its port on bridge sw0.
func switchPort(name string) string { return name + "-sw" }

// hostMAC is the lab's MAC for a namespace address: locally administered,
// 02:00 then the four address bytes.
func hostMAC(ip string) (string, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		return "", fmt.Errorf("lab address %q: want IPv4", ip)
	}
	b := a.As4()
	return fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3]), nil
}

var (
	libvirtdConf = template.Must(template.New("libvirtd.conf").Parse(`# virtpool lab host {{.Name}}
{{if eq .Transport "tls"}}listen_tls = 1
listen_tcp = 0
auth_tls = "sasl"
key_file = "{{.PKIDir}}/server-key.pem"
cert_file = "{{.PKIDir}}/server-cert.pem"
ca_file = "{{.PKIDir}}/ca-cert.pem"
{{else if eq .Transport "ssh"}}listen_tls = 0
listen_tcp = 0
{{else}}listen_tls = 0
listen_tcp = 1
auth_tcp = "none"
{{end}}listen_addr = "{{.IP}}"
auth_unix_rw = "none"
host_uuid = "{{.UUID}}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
`))
	qemuConf = template.Must(template.New("qemu.conf").Parse(`# virtpool lab host {{.Name}}: no confinement, the lab is one trusted machine
user = "root"
group = "root"
security_driver = "none"
namespaces = []
cgroup_controllers = []
dynamic_ownership = 0
remember_owner = 0
stdio_handler = "logd"
migration_host = "{{.IP}}"
migration_address = "{{.IP}}"
{{if eq .Transport "tls"}}# Every migration stream encrypted: QEMU refuses a migration without VIR_MIGRATE_TLS.
migrate_tls_x509_cert_dir = "{{.PKIDir}}"
migrate_tls_x509_verify = 1
migrate_tls_force = 1
{{end}}`))
	// hostScript runs inside the host's network namespace, in a new mount
	// and UTS namespace: it gives libvirt private directories and starts
	// the daemons, which keep the namespaces alive.
	hostScript = template.Must(template.New("host.sh").Parse(`set -e
hostname {{.Name}}
for d in etc run lib cache log; do mkdir -p {{.StateDir}}/$d; done
mkdir -p {{.StateDir}}/log/qemu {{.StateDir}}/lib/qemu {{.StateDir}}/etc/qemu
mount --bind {{.StateDir}}/etc /etc/libvirt
mount --bind {{.StateDir}}/run /run/libvirt
mount --bind {{.StateDir}}/lib /var/lib/libvirt
mount --bind {{.StateDir}}/cache /var/cache/libvirt
mount --bind {{.StateDir}}/log /var/log/libvirt
mount --bind {{.StateDir}}/passwd /etc/passwd
mount --bind {{.StateDir}}/group /etc/group
# A virtlogd that survived its libvirtd keeps serving; a second one would
# fail on the pidfile lock, which is fine.
virtlogd -d -p /run/libvirt/virtlogd.pid || true
# libvirtd runs under tini, a child subreaper, which reaps the QEMU processes
# libvirtd daemonises the moment they exit. Without it they are reaped by
# the machine's init, which here takes about a second, and libvirt waits
# for a stopped QEMU to be gone: every migration would last a second more.
{{if eq .Transport "ssh"}}mkdir -p /run/sshd # sshd's privilege separation directory
/usr/sbin/sshd -f {{.SSHDir}}/sshd_config -E /var/log/libvirt/sshd.log
{{end}}{{if eq .Transport "tls"}}export SASL_CONF_PATH={{.SASLDir}}
{{end}}setsid tini -s -- libvirtd --listen -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid \
	</dev/null >>/var/log/libvirt/libvirtd.out 2>&1 &
`))
)

// warm has each host's libvirtd probe the host and QEMU (under a second
// each, then cached), as a real host's daemon has long done by the time it
// starts guests: the first guest or migration on a host does not pay it.
func warm(ctx context.Context, hosts []Host) error {
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, probe := range [][]string{{"capabilities"}, {"domcapabilities", "--virttype", "qemu"}} {
				args := append([]string{"virsh", "-c", h.URI}, probe...)
				if h.Transport == TLS {
					// virsh logs in as libvirt's auth.conf says.
					args = append([]string{"LIBVIRT_AUTH_FILE=" + authConf}, args...)
				}
				if err := run(ctx, "env", args...); err != nil {
					errs[i] = fmt.Errorf("host %s: libvirtd cannot probe the host and QEMU: %w", h.Name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startDaemons starts the host's libvirtd and virtlogd unless its libvirtd
// already answers.
func startDaemons(ctx context.Context, h Host) error {
	if c, err := net.DialTimeout("unix", h.Socket(), time.Second); err == nil {
		c.Close()
		return nil
	}
	// Keep run/: after a crash of libvirtd it holds the state of guests
	// whose QEMU still runs, which the new libvirtd picks up again.
	for _, d := range []string{"etc", "run", "lib", "cache", "log"} {
		if err := os.MkdirAll(filepath.Join(h.StateDir, d), 0o755); err != nil {
			return err
		}
	}
	for _, d := range []string{"/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	files := map[string]*template.Template{"etc/libvirtd.conf": libvirtdConf, "etc/qemu.conf": qemuConf}
	for name, t := range files {
		var b bytes.Buffer
		if err := t.Execute(&b, h); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(h.StateDir, name), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	// libvirt's QEMU driver looks up its built-in user before reading
	// qemu.conf; give it one in the host's own /etc/passwd and /etc/group.
	if err := withExtraLine("/etc/passwd", filepath.Join(h.StateDir, "passwd"), "libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin"); err != nil {
		return err
	}
	if err := withExtraLine("/etc/group", filepath.Join(h.StateDir, "group"), "kvm:x:64054:\nlibvirt-qemu:x:64055:"); err != nil {
		return err
	}
	var script bytes.Buffer
	if err := hostScript.Execute(&script, h); err != nil {
		return err
	}
	// The host's budget: the shell joins the host's cgroups, then becomes
	// (exec, same process) the namespaced script, so every daemon and QEMU
	// the script starts is in them. It joins first because 'ip netns exec'
	// mounts a sysfs of the namespace's own, without /sys/fs/cgroup.
	var join strings.Builder
	for _, d := range h.Cgroups.Dirs {
		fmt.Fprintf(&join, "echo $$ > %s/cgroup.procs && ", d)
	}
	return run(ctx, "sh", "-c", join.String()+`exec ip netns exec "$0" unshare --mount --uts --propagation private -- sh -c "$1"`,
		h.Namespace, script.String())
}

func withExtraLine(src, dst, extra string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, append(b, []byte(extra+"\n")...), 0o644)
}

func waitSocket(ctx context.Context, path string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
