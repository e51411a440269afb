package driver_test

import (
	"math"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
)

func TestCPUBusy(t *testing.T) {
	t0 := driver.HostStats{Time: time.Unix(0, 0), CPUUserNs: 100, CPUSystemNs: 100, CPUIdleNs: 800}
	cases := []struct {
		name   string
		a      *driver.HostStats // nil: t0
		b      driver.HostStats
		want   float64
		wantOK bool
	}{
		{"idle", nil, driver.HostStats{CPUUserNs: 100, CPUSystemNs: 100, CPUIdleNs: 1800}, 0, true},
		{"half", nil, driver.HostStats{CPUUserNs: 400, CPUSystemNs: 300, CPUIdleNs: 1300}, 0.5, true},
		{"all busy", nil, driver.HostStats{CPUUserNs: 600, CPUSystemNs: 600, CPUIdleNs: 800}, 1, true},
		{"iowait counts as idle", nil, driver.HostStats{CPUUserNs: 200, CPUSystemNs: 100, CPUIdleNs: 800, CPUIowaitNs: 300}, 0.25, true},
		{"iowait went back, total did not", &driver.HostStats{CPUUserNs: 100, CPUSystemNs: 100, CPUIdleNs: 700, CPUIowaitNs: 100},
			driver.HostStats{CPUUserNs: 300, CPUSystemNs: 100, CPUIdleNs: 1150, CPUIowaitNs: 50}, 1.0 / 3, true},
		{"no time passed", nil, t0, 0, false},
		{"counter went back", nil, driver.HostStats{CPUUserNs: 10, CPUSystemNs: 10, CPUIdleNs: 100}, 0, false},
		{"busy went back, total did not", nil, driver.HostStats{CPUUserNs: 50, CPUSystemNs: 100, CPUIdleNs: 2000}, 0, false},
		{"total went back", nil, driver.HostStats{CPUUserNs: 300, CPUSystemNs: 100, CPUIdleNs: 100}, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := t0
			if c.a != nil {
				a = *c.a
			}
			got, ok := driver.CPUBusy(a, c.b)
			if ok != c.wantOK || math.Abs(got-c.want) > 1e-9 {
				t.Errorf("CPUBusy = %v, %v; want %v, %v", got, ok, c.want, c.wantOK)
			}
		})
	}
}
