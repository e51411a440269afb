// Package fleettest starts the plugins' fleets over a fake driver, for
// their in-process tests.
package fleettest

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/fleet"
)

// Starter returns a fleet.Starter that uses d instead of the driver
// process and stamps rounds with now (nil: time.Now). Nothing samples in
// the background: the tests call Fleet.Sample, so that they control time.
func Starter(d driver.Driver, now func() time.Time) fleet.Starter {
	return func(c fleet.Config, log hclog.Logger) (*fleet.Sampler, error) {
		f := fleet.New(c, func(context.Context) (driver.Driver, error) { return d, nil }, log)
		f.Now = now
		return &fleet.Sampler{Fleet: f}, nil
	}
}
