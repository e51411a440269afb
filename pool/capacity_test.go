package pool

import (
	"strings"
	"testing"
)

func TestCapacityOf(t *testing.T) {
	const gib = uint64(1) << 30
	tests := []struct {
		name      string
		c         Capacity
		cpus      int
		mem       uint64
		wantCores float64
		wantMem   int64
		wantErr   string
	}{
		{name: "zero plans with the whole host", cpus: 8, mem: 32 * gib, wantCores: 8, wantMem: 32 << 30},
		{name: "override", c: Capacity{CPUs: 0.5, MemoryMiB: 2048}, cpus: 2, mem: 24 * gib, wantCores: 0.5, wantMem: 2 << 30},
		{name: "reserved", c: Capacity{ReservedCPUs: 2, ReservedMemoryMiB: 4096}, cpus: 16, mem: 64 * gib,
			wantCores: 14, wantMem: 60 << 30},
		{name: "override less reserved", c: Capacity{CPUs: 4, ReservedCPUs: 1, MemoryMiB: 8192, ReservedMemoryMiB: 1024},
			cpus: 8, mem: 32 * gib, wantCores: 3, wantMem: 7 << 30},
		{name: "more CPUs than the host", c: Capacity{CPUs: 4}, cpus: 2, mem: gib, wantErr: "cpus = 4 exceeds the 2 CPUs the host has"},
		{name: "more memory than the host", c: Capacity{MemoryMiB: 4096}, cpus: 2, mem: gib,
			wantErr: "memory_mib = 4096 exceeds the 1024 MiB the host has"},
		{name: "reservation takes every CPU", c: Capacity{ReservedCPUs: 2}, cpus: 2, mem: gib,
			wantErr: "reserved_cpus = 2 leaves none of the host's 2 CPUs"},
		{name: "reservation takes all memory", c: Capacity{ReservedMemoryMiB: 1024}, cpus: 2, mem: gib,
			wantErr: "reserved_memory_mib = 1024 leaves none"},
		{name: "negative", c: Capacity{CPUs: -1}, cpus: 2, mem: gib, wantErr: "cpus = -1"},
		{name: "reserved above override", c: Capacity{CPUs: 1, ReservedCPUs: 1}, cpus: 2, mem: gib,
			wantErr: "reserved_cpus = 1 leaves nothing of cpus = 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cores, mem, err := tc.c.Of(tc.cpus, tc.mem)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cores != tc.wantCores || mem != tc.wantMem {
				t.Errorf("Of = %v cores, %d bytes; want %v, %d", cores, mem, tc.wantCores, tc.wantMem)
			}
		})
	}
}

func TestCapacityString(t *testing.T) {
	for _, c := range []Capacity{{}, {CPUs: 0.5}, {CPUs: 0.5, MemoryMiB: 2048, ReservedCPUs: 0.1, ReservedMemoryMiB: 256, VCPURatio: 16}} {
		got, err := ParseCapacity(c.String())
		if err != nil || got != c {
			t.Errorf("ParseCapacity(%q) = %+v, %v; want %+v", c.String(), got, err, c)
		}
	}
	for in, want := range map[string]string{
		"cpus":              "want key=value",
		"cpus=x":            `cpus = "x" is not a number`,
		"cpus=1;cpus=2":     "cpus given twice",
		"ram=1":             `unknown setting "ram"`,
		"memory_mib=-5":     "memory_mib = -5",
		"reserved_cpus=NaN": "reserved_cpus = NaN",
		"vcpu_ratio=2000":   "vcpu_ratio = 2000: want vCPUs per core in [0, 1024]",
	} {
		if _, err := ParseCapacity(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCapacity(%q) = %v, want %q", in, err, want)
		}
	}
}
