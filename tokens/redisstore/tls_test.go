package redisstore_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/redistest"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/redisstore"
)

// testCA is a certificate authority made for a test.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	der  []byte
}

func newCA(name string) (*testCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return &testCA{key: key, cert: cert, der: der}, err
}

// trustedCA is made once per process: Go reads the system's roots once,
// so every run of the test in this process must present the same CA.
var trustedCA = sync.OnceValues(func() (*testCA, error) { return newCA("trusted") })

// writeCerts writes ca and a server certificate for 127.0.0.1 it signed as
// PEM files in dir; it returns the paths.
func writeCerts(t *testing.T, dir, name string, ca *testCA) (caFile, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, der []byte) string {
		p := filepath.Join(dir, name+"-"+file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", ca.der), write("cert.pem", "CERTIFICATE", leafDER), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// startTLS runs a redis-server answering TLS (only) on the returned address.
func startTLS(t *testing.T, caFile, certFile, keyFile string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsAddr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(tlsAddr)
	redistest.Start(t, redistest.Options{Args: []string{"--tls-port", port, "--tls-cert-file", certFile,
		"--tls-key-file", keyFile, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "no"}})
	return tlsAddr
}

// With tls: true the store speaks TLS and verifies the server against the
// system's roots: a server whose CA is among them is reached, one signed
// by another CA is refused.
func TestTLSVerifiesTheServer(t *testing.T) {
	dir := t.TempDir()
	good, err := trustedCA()
	if err != nil {
		t.Fatal(err)
	}
	other, err := newCA("other")
	if err != nil {
		t.Fatal(err)
	}
	caFile, trustedCert, trustedKey := writeCerts(t, dir, "trusted", good)
	_, otherCert, otherKey := writeCerts(t, dir, "other", other)
	// Go reads the system's roots once per process, from SSL_CERT_FILE when
	// set; no other test of this package makes a TLS connection first.
	t.Setenv("SSL_CERT_FILE", caFile)
	t.Setenv("SSL_CERT_DIR", t.TempDir()) // nothing but SSL_CERT_FILE

	trusted := startTLS(t, caFile, trustedCert, trustedKey)
	st, err := redisstore.Open(redisstore.Options{Address: trusted, TLS: true, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Ping(t.Context()); err != nil {
		t.Fatalf("Ping over TLS to a server the system roots trust: %v", err)
	}
	if err := st.Put(t.Context(), record("main", "AT", "RT"), 0); err != nil {
		t.Fatalf("Put over TLS: %v", err)
	}

	untrusted := startTLS(t, caFile, otherCert, otherKey)
	bad, err := redisstore.Open(redisstore.Options{Address: untrusted, TLS: true, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Ping(t.Context()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Ping over TLS to a server signed by an unknown CA: %v, want a certificate error", err)
	}

	plain, err := redisstore.Open(redisstore.Options{Address: trusted, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Ping(t.Context()); err == nil {
		t.Fatal("Ping without TLS to a TLS-only port succeeded")
	}
}
