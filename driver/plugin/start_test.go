package plugin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindBinary(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "my-driver")
	notExe := filepath.Join(dir, "not-exe")
	onPath := filepath.Join(dir, "bin")
	emptyDir := filepath.Join(dir, "empty")
	for _, d := range []string{onPath, emptyDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, mode := range map[string]os.FileMode{exe: 0o755, notExe: 0o644, filepath.Join(onPath, BinaryName): 0o755} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	beside := filepath.Join(filepath.Dir(self), BinaryName)
	if _, err := os.Stat(beside); err == nil {
		t.Skipf("%s exists", beside)
	}

	cases := []struct {
		name     string
		explicit string
		path     string // $PATH
		want     string
		wantErr  []string // substrings of the error
	}{
		{"explicit", exe, emptyDir, exe, nil},
		{"explicit missing", filepath.Join(dir, "nope"), onPath, "", []string{filepath.Join(dir, "nope")}},
		{"explicit not executable", notExe, onPath, "", []string{notExe, "not an executable"}},
		{"in PATH", "", onPath, filepath.Join(onPath, BinaryName), nil},
		{"nowhere", "", emptyDir, "", []string{BinaryName + " not found", beside, "$PATH (" + emptyDir + ")"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("PATH", c.path)
			got, err := FindBinary(c.explicit)
			if c.wantErr == nil {
				if err != nil || got != c.want {
					t.Fatalf("got %q, %v; want %q", got, err, c.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %q, want an error", got)
			}
			for _, s := range c.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}
