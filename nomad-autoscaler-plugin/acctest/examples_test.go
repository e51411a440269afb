package acctest

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/virtpool/virtpool/pool"
)

// The example agent configuration and policies (examples/autoscaler) load
// in the real agent, as an operator would run them on the lab: each enabled
// policy reaches its target's Status for pool lab-web, the disabled one
// does not.
func TestAccExamplesLoad(t *testing.T) {
	needLab(t)
	newPool(t, "lab-web", []string{"h1", "h2", "h3"}, "192.0.2.141/24", 0, 0, 3, labPolicy(pool.ModeBalance, 0.8))
	dir, err := filepath.Abs("../../examples/autoscaler")
	if err != nil {
		t.Fatal(err)
	}
	a := runAgent(t, dir, "agent", "-config", "agent.hcl", "-plugin-dir", pluginDir,
		"-http-bind-port", strconv.Itoa(freePort(t)), "-log-level", "DEBUG")
	status := func(dim string) *regexp.Regexp {
		return regexp.MustCompile(`status:.*pool=lab-web\b` + `.*dimension=` + dim + `|status:.*dimension=` + dim + `.*pool=lab-web\b`)
	}
	var loaded time.Time
	for _, dim := range []string{"size", "hot_hosts"} {
		l := a.waitLog(status(dim), time.Time{}, 90*time.Second)
		t.Logf("policy for %s loaded: %s", dim, l.Text)
		if l.At.After(loaded) {
			loaded = l.At
		}
	}
	// Once both enabled policies have been evaluated again, the disabled
	// one would have been too, were it enabled.
	for _, dim := range []string{"size", "hot_hosts"} {
		a.waitLog(status(dim), loaded.Add(time.Millisecond), 90*time.Second)
	}
	if l, ok := a.Find(regexp.MustCompile(`status:.*dimension=hosts\b`), time.Time{}); ok {
		t.Errorf("the disabled hosts policy was evaluated: %s", l.Text)
	}
	if _, err := os.Stat(filepath.Join(dir, "with-nomad", "agent.hcl")); err != nil {
		t.Errorf("the Nomad example: %v", err)
	}
}
