package config

import (
	"math"
	"net"
	"path/filepath"
	"strings"
	"time"
)

// Defaults of the keys SPEC gives one; Load fills them in.
const (
	DefaultListen           = "127.0.0.1:8080"
	DefaultAdminListen      = "127.0.0.1:8081"
	DefaultBaseURL          = "https://business-api.tiktok.com"
	DefaultUpstreamTimeout  = 60 * time.Second
	DefaultRefreshBefore    = time.Hour
	DefaultStoreBackend     = "file"
	DefaultStorePath        = "./tokens.json"
	DefaultRedisAddress     = "127.0.0.1:6379"
	DefaultRedisKeyPrefix   = "tiktok-auth-proxy:"
	DefaultCredentialHeader = "X-TikTok-Credential"
	DefaultMaxInspectBytes  = 1 << 20
	DefaultBreakerFailures  = 5
	DefaultBreakerOpen      = 30 * time.Second
	DefaultRateMaxWait      = 10 * time.Second
	DefaultRetryAttempts    = 3
	DefaultRetryMaxWait     = 10 * time.Second
	DefaultLogLevel         = "info"
	DefaultLogFormat        = "json"
)

// applyDefaults fills every unset key. It runs before Validate so that
// validation sees the values the program will use.
func (c *Config) applyDefaults() {
	setDefault(&c.Listen, DefaultListen)
	setDefault(&c.AdminListen, DefaultAdminListen)
	setDefault(&c.Upstream.BaseURL, DefaultBaseURL)
	// A trailing slash would double up when paths are appended.
	c.Upstream.BaseURL = strings.TrimRight(c.Upstream.BaseURL, "/")
	setDefault(&c.Upstream.Timeout, DefaultUpstreamTimeout)
	if c.OAuth.RedirectURL == "" {
		if _, port, err := net.SplitHostPort(c.AdminListen); err == nil && port != "" {
			c.OAuth.RedirectURL = "http://" + net.JoinHostPort("localhost", port) + "/oauth/callback"
		}
	}
	setDefault(&c.Tokens.RefreshBefore, DefaultRefreshBefore)

	setDefault(&c.Store.Backend, DefaultStoreBackend)
	setDefault(&c.Store.Path, DefaultStorePath)
	c.Store.Path = c.resolve(c.Store.Path)
	setDefault(&c.Store.Redis.Address, DefaultRedisAddress)
	setDefault(&c.Store.Redis.KeyPrefix, DefaultRedisKeyPrefix)

	for i := range c.Credentials {
		setDefault(&c.Credentials[i].Kind, KindAdvertiser)
		rl := &c.Credentials[i].RateLimit
		if rl.QPS > 0 && rl.Burst == 0 {
			rl.Burst = int(math.Ceil(rl.QPS))
		}
	}
	if len(c.Credentials) == 1 {
		c.Credentials[0].Default = true
	}

	setDefault(&c.Routing.CredentialHeader, DefaultCredentialHeader)
	setDefault(&c.Routing.MaxInspectBytes, DefaultMaxInspectBytes)
	setDefault(&c.Breaker.ConsecutiveFailures, DefaultBreakerFailures)
	setDefault(&c.Breaker.OpenTimeout, DefaultBreakerOpen)

	setDefault(&c.RateLimits.MaxWait, DefaultRateMaxWait)
	setDefault(&c.Retry.Attempts, DefaultRetryAttempts)
	setDefault(&c.Retry.MaxWait, DefaultRetryMaxWait)

	if c.ForwardProxy.Listen != "" {
		c.ForwardProxy.CACert = c.resolve(c.ForwardProxy.CACert)
		c.ForwardProxy.CAKey = c.resolve(c.ForwardProxy.CAKey)
		if len(c.ForwardProxy.Hosts) == 0 {
			c.ForwardProxy.Hosts = DefaultForwardHosts()
		}
	}

	setDefault(&c.Log.Level, DefaultLogLevel)
	setDefault(&c.Log.Format, DefaultLogFormat)
}

// setDefault fills a field the config left at its zero value.
func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// resolve anchors a relative file path at the config file's directory.
func (c *Config) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || c.Path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.Path), p)
}
