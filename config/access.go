package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"go.yaml.in/yaml/v3"
)

// IsLoopback reports whether the listen address addr (host:port) only
// accepts connections from this machine: host "localhost", an address in
// 127.0.0.0/8, or ::1. An empty host (":8080") listens on every interface
// and is not loopback; neither is an address that does not parse.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// IsLoopbackHost reports whether a Host header (host or host:port) names
// this machine's loopback: localhost, a name under .localhost, an address
// in 127.0.0.0/8, or ::1.
func IsLoopbackHost(hostport string) bool {
	h := hostport
	if sh, _, err := net.SplitHostPort(hostport); err == nil {
		h = sh
	}
	h = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Unmap().IsLoopback()
}

// Credential returns the credential named name. The pointer is into c, so
// it stays valid as long as c does; callers must not modify it.
func (c *Config) Credential(name string) (*Credential, bool) {
	for i := range c.Credentials {
		if c.Credentials[i].Name == name {
			return &c.Credentials[i], true
		}
	}
	return nil, false
}

// DefaultCredential returns the credential used when a request names none
// and no known advertiser: the one marked default (Load marks a lone
// credential default). false when there is none.
func (c *Config) DefaultCredential() (*Credential, bool) {
	for i := range c.Credentials {
		if c.Credentials[i].Default {
			return &c.Credentials[i], true
		}
	}
	return nil, false
}

// Key decodes EncryptionKey: nil, nil when it is empty (tokens are stored
// unencrypted), else the 32-byte AES-256 key. Standard base64 with or
// without padding is accepted. The error never contains the key.
func (s Store) Key() ([]byte, error) {
	if s.EncryptionKey == "" {
		return nil, nil
	}
	v := strings.TrimSpace(s.EncryptionKey.Value())
	key, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(v)
	}
	if err != nil {
		return nil, fmt.Errorf("config: encryption key is not valid base64: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("config: encryption key must be base64 of exactly 32 bytes, got %d bytes", len(key))
	}
	return key, nil
}

// Redacted renders c as YAML with every secret shown as [redacted], for
// printing the effective configuration (defaults filled in) safely.
func (c *Config) Redacted() ([]byte, error) {
	out, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("config: render: %w", err)
	}
	return out, nil
}
