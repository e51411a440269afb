package lab

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseHierarchies(t *testing.T) {
	const (
		// These machines: v1 controllers, each mounted alone, and an empty
		// v2 tree beside them.
		hybridSelf = "4:memory:/sandbox/x\n3:cpuacct:/\n1:cpu:/\n0::/\n"
		hybridMI   = `32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
		// A common v1 layout: cpu and cpuacct in one hierarchy.
		joinedSelf = "5:memory:/\n2:cpu,cpuacct:/user\n"
		joinedMI   = `30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
`
		// Pure v2, inside a container whose cgroup root is its own group.
		v2Self = "0::/ctr/sub\n"
		v2MI   = "40 30 0:35 /ctr /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
	)
	all := func(string) []string { return []string{"cpuset", "cpu", "io", "memory", "pids"} }
	none := func(string) []string { return nil }
	tests := []struct {
		name        string
		self, mi    string
		v2          func(string) []string
		wantVersion int
		wantDirs    []string
		wantErr     string
	}{
		{"hybrid uses v1", hybridSelf, hybridMI, none, 1,
			[]string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory/sandbox/x"}, ""},
		{"cpu and cpuacct joined", joinedSelf, joinedMI, none, 1,
			[]string{"/sys/fs/cgroup/cpu,cpuacct/user", "/sys/fs/cgroup/memory"}, ""},
		{"v2, mount root below the tree's", v2Self, v2MI, all, 2, []string{"/sys/fs/cgroup/sub"}, ""},
		{"v2 without the controllers", v2Self, v2MI, none, 0, nil, "no cgroup hierarchy with the cpu and memory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, hs, err := parseHierarchies(tc.self, tc.mi, tc.v2)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var dirs []string
			for _, h := range hs {
				dirs = append(dirs, h.self)
			}
			if v != tc.wantVersion || !reflect.DeepEqual(dirs, tc.wantDirs) {
				t.Errorf("version %d, groups %v; want %d, %v", v, dirs, tc.wantVersion, tc.wantDirs)
			}
		})
	}
}

func TestParseProcCPU(t *testing.T) {
	tests := []struct {
		stat    string
		want    time.Duration
		wantErr bool
	}{
		{"4242 (qemu-system-x86) S 1 4242 4242 0 -1 4194560 9000 0 0 0 150 50 0 0 20 0 5 0 100 0 0", 2 * time.Second, false},
		{"7 (a b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0", 70 * time.Millisecond, false},
		{"7 (x) R 1 7", 0, true},
		{"7 (x) R 1 7 7 0 -1 0 0 0 0 0 x 4 0 0", 0, true},
	}
	for _, tc := range tests {
		got, err := parseProcCPU(tc.stat)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseProcCPU(%q) = %v, %v; want %v (error %v)", tc.stat, got, err, tc.want, tc.wantErr)
		}
	}
}
