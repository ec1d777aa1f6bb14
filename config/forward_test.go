package config_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// writeCA writes a new CA for hosts into dir as name.crt and name.key.
func writeCA(t *testing.T, dir, name string, hosts []string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := config.NewCA(hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	for f, b := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

func TestNewCA(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	certPEM, keyPEM, err := config.NewCA(config.DefaultForwardHosts(), now)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("certificate PEM: %q", certPEM)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsCA || !c.MaxPathLenZero || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("not a CA that may sign leaves only: IsCA %v, MaxPathLenZero %v, KeyUsage %v", c.IsCA, c.MaxPathLenZero, c.KeyUsage)
	}
	if c.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm %v, want ECDSA", c.PublicKeyAlgorithm)
	}
	if got, want := c.NotAfter.Sub(now), config.CALifetime; got != want {
		t.Errorf("valid %v after now, want %v", got, want)
	}
	if !slices.Equal(c.PermittedDNSDomains, config.DefaultForwardHosts()) || c.PermittedDNSDomainsCritical {
		t.Errorf("name constraints %v (critical %v), want %v non-critical", c.PermittedDNSDomains, c.PermittedDNSDomainsCritical, config.DefaultForwardHosts())
	}
	if kb, _ := pem.Decode(keyPEM); kb == nil || kb.Type != "PRIVATE KEY" {
		t.Errorf("key PEM: want a PKCS #8 PRIVATE KEY block")
	}
}

// forwardConfig writes a config with a forward_proxy section and loads it.
func forwardConfig(t *testing.T, dir, section string) error {
	t.Helper()
	p := filepath.Join(dir, "config.yaml")
	body := "credentials:\n  - name: main\n    app_id: \"1\"\n    app_secret: s\nforward_proxy:\n" + section
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(p)
	return err
}

// TestForwardProxyCA: check reads the CA files and reports each problem
// on the key that names the file.
func TestForwardProxyCA(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, dir, "ca", config.DefaultForwardHosts())
	writeCA(t, dir, "other", config.DefaultForwardHosts())
	writeCA(t, dir, "narrow", []string{"business-api.tiktok.com"})
	if err := os.WriteFile(filepath.Join(dir, "junk.crt"), []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		section string
		want    string // "" means valid
	}{
		{"valid, relative paths", "  listen: 127.0.0.1:3128\n  ca_cert: ca.crt\n  ca_key: ca.key\n", ""},
		{"missing file", "  listen: 127.0.0.1:3128\n  ca_cert: nope.crt\n  ca_key: ca.key\n",
			"7: forward_proxy.ca_cert: cannot read " + filepath.Join(dir, "nope.crt") + ": no such file or directory; create a CA with: tiktok-auth-proxy ca --out DIR"},
		{"key of another CA", "  listen: 127.0.0.1:3128\n  ca_cert: ca.crt\n  ca_key: other.key\n",
			"8: forward_proxy.ca_key: " + filepath.Join(dir, "ca.crt") + " and " + filepath.Join(dir, "other.key") + " are not a matching PEM certificate and key (tls: private key does not match public key); create a CA with: tiktok-auth-proxy ca --out DIR"},
		{"not PEM", "  listen: 127.0.0.1:3128\n  ca_cert: junk.crt\n  ca_key: ca.key\n",
			"7: forward_proxy.ca_cert: " + filepath.Join(dir, "junk.crt") + " and " + filepath.Join(dir, "ca.key") + " are not a matching PEM certificate and key"},
		{"host outside the name constraints", "  listen: 127.0.0.1:3128\n  ca_cert: narrow.crt\n  ca_key: narrow.key\n",
			`forward_proxy.hosts[1]: "sandbox-ads.tiktok.com" is outside the name constraints of the CA in ` + filepath.Join(dir, "narrow.crt") + " (business-api.tiktok.com), so clients would refuse it; create a CA for it with tiktok-auth-proxy ca --out DIR --host sandbox-ads.tiktok.com"},
		{"same port as listen", "  listen: 127.0.0.1:8080\n  ca_cert: ca.crt\n  ca_key: ca.key\n",
			`6: forward_proxy.listen: 127.0.0.1:8080 is already listen's address; give the forward proxy its own port, e.g. 127.0.0.1:3128`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := forwardConfig(t, dir, tt.section)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			var ve *config.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != 1 {
				t.Fatalf("want one problem, got %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
}

func TestLoadCA(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCA(t, dir, "ca", config.DefaultForwardHosts())
	ca, err := config.ForwardProxy{CACert: certFile, CAKey: keyFile}.LoadCA()
	if err != nil {
		t.Fatal(err)
	}
	if ca.Leaf == nil || !ca.Leaf.IsCA {
		t.Errorf("Leaf %v, want the parsed CA certificate", ca.Leaf)
	}
	_, err = config.ForwardProxy{CACert: certFile, CAKey: filepath.Join(dir, "missing.key")}.LoadCA()
	if err == nil || !strings.HasPrefix(err.Error(), "config: forward_proxy.ca_key: cannot read ") {
		t.Errorf("missing key: %v", err)
	}
}
