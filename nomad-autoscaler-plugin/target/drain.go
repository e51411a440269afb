package target

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/sdk/helper/scaleutils/nodeselector"
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

// nomadRemoval makes a scale-in drain the Nomad clients of the members it
// removes, as the autoscaler's cloud targets do: chooseVictims picks them,
// all their nodes are drained at once with the policy's deadline, and if
// any drain fails every one is cancelled (the nodes eligible again) and no
// member is removed. With node_purge, a removed member's node is purged.
func (p *Plugin) nomadRemoval(ops *pool.Ops, pc policyConfig, log hclog.Logger) error {
	c, err := p.nomadClient()
	if err != nil {
		return err
	}
	log = log.Named("drain")
	sel, err := nodeselector.NewSelector(map[string]string{policyKeyNodeSelector: pc.Nodes.Selector}, c, log)
	if err != nil {
		return fmt.Errorf("%s: %w", policyKeyNodeSelector, err)
	}
	var mu sync.Mutex
	drained := map[string]*api.NodeListStub{} // by member, for AfterRemove
	ops.PrepareRemoval = func(ctx context.Context, pr pool.Record, cands []pool.Member, k int) ([]pool.Member, error) {
		names := make([]string, len(cands))
		for i, m := range cands {
			names[i] = m.Name
		}
		nodes, err := memberNodes(ctx, c, pr.Spec.Name, names)
		if err != nil {
			return nil, err
		}
		self, err := p.selfNode(ctx, c)
		if err != nil {
			return nil, err
		}
		victims, drain, err := chooseVictims(cands, nodes, self, pc.Nodes, k, sel, log)
		if err != nil {
			return nil, err
		}
		if err := drainAll(ctx, c, drain, pc.DrainDeadline, pc.DrainIgnore, log); err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		maps.Copy(drained, drain)
		return victims, nil
	}
	if pc.Nodes.Purge {
		ops.AfterRemove = func(ctx context.Context, m pool.Member) {
			mu.Lock()
			n := drained[m.Name]
			mu.Unlock()
			if n == nil {
				return
			}
			if _, _, err := c.Nodes().Purge(n.ID, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
				log.Warn("purging the removed member's Nomad node failed; Nomad's GC collects it once down",
					"domain", m.Name, "node_id", n.ID, "error", err)
				return
			}
			log.Info("Nomad node purged", "domain", m.Name, "node_id", n.ID)
		}
	}
	return nil
}

// drainAll drains the nodes (by member) at once; if any drain fails, it
// cancels them all, so that the nodes take work again.
func drainAll(ctx context.Context, c *api.Client, nodes map[string]*api.NodeListStub, deadline time.Duration,
	ignoreSystem bool, log hclog.Logger) error {
	var wg sync.WaitGroup
	errs := make([]error, 0, len(nodes))
	var mu sync.Mutex
	for m, n := range nodes {
		wg.Go(func() {
			if err := drainNode(ctx, c, m, n.ID, deadline, ignoreSystem, log); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) == 0 {
		return nil
	}
	// The scale-in's context may be over: the undo must still be done.
	undo, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for m, n := range nodes {
		opts := &api.DrainOptions{DrainSpec: nil, MarkEligible: true}
		if _, err := c.Nodes().UpdateDrainOpts(n.ID, opts, (&api.WriteOptions{}).WithContext(undo)); err != nil {
			errs = append(errs, fmt.Errorf("cancel drain of Nomad node %s (%s): %w; run nomad node drain -disable "+
				"-yes %s and nomad node eligibility -enable %s", m, n.ID, err, n.ID, n.ID))
			continue
		}
		log.Info("drain cancelled: Nomad node eligible again", "domain", m, "node_id", n.ID)
	}
	return errors.Join(errs...)
}

// drainNode drains node id (member's) and waits until the drain is over.
func drainNode(ctx context.Context, c *api.Client, name, id string, deadline time.Duration, ignoreSystem bool, log hclog.Logger) error {
	start := time.Now()
	log.Info("draining Nomad node", "domain", name, "node_id", id, "deadline", deadline.String())
	w := (&api.WriteOptions{}).WithContext(ctx)
	if _, err := c.Nodes().UpdateDrainOpts(id, &api.DrainOptions{
		DrainSpec:    &api.DrainSpec{Deadline: deadline, IgnoreSystemJobs: ignoreSystem},
		MarkEligible: false,
	}, w); err != nil {
		return fmt.Errorf("drain Nomad node %s of member %s: %w", id, name, err)
	}
	// Nomad forces the drain at the deadline; allow a margin beyond it.
	wait, cancel := context.WithTimeout(ctx, deadline+drainMargin)
	defer cancel()
	for {
		n, _, err := c.Nodes().Info(id, (&api.QueryOptions{}).WithContext(wait))
		switch {
		case err != nil && wait.Err() != nil:
			return fmt.Errorf("drain of Nomad node %s of member %s not complete after %s (%s plus %s): %w", id, name, time.Since(start).Round(time.Second), policyKeyDrainDeadline, drainMargin, wait.Err())
		case err != nil:
			log.Warn("reading Nomad node failed; retrying", "domain", name, "node_id", id, "error", err)
		case n.DrainStrategy == nil:
			log.Info("Nomad node drained", "domain", name, "node_id", id, "took", time.Since(start).Round(time.Millisecond).String())
			return nil
		}
		select {
		case <-wait.Done():
			return fmt.Errorf("drain of Nomad node %s of member %s not complete after %s (%s plus %s): %w", id, name, time.Since(start).Round(time.Second), policyKeyDrainDeadline, drainMargin, wait.Err())
		case <-time.After(drainPoll):
		}
	}
}
