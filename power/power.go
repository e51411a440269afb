// Package power runs a host's power actions: the commands (a fence, a
// power-on) an operator configures, e.g. ipmitool against the host's BMC.
package power

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Run runs argv (the program, then its arguments; no shell); its error
// is as Failure words it.
func Run(ctx context.Context, argv []string) error {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	return Failure(argv, out, err)
}

// Failure is the error of an action that printed out and ended with err
// (nil if err is): it names only the program, since the arguments may
// hold what the operator would not show, and ends with the last line of
// the output, where such tools say why.
func Failure(argv []string, out []byte, err error) error {
	if err == nil {
		return nil
	}
	last := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(last, '\n'); i >= 0 {
		last = last[i+1:]
	}
	return fmt.Errorf("%s: %w; %s", argv[0], err, last)
}

// Expand returns argv with every {host} replaced by host: one command
// template for every host.
func Expand(argv []string, host string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = strings.ReplaceAll(a, "{host}", host)
	}
	return out
}
