package scheduler_test

import (
	"fmt"

	"github.com/virtpool/virtpool/scheduler"
)

func Example() {
	const gib = 1 << 30
	c := &scheduler.Cluster{
		Hosts: []scheduler.Host{
			{Name: "kvm1", Cores: 16, MemoryBytes: 128 * gib},
			{Name: "kvm2", Cores: 16, MemoryBytes: 128 * gib},
			{Name: "kvm3", Cores: 16, MemoryBytes: 128 * gib, State: scheduler.Standby},
		},
		Guests: []scheduler.Guest{
			{Name: "web1", VCPUs: 8, MemoryBytes: 16 * gib, CPUDemand: 7, Pool: "web", AntiAffinity: "web", Host: "kvm1"},
			{Name: "batch1", VCPUs: 4, MemoryBytes: 8 * gib, MemoryUsed: 2 * gib, CPUDemand: 3, Pool: "batch", Host: "kvm1"},
			{Name: "batch2", VCPUs: 4, MemoryBytes: 8 * gib, MemoryUsed: 6 * gib, CPUDemand: 3, Pool: "batch", Host: "kvm1"},
			{Name: "web2", VCPUs: 8, MemoryBytes: 16 * gib, CPUDemand: 7, Pool: "web", AntiAffinity: "web", Host: "kvm2"},
			{Name: "db1", VCPUs: 4, MemoryBytes: 32 * gib, CPUDemand: 1, Pool: "db", Host: "kvm2"},
		},
	}
	pol := scheduler.DefaultPolicy()

	// kvm1 uses 13 of 16 cores, above the 80 % watermark. web1 cannot join
	// web2; either batch guest fits on kvm2, and batch1 copies less memory.
	plan, err := c.Balance(pol)
	if err != nil {
		panic(err)
	}
	for _, m := range plan.Moves {
		fmt.Printf("wave %d: %s %s -> %s, %d GiB (%s)\n", m.Wave, m.Guest, m.From, m.To, m.Bytes/gib, m.Reason)
	}

	// Two more web guests need two hosts without a web guest.
	_, err = c.Place(scheduler.Guest{VCPUs: 8, MemoryBytes: 16 * gib, CPUDemand: 4, Pool: "web", AntiAffinity: "web"}, 2, pol)
	fmt.Println(err)

	// Bring the standby host into use.
	plan, _ = c.Spread(3, pol)
	fmt.Println("power on:", plan.PowerOn, "moves:", len(plan.Moves))
	// Output:
	// wave 0: batch1 kvm1 -> kvm2, 2 GiB (balance: kvm1 is hot (cpu 81%, memory 25%))
	// infeasible: pool web: need 2 hosts for anti-affinity group web, only 0 available
	// power on: [kvm3] moves: 2
}
