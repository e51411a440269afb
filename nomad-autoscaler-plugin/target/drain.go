package target

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"

	"github.com/virtpool/virtpool/pool"
)

// drainPoll is how often a draining node is checked.
var drainPoll = 2 * time.Second

// drainMargin is how long past its deadline a drain is waited for (Nomad
// forces the drain at the deadline).
const drainMargin = time.Minute

// nomadClient returns the Nomad API client of the agent's nomad_* settings.
func (p *Plugin) nomadClient() (*api.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nomad != nil {
		return p.nomad, nil
	}
	c, err := api.NewClient(p.cfg.Nomad)
	if err != nil {
		return nil, fmt.Errorf("nomad client: %w", err)
	}
	p.nomad = c
	return c, nil
}

// drainer drains the Nomad client running in a member before it is
// removed, as the autoscaler's cloud targets do: the node whose name is the
// member's domain name is marked ineligible and drained with the policy's
// deadline, and removal waits until the drain is complete. A member that
// runs no Nomad client is removed without waiting.
func (p *Plugin) drainer(pc policyConfig, log hclog.Logger) func(context.Context, pool.Member) error {
	return func(ctx context.Context, m pool.Member) error {
		c, err := p.nomadClient()
		if err != nil {
			return err
		}
		return drainNode(ctx, c, m.Name, pc.DrainDeadline, pc.DrainIgnore, log.Named("drain"))
	}
}

func drainNode(ctx context.Context, c *api.Client, name string, deadline time.Duration, ignoreSystem bool, log hclog.Logger) error {
	q := (&api.QueryOptions{Filter: fmt.Sprintf("Name == %q", name)}).WithContext(ctx)
	nodes, _, err := c.Nodes().List(q)
	if err != nil {
		return fmt.Errorf("find Nomad node %s: %w", name, err)
	}
	var id string
	for _, n := range nodes {
		if n.Name == name {
			if id != "" {
				return fmt.Errorf("two Nomad nodes are named %s (%s, %s): not guessing which one to drain", name, id, n.ID)
			}
			id = n.ID
		}
	}
	if id == "" {
		log.Info("no Nomad node of that name; nothing to drain", "node", name)
		return nil
	}
	start := time.Now()
	log.Info("draining Nomad node", "node", name, "node_id", id, "deadline", deadline.String())
	w := (&api.WriteOptions{}).WithContext(ctx)
	if _, err := c.Nodes().UpdateDrainOpts(id, &api.DrainOptions{
		DrainSpec:    &api.DrainSpec{Deadline: deadline, IgnoreSystemJobs: ignoreSystem},
		MarkEligible: false,
	}, w); err != nil {
		return fmt.Errorf("drain Nomad node %s: %w", name, err)
	}
	// Nomad forces the drain at the deadline; allow a margin beyond it.
	wait, cancel := context.WithTimeout(ctx, deadline+drainMargin)
	defer cancel()
	for {
		n, _, err := c.Nodes().Info(id, (&api.QueryOptions{}).WithContext(wait))
		switch {
		case err != nil && wait.Err() != nil:
			return fmt.Errorf("drain of Nomad node %s not complete after %s: %w", name, time.Since(start).Round(time.Second), wait.Err())
		case err != nil:
			log.Warn("reading Nomad node failed; retrying", "node", name, "error", err)
		case n.DrainStrategy == nil:
			log.Info("Nomad node drained", "node", name, "took", time.Since(start).Round(time.Millisecond).String())
			return nil
		}
		select {
		case <-wait.Done():
			return fmt.Errorf("drain of Nomad node %s not complete after %s: %w", name, time.Since(start).Round(time.Second), wait.Err())
		case <-time.After(drainPoll):
		}
	}
}
