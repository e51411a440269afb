package lab

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Shape makes host h's link send at most bitsPerSec (a token bucket on
// eth0 in its namespace, as a link of that speed would), so that
// migrations and transfers from it run at real link speeds; 0 removes the
// limit. Only the hosts' own links are shaped: the lab's switch and the
// client are left alone.
func Shape(ctx context.Context, h Host, bitsPerSec int64) error {
	if bitsPerSec <= 0 {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", h.Namespace, "tc", "qdisc", "del", "dev", "eth0", "root").CombinedOutput()
		// tc says "handle of zero" when there is no limit to remove.
		if err != nil && !strings.Contains(string(out), "handle of zero") {
			return fmt.Errorf("unshape %s: %w: %s", h.Name, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	// The bucket holds 10 ms worth of sending (at least 128 KiB: whole GSO
	// segments), and a queue of at most 50 ms.
	burst := max(bitsPerSec/8/100, 128<<10)
	return run(ctx, "ip", "netns", "exec", h.Namespace, "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
		"rate", fmt.Sprintf("%dbit", bitsPerSec), "burst", fmt.Sprint(burst), "latency", "50ms")
}
