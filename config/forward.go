package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"
)

// CALifetime is how long a CA made by NewCA is valid.
const CALifetime = 10 * 365 * 24 * time.Hour

// DefaultForwardHosts are the hosts forward_proxy intercepts when hosts is
// not set: TikTok's production and sandbox API hosts, whatever
// upstream.base_url says, since scripts hard-code one of them. It returns a
// new slice on every call.
func DefaultForwardHosts() []string {
	return []string{"business-api.tiktok.com", "sandbox-ads.tiktok.com"}
}

// caProblem is a CA file problem tied to the config key naming the file.
type caProblem struct {
	key string // ca_cert or ca_key
	msg string
}

func (p *caProblem) Error() string { return "forward_proxy." + p.key + ": " + p.msg }

// LoadCA reads the forward proxy's CA: CACert must hold a CA certificate
// (PEM) and CAKey its private key (PEM). The returned certificate has Leaf
// set.
func (f ForwardProxy) LoadCA() (tls.Certificate, error) {
	ca, err := f.loadCA()
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("config: %w", err)
	}
	return ca, nil
}

func (f ForwardProxy) loadCA() (tls.Certificate, error) {
	const create = "create a CA with: tiktok-auth-proxy ca --out DIR"
	certPEM, err := os.ReadFile(f.CACert)
	if err != nil {
		return tls.Certificate{}, &caProblem{"ca_cert", fmt.Sprintf("cannot read %s; %s", readError(err), create)}
	}
	keyPEM, err := os.ReadFile(f.CAKey)
	if err != nil {
		return tls.Certificate{}, &caProblem{"ca_key", fmt.Sprintf("cannot read %s; %s", readError(err), create)}
	}
	ca, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair checks the certificate first, so an error naming the
		// private key is the key file's.
		key := "ca_cert"
		if strings.Contains(err.Error(), "private key") {
			key = "ca_key"
		}
		return tls.Certificate{}, &caProblem{key, fmt.Sprintf("%s and %s are not a matching PEM certificate and key (%v); %s", f.CACert, f.CAKey, err, create)}
	}
	// X509KeyPair sets Leaf (Go 1.23 and later).
	if !ca.Leaf.IsCA {
		return tls.Certificate{}, &caProblem{"ca_cert", fmt.Sprintf("%s is not a CA certificate (basic constraints CA:FALSE); %s", f.CACert, create)}
	}
	return ca, nil
}

// readError is err from reading a file without the Go op prefix: the path
// and reason ("/x/ca.key: permission denied").
func readError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

// permits reports whether the CA's name constraints (if any) allow host:
// a client honouring them would refuse a certificate the proxy makes for a
// host outside them.
func permits(ca *x509.Certificate, host string) bool {
	if len(ca.PermittedDNSDomains) == 0 {
		return true
	}
	host = strings.ToLower(host)
	for _, d := range ca.PermittedDNSDomains {
		d = strings.ToLower(strings.TrimPrefix(d, "."))
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

// NewCA creates a CA for the forward proxy: an ECDSA P-256 key and a
// self-signed certificate valid for CALifetime from now, whose name
// constraints permit only hosts (and their subdomains). The constraints
// are marked non-critical so that a client that does not implement them
// still accepts the CA, while clients that do (Go, OpenSSL 1.1+, browsers)
// refuse any certificate it signs for another host, should the key leak.
// It returns the certificate and the PKCS #8 key, both PEM.
func NewCA(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("config: generate CA key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("config: CA serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"tiktok-auth-proxy"},
			CommonName:   "tiktok-auth-proxy forward-proxy CA " + now.UTC().Format("2006-01-02"),
		},
		// An hour back, so a client whose clock is a little behind accepts it.
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		PermittedDNSDomains:   hosts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("config: create CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("config: encode CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}
