package power

import (
	"context"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		argv    []string
		wantErr string // "" for success
	}{
		{name: "ok", argv: []string{"true"}},
		{name: "fails: program and last line, not the arguments", argv: []string{"sh", "-c", "echo first; echo 'power on failed' >&2; exit 3", "secret"},
			wantErr: "sh: exit status 3; power on failed"},
		{name: "no such program", argv: []string{"/nonexistent/ipmitool", "secret"}, wantErr: "/nonexistent/ipmitool: fork/exec"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(context.Background(), tc.argv)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "secret") {
				t.Errorf("error %v, want %q and no argument", err, tc.wantErr)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	got := Expand([]string{"ipmitool", "-H", "bmc-{host}.example", "{host}{host}"}, "h2")
	if strings.Join(got, " ") != "ipmitool -H bmc-h2.example h2h2" {
		t.Errorf("got %q", got)
	}
}
