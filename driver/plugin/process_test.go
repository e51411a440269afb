package plugin

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
)

// serveEnv makes the test binary itself the plugin, so that Start is tested
// against a real child process without building one.
const serveEnv = "VIRTPOOL_PLUGIN_TEST_SERVE"

var childHost = driver.HostInfo{URI: "test:///default", Hostname: "child", CPUs: 2, Accelerators: []string{driver.AccelTCG}}

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		Serve(&fakeDriver{hostInfo: childHost}, hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true}))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestStartProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	t.Setenv(serveEnv, "1")
	logger := hclog.New(&hclog.LoggerOptions{Output: hclog.DefaultOutput, Level: hclog.Warn})
	p, err := Start(os.Args[0], logger)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Pid() <= 0 || p.Pid() == os.Getpid() {
		t.Fatalf("Pid() = %d (ours %d)", p.Pid(), os.Getpid())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := p.Driver.HostInfo(ctx, "test:///default")
	if err != nil {
		t.Fatal(err)
	}
	if got.Hostname != childHost.Hostname || got.CPUs != childHost.CPUs {
		t.Errorf("HostInfo = %+v, want %+v", got, childHost)
	}

	// A dead plugin makes calls fail, not hang.
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !p.Exited() {
		if time.Now().After(deadline) {
			t.Fatal("Exited() still false after SIGKILL")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = p.Driver.HostInfo(ctx, "test:///default")
	if err == nil {
		t.Fatal("HostInfo succeeded on a killed plugin")
	}
	t.Logf("after SIGKILL: %v", err)
	if ctx.Err() != nil {
		t.Fatalf("HostInfo hung until the deadline: %v", err)
	}
	var de *driver.Error
	if errors.As(err, &de) {
		t.Errorf("transport failure reported as a driver error: %v", err)
	}
	p.Close()
	p.Close() // twice is fine
}

func TestStartNotAPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	// /bin/true exits without the handshake.
	if _, err := Start("/bin/true", hclog.NewNullLogger()); err == nil {
		t.Fatal("Start of a non-plugin succeeded")
	}
}
