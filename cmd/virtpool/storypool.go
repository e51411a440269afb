package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/virtpool/virtpool/pool"
)

// storyPool is the pool the story drives and shows, as the demo's
// Terraform configuration applied it: its outputs pool and
// migration_policy (examples/autoscaler/demo/main.tf), so that the story
// follows the configuration instead of repeating it.
type storyPool struct {
	Name   string   `json:"name"`
	Hosts  []string `json:"hosts"`
	Size   int      `json:"size"`    // as applied; the autoscaler changes it afterwards
	IPBase string   `json:"ip_base"` // member 1's address; member n has the n-th
	Policy struct {
		Mode    string  `json:"mode"`
		CPUHigh float64 `json:"cpu_high"` // a fraction of a host's CPUs
	}
}

// parseStoryOutputs reads what 'terraform output -json' prints for the
// demo's configuration.
func parseStoryOutputs(b []byte) (storyPool, error) {
	var out struct { // terraform wraps each output's value with its type
		Pool *struct {
			Value storyPool `json:"value"`
		} `json:"pool"`
		Policy *struct {
			Value struct {
				Mode    string  `json:"mode"`
				CPUHigh float64 `json:"cpu_high"`
			} `json:"value"`
		} `json:"migration_policy"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return storyPool{}, fmt.Errorf("terraform outputs: %w", err)
	}
	if out.Pool == nil || out.Policy == nil {
		return storyPool{}, errors.New("terraform outputs: want outputs pool and migration_policy (see examples/autoscaler/demo/main.tf)")
	}
	p := out.Pool.Value
	p.Policy = out.Policy.Value
	if p.Name == "" || len(p.Hosts) == 0 {
		return storyPool{}, fmt.Errorf("terraform output pool: want a name and hosts, got %+v", p)
	}
	if _, err := pool.MemberIP(p.IPBase, 1); err != nil {
		return storyPool{}, fmt.Errorf("terraform output pool: %w", err)
	}
	return p, nil
}

// memberIP is member n's address, without prefix length.
func (p storyPool) memberIP(n int) (string, error) {
	ip, err := pool.MemberIP(p.IPBase, n)
	if err != nil {
		return "", err
	}
	return strings.Split(ip, "/")[0], nil
}

// String is how the story introduces the pool.
func (p storyPool) String() string {
	return fmt.Sprintf("pool %s (%d members, hosts %s), migration policy (%s, cpu_high %.0f%%)",
		p.Name, p.Size, strings.Join(p.Hosts, ","), p.Policy.Mode, 100*p.Policy.CPUHigh)
}

// checkHosts fails unless every host of the pool is in inv (the lab's).
func (p storyPool) checkHosts(inv pool.Inventory) error {
	var errs []error
	for _, h := range p.Hosts {
		if _, err := inv.Lookup(h); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pool %s and the lab: %w", p.Name, err)
	}
	return nil
}
