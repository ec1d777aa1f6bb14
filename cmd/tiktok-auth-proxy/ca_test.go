package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

func TestCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "ca")
	code, out, errOut := runCLI(t, "", "ca", "--out", dir)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{dir, os.ModeDir | 0o700}, {keyFile, 0o600}} {
		st, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != f.mode {
			t.Errorf("%s mode %v, want %v", f.path, st.Mode(), f.mode)
		}
	}
	// The certificate is public (0644 less the umask), but nobody else may change it.
	if st, err := os.Stat(certFile); err != nil {
		t.Error(err)
	} else if st.Mode()&0o133 != 0 {
		t.Errorf("ca.crt mode %v; want no write or execute bits for others", st.Mode())
	}
	ca, err := config.ForwardProxy{CACert: certFile, CAKey: keyFile}.LoadCA()
	if err != nil {
		t.Fatalf("the files ca wrote do not load: %v", err)
	}
	if !slices.Equal(ca.Leaf.PermittedDNSDomains, config.DefaultForwardHosts()) {
		t.Errorf("name constraints %v, want the default hosts", ca.Leaf.PermittedDNSDomains)
	}
	for _, want := range []string{certFile, keyFile, "--cacert " + certFile, "CURL_CA_BUNDLE=" + certFile,
		"REQUESTS_CA_BUNDLE=" + certFile, "NODE_EXTRA_CA_CERTS=" + certFile, "SSL_CERT_FILE=" + certFile, "HTTPS_PROXY="} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// A second run refuses, and leaves the CA clients trust untouched.
	before, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "", "ca", "--out", dir)
	if code != 1 || out != "" || !strings.Contains(errOut, certFile+" already exists") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("second run: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	after, err := os.ReadFile(certFile)
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("ca.crt changed by a refused run (err %v)", err)
	}

	// Only the key left over is refused as well: the pair must match.
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = runCLI(t, "", "ca", "--out", dir); code != 1 || !strings.Contains(errOut, keyFile+" already exists") {
		t.Errorf("key left over: exit %d, stderr %q", code, errOut)
	}
}

func TestCAHosts(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := runCLI(t, "", "ca", "--out", dir, "--host", "Sandbox-Ads.tiktok.com", "--host", "api.example.test"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	ca, err := config.ForwardProxy{CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key")}.LoadCA()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"sandbox-ads.tiktok.com", "api.example.test"}; !slices.Equal(ca.Leaf.PermittedDNSDomains, want) {
		t.Errorf("name constraints %v, want %v", ca.Leaf.PermittedDNSDomains, want)
	}
}

func TestCAUsage(t *testing.T) {
	for _, args := range [][]string{
		{"ca"},
		{"ca", "--out"},
		{"ca", "--out", t.TempDir(), "--host", "https://business-api.tiktok.com"},
	} {
		code, out, errOut := runCLI(t, "", args...)
		if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line", args, code, out, errOut)
		}
	}
}
