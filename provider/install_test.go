package provider

import (
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/dirhash"
)

// TestAccInstallFromMirror installs the provider as an operator without
// dev_overrides would: `terraform init` from a filesystem mirror holding the
// zip `make release` made (the registry's packed layout), then applies and
// destroys examples/lab with it; and from a network mirror (HTTPS, on
// loopback), then plans examples/lab. The zip matches SHA256SUMS, the lock file
// records the release's version and its zip's hash, and the provider runs the
// virtpool-driver shipped beside it in the zip (examples/lab sets no
// driver_path, and bin/ is not on $PATH).
func TestAccInstallFromMirror(t *testing.T) {
	needAcc(t)
	rel := os.Getenv("VIRTPOOL_RELEASE")
	if rel == "" {
		t.Fatal("VIRTPOOL_RELEASE must name a release directory (make testacc-provider makes dist/0.0.1 with make release)")
	}
	version := filepath.Base(rel)
	zipName := fmt.Sprintf("terraform-provider-virtpool_%s_linux_amd64.zip", version)
	sums, err := os.ReadFile(filepath.Join(rel, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^([0-9a-f]{64})  ` + regexp.QuoteMeta(zipName) + `$`).FindSubmatch(sums)
	if m == nil {
		t.Fatalf("SHA256SUMS has no line for %s:\n%s", zipName, sums)
	}
	zipSum := string(m[1])
	zip, err := os.ReadFile(filepath.Join(rel, zipName))
	if err != nil {
		t.Fatal(err)
	}
	if sum := fmt.Sprintf("%x", sha256.Sum256(zip)); sum != zipSum {
		t.Fatalf("%s has SHA-256 %s, SHA256SUMS says %s", zipName, sum, zipSum)
	}
	h1, err := dirhash.HashZip(filepath.Join(rel, zipName), dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	// install installs v<version> with tf (in dir) and checks what it wrote.
	install := func(t *testing.T, dir string, tf func(args ...string) string) {
		t.Helper()
		out := tf("init", "-input=false", "-no-color")
		if !strings.Contains(out, "Installed virtpool/virtpool v"+version) {
			t.Errorf("terraform init did not install v%s from the mirror:\n%s", version, out)
		}
		lock, err := os.ReadFile(filepath.Join(dir, ".terraform.lock.hcl"))
		if err != nil {
			t.Fatal(err)
		}
		// A mirror gives Terraform no signed checksums (zh:): it records
		// the hash of the zip's contents (h1:), as `terraform providers
		// lock` does.
		if !strings.Contains(string(lock), fmt.Sprintf("version = %q", version)) || !strings.Contains(string(lock), `"`+h1+`"`) {
			t.Errorf("lock file does not record v%s with the release zip's hash %s:\n%s", version, h1, lock)
		}
		driver := filepath.Join(dir, ".terraform", "providers", "registry.terraform.io", "virtpool", "virtpool", version, "linux_amd64", "virtpool-driver")
		if st, err := os.Stat(driver); err != nil || st.Mode()&0o111 == 0 {
			t.Fatalf("the installed provider has no executable virtpool-driver beside it (%v)", err)
		}
	}
	// Only the mirror in the CLI config: nothing from the network, no
	// dev_overrides.
	cliConfig := func(t *testing.T, block string) string {
		cfg := filepath.Join(t.TempDir(), "terraformrc")
		if err := os.WriteFile(cfg, []byte("provider_installation {\n"+block+"}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	t.Run("filesystem mirror", func(t *testing.T) {
		mirror := t.TempDir()
		into := filepath.Join(mirror, "registry.terraform.io", "virtpool", "virtpool")
		if err := os.MkdirAll(into, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(into, zipName), zip, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := cliConfig(t, fmt.Sprintf(`  filesystem_mirror {
    path    = %q
    include = ["registry.terraform.io/virtpool/virtpool"]
  }
`, mirror))
		dir := exampleDir(t)
		tf := terraformIn(t, dir, []string{"TF_CLI_CONFIG_FILE=" + cfg})
		install(t, dir, tf)
		exampleLab(t, tf)
	})

	// A network mirror (Terraform's provider network mirror protocol) on
	// loopback, over HTTPS as Terraform requires; Terraform trusts its
	// certificate through SSL_CERT_FILE.
	t.Run("network mirror", func(t *testing.T) {
		base := "/registry.terraform.io/virtpool/virtpool/"
		mux := http.NewServeMux()
		mux.HandleFunc(base+"index.json", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"versions": {%q: {}}}`, version)
		})
		mux.HandleFunc(base+version+".json", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"archives": {"linux_amd64": {"url": %q, "hashes": [%q]}}}`, zipName, h1)
		})
		mux.HandleFunc(base+zipName, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(zip) })
		srv := httptest.NewTLSServer(mux)
		defer srv.Close()
		ca := filepath.Join(t.TempDir(), "mirror-ca.pem")
		pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		if err := os.WriteFile(ca, pemCert, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := cliConfig(t, fmt.Sprintf(`  network_mirror {
    url     = "%s/"
    include = ["registry.terraform.io/virtpool/virtpool"]
  }
`, srv.URL))
		dir := exampleDir(t)
		tf := terraformIn(t, dir, []string{"TF_CLI_CONFIG_FILE=" + cfg, "SSL_CERT_FILE=" + ca})
		install(t, dir, tf)
		// The installed provider and its driver run: a plan reads the lab.
		if out := tf("plan", "-input=false", "-no-color"); !strings.Contains(out, "to add") {
			t.Errorf("plan with the provider from the network mirror:\n%s", out)
		}
	})
}
