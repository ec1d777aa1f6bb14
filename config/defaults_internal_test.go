package config

import (
	"fmt"
	"path/filepath"
	"testing"
)

// The forward proxy's defaults, checked before validation (which would read
// the CA files): relative CA paths anchored at the config file's directory,
// hosts defaulting to TikTok's production and sandbox hosts.
func TestForwardProxyDefaults(t *testing.T) {
	p := &parser{file: "deploy/config.yaml", lines: map[string]int{}, refs: map[string]string{}}
	c := p.parse([]byte("forward_proxy: {listen: 127.0.0.1:3128, ca_cert: ca/ca.crt, ca_key: /abs/ca.key}\n"))
	if c == nil {
		t.Fatal(p.err())
	}
	c.Path = "deploy/config.yaml"
	c.applyDefaults()
	for _, f := range []struct{ what, got, want string }{
		{"ca_cert", c.ForwardProxy.CACert, filepath.Join("deploy", "ca", "ca.crt")},
		{"ca_key", c.ForwardProxy.CAKey, "/abs/ca.key"},
		{"hosts", fmt.Sprint(c.ForwardProxy.Hosts), "[business-api.tiktok.com sandbox-ads.tiktok.com]"},
	} {
		if f.got != f.want {
			t.Errorf("%s = %s, want %s", f.what, f.got, f.want)
		}
	}
}
