package provider

import (
	"math"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
)

func TestCPUBusy(t *testing.T) {
	t0 := driver.HostStats{Time: time.Unix(0, 0), CPUUserNs: 100, CPUSystemNs: 100, CPUIdleNs: 800}
	cases := []struct {
		name string
		b    driver.HostStats
		want float64
	}{
		{"idle", driver.HostStats{CPUUserNs: 100, CPUSystemNs: 100, CPUIdleNs: 1800}, 0},
		{"half", driver.HostStats{CPUUserNs: 400, CPUSystemNs: 300, CPUIdleNs: 1300}, 0.5},
		{"iowait counts as idle", driver.HostStats{CPUUserNs: 200, CPUSystemNs: 100, CPUIdleNs: 800, CPUIowaitNs: 300}, 0.25},
		{"no time passed", t0, 0},
	}
	for _, c := range cases {
		if got := cpuBusy(t0, c.b); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
