package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Every lab host has a CPU and memory budget of its own, so that one host's
// guests cannot take another's CPU: a cgroup per host that its libvirtd,
// virtlogd and QEMU processes (children of the host's start script) live
// in. The budgets are also the capacity the lab's hosts declare
// (Host.CPUs, Host.MemoryMiB), so virtpool plans with what each host can
// really give, as on separate machines.
const (
	// HostCPUs is each lab host's CPU budget in cores. Three hosts take
	// 1.5 of a 2-core machine, leaving the rest to the tests, the
	// autoscaler agent and the machine.
	HostCPUs = 0.5
	// HostMemoryMiB is each host's memory limit; hostPlannedMemoryMiB of it
	// is declared for guests, the rest is QEMU's own overhead (about 100
	// MiB per TCG guest beside its RAM).
	HostMemoryMiB        = 4096
	hostPlannedMemoryMiB = 2048
	// hostVCPURatio lets a half-core host carry 8 one-vCPU guests (the
	// planner's default, 4 per core, would allow 2): lab guests idle at
	// well under 1% of a core.
	hostVCPURatio = 16
	// cpuPeriod is the CFS period: short, so that a host at its budget is
	// held back in slices of a few milliseconds, not stalled for tens of
	// them (which would show as migration downtime and ping loss).
	cpuPeriodUs = 10000
	// cpuShares (v1) / cpuWeight (v2) put the hosts ahead of the machine's
	// other processes up to their quota, so a busy machine (a compiler
	// beside the tests) does not shrink a host below its budget.
	cpuShares = 8192
	cpuWeight = 800
	// cgroupName is the lab's group, below the cgroup of the process that
	// brings the lab up; each host is a group in it.
	cgroupName = "virtpool-lab"
)

// Cgroups says where a host's processes are put: one directory per
// controller hierarchy (one for cgroup v2).
type Cgroups struct {
	Version int      `json:"version"` // 1 or 2
	Dirs    []string `json:"dirs"`    // the host's group, in each hierarchy
}

// hierarchy is a mounted cgroup hierarchy and this process's group in it,
// as a directory.
type hierarchy struct {
	self        string
	controllers []string
}

// groupDir is the directory of group path (as /proc/self/cgroup names it)
// in a hierarchy mounted at mount whose root is root.
func groupDir(mount, root, path string) string {
	rel := strings.TrimPrefix(path, root)
	if root == "/" {
		rel = path
	}
	return filepath.Join(mount, rel)
}

// cgroupHierarchies finds the cpu and memory hierarchies of this process.
func cgroupHierarchies() (version int, hs []hierarchy, err error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, nil, err
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, nil, err
	}
	return parseHierarchies(string(self), string(mi), func(mount string) []string {
		b, _ := os.ReadFile(filepath.Join(mount, "cgroup.controllers"))
		return strings.Fields(string(b))
	})
}

// parseHierarchies reads /proc/self/cgroup and /proc/self/mountinfo;
// v2Controllers lists what a cgroup2 mount offers. It detects v1 and v2;
// on a hybrid machine (v1 controllers, an empty v2) v1 is used, since the
// v2 tree then has no controllers.
func parseHierarchies(selfCgroup, mountinfo string, v2Controllers func(mount string) []string) (int, []hierarchy, error) {
	self := map[string]string{} // controller list ("cpu,cpuacct", "" for v2) → own path
	for _, line := range strings.Split(selfCgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 {
			self[parts[1]] = parts[2]
		}
	}
	var v1 []hierarchy
	var v2 *hierarchy
	for _, line := range strings.Split(mountinfo, "\n") {
		// id parent dev root mount opts... - fstype source superopts
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		root, mount := pf[3], pf[4]
		switch qf[0] {
		case "cgroup2":
			if hasAll(v2Controllers(mount), "cpu", "memory") {
				v2 = &hierarchy{self: groupDir(mount, root, self[""]), controllers: []string{"cpu", "memory"}}
			}
		case "cgroup":
			var ctls []string
			for _, o := range strings.Split(qf[2], ",") {
				if o == "cpu" || o == "memory" || o == "cpuacct" {
					ctls = append(ctls, o)
				}
			}
			if !hasAny(ctls, "cpu", "memory") {
				continue
			}
			own, ok := self[strings.Join(ctls, ",")]
			if !ok {
				// /proc/self/cgroup names the hierarchy by all its
				// controllers, in the kernel's order.
				for k, p := range self {
					if hasAll(strings.Split(k, ","), ctls...) {
						own, ok = p, true
					}
				}
			}
			if ok {
				v1 = append(v1, hierarchy{self: groupDir(mount, root, own), controllers: ctls})
			}
		}
	}
	var hasCPU, hasMem bool
	for _, h := range v1 {
		hasCPU = hasCPU || hasAny(h.controllers, "cpu")
		hasMem = hasMem || hasAny(h.controllers, "memory")
	}
	switch {
	case hasCPU && hasMem:
		return 1, v1, nil
	case v2 != nil:
		return 2, []hierarchy{*v2}, nil
	}
	return 0, nil, errors.New("no cgroup hierarchy with the cpu and memory controllers (looked at /proc/self/mountinfo)")
}

func hasAny(list []string, want ...string) bool {
	for _, w := range want {
		for _, l := range list {
			if l == w {
				return true
			}
		}
	}
	return false
}

func hasAll(list []string, want ...string) bool {
	for _, w := range want {
		if !hasAny(list, w) {
			return false
		}
	}
	return true
}

// makeCgroups creates host's groups with its budget and returns them.
func makeCgroups(host string) (Cgroups, error) {
	version, hs, err := cgroupHierarchies()
	if err != nil {
		return Cgroups{}, err
	}
	cg := Cgroups{Version: version}
	quota := strconv.Itoa(int(HostCPUs * cpuPeriodUs))
	limit := strconv.FormatInt(HostMemoryMiB<<20, 10)
	for _, h := range hs {
		dir := filepath.Join(h.self, cgroupName, host)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return cg, fmt.Errorf("cgroup of host %s: %w", host, err)
		}
		var settings [][2]string
		if version == 2 {
			// The lab's group must pass the controllers down to the hosts.
			parent := filepath.Dir(dir)
			for _, p := range []string{filepath.Dir(parent), parent} {
				if err := os.WriteFile(filepath.Join(p, "cgroup.subtree_control"), []byte("+cpu +memory"), 0o644); err != nil {
					return cg, fmt.Errorf("cgroup of host %s: enable cpu and memory in %s: %w", host, p, err)
				}
			}
			settings = [][2]string{{"cpu.max", quota + " " + strconv.Itoa(cpuPeriodUs)},
				{"cpu.weight", strconv.Itoa(cpuWeight)}, {"memory.max", limit}}
		} else {
			if hasAny(h.controllers, "cpu") {
				settings = append(settings, [2]string{"cpu.cfs_period_us", strconv.Itoa(cpuPeriodUs)},
					[2]string{"cpu.cfs_quota_us", quota}, [2]string{"cpu.shares", strconv.Itoa(cpuShares)})
			}
			if hasAny(h.controllers, "memory") {
				settings = append(settings, [2]string{"memory.limit_in_bytes", limit})
			}
		}
		for _, kv := range settings {
			if err := os.WriteFile(filepath.Join(dir, kv[0]), []byte(kv[1]), 0o644); err != nil {
				return cg, fmt.Errorf("cgroup of host %s: set %s to %s: %w", host, filepath.Join(dir, kv[0]), kv[1], err)
			}
		}
		cg.Dirs = append(cg.Dirs, dir)
	}
	return cg, nil
}

// removeCgroups removes the lab's groups (their processes must be gone),
// wherever a lab made them: the ones lab.json names, and the lab's group
// below this process's own.
func removeCgroups(known []Cgroups) error {
	dirs := map[string]bool{}
	for _, cg := range known {
		for _, d := range cg.Dirs {
			dirs[filepath.Dir(d)] = true
		}
	}
	if _, hs, err := cgroupHierarchies(); err == nil {
		for _, h := range hs {
			dirs[filepath.Join(h.self, cgroupName)] = true
		}
	}
	var errs []error
	for d := range dirs {
		hosts, _ := filepath.Glob(filepath.Join(d, "h*"))
		for _, h := range hosts {
			if err := os.Remove(h); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", h, err))
			}
		}
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// CPUUsage is the CPU time the host's processes have used: the sum of
// their user and system time (/proc/PID/stat), which every cgroup version
// and layout has (v1 may have no cpuacct group for the host).
func (c Cgroups) CPUUsage() (time.Duration, error) {
	if len(c.Dirs) == 0 {
		return 0, errors.New("no cgroup")
	}
	procs, err := os.ReadFile(filepath.Join(c.Dirs[0], "cgroup.procs"))
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, f := range strings.Fields(string(procs)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return 0, fmt.Errorf("cgroup.procs: %q is not a pid", f)
		}
		d, err := ProcessCPU(pid)
		if errors.Is(err, os.ErrNotExist) {
			continue // it exited
		}
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
}

// ProcessCPU is a process's user and system time so far.
func ProcessCPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	d, err := parseProcCPU(string(stat))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return d, nil
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times on Linux.
const clockTick = 10 * time.Millisecond

// ProcStatFields are /proc/PID/stat's fields after the command name
// (field 2, which may hold spaces): state, ppid, …
func ProcStatFields(stat string) []string {
	return strings.Fields(stat[strings.LastIndexByte(stat, ')')+1:])
}

// parseProcCPU is a process's user + system time from its /proc/PID/stat
// (fields 14 and 15).
func parseProcCPU(stat string) (time.Duration, error) {
	f := ProcStatFields(stat)
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a tick count", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}
