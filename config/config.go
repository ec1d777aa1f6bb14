// Package config loads and validates the tiktok-auth-proxy configuration file.
//
// Loading is strict: an unknown key is an error naming its line, ${VAR} is
// expanded from the environment (an unset variable is an error), and
// Validate reports every problem at once, each with its YAML line.
package config

import (
	"cmp"
	"time"
)

// Config is the whole configuration file. Load fills every default, so a
// loaded Config never needs a zero-value check by its users.
type Config struct {
	// Listen is the proxy listener; only /open_api/ paths are forwarded.
	// Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// AllowedHosts are the Host names (with or without a port) the proxy
	// listener answers besides loopback names and Listen, when no clients
	// are configured; any other Host is refused (DNS rebinding). Default none.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// AdminListen serves /authorize, /oauth/callback, /metrics, /healthz,
	// /readyz and /api/credentials. Default 127.0.0.1:8081.
	AdminListen string `yaml:"admin_listen"`
	// AdminToken is required when AdminListen is not a loopback address.
	AdminToken Secret `yaml:"admin_token"`

	Upstream     Upstream     `yaml:"upstream"`
	OAuth        OAuth        `yaml:"oauth"`
	Tokens       Tokens       `yaml:"tokens"`
	Store        Store        `yaml:"store"`
	Credentials  []Credential `yaml:"credentials"`
	Routing      Routing      `yaml:"routing"`
	Breaker      Breaker      `yaml:"breaker"`
	RateLimits   RateLimits   `yaml:"rate_limits"`
	Retry        Retry        `yaml:"retry"`
	Clients      []Client     `yaml:"clients"`
	ForwardProxy ForwardProxy `yaml:"forward_proxy"`
	Log          Log          `yaml:"log"`

	// Path is the file the config was loaded from ("" when built in code).
	Path string `yaml:"-"`

	// lines maps each key path written in the file ("credentials[1].name")
	// to its YAML line, so Validate can say where a problem is.
	lines map[string]int
	// refs maps each key path whose value came from ${VAR} expansion to
	// the value as written, so messages never show what the environment
	// held.
	refs map[string]string
	// empties maps each key path left empty by a set-but-empty variable to
	// the variable's name, so a message can say "TOKENS_KEY is set but
	// empty" rather than that the key is missing.
	empties map[string]string
}

// Upstream is the TikTok API the proxy forwards to.
type Upstream struct {
	// BaseURL is scheme and host, no path. Default https://business-api.tiktok.com.
	BaseURL string `yaml:"base_url"`
	// Timeout limits a whole request towards TikTok. Default 60s.
	Timeout time.Duration `yaml:"timeout"`
}

// OAuth holds the OAuth URLs. Empty URLs default from Upstream.BaseURL and
// the credential kind; see the tiktok package's DefaultEndpoints.
type OAuth struct {
	// RedirectURL must match the app's registered redirect URI.
	// Default http://localhost:8081/oauth/callback (port of AdminListen).
	RedirectURL  string `yaml:"redirect_url"`
	AuthorizeURL string `yaml:"authorize_url"`
	TokenURL     string `yaml:"token_url"`
	RefreshURL   string `yaml:"refresh_url"`
}

// Tokens tunes the token lifecycle.
type Tokens struct {
	// RefreshBefore is how long before expiry an access token is refreshed
	// in the background. Default 1h.
	RefreshBefore time.Duration `yaml:"refresh_before"`
}

// Store selects where tokens live.
type Store struct {
	// Backend is "file" (default) or "redis".
	Backend string `yaml:"backend"`
	// Path is the file backend's JSON document. Default ./tokens.json. Load
	// resolves a relative path against the config file's directory.
	Path string `yaml:"path"`
	// EncryptionKey is optional base64 of 32 bytes; tokens are then sealed
	// with AES-256-GCM at rest.
	EncryptionKey Secret `yaml:"encryption_key"`
	Redis         Redis  `yaml:"redis"`
}

// Redis configures the redis backend.
type Redis struct {
	Address   string `yaml:"address"`    // default 127.0.0.1:6379
	Username  string `yaml:"username"`   //
	Password  Secret `yaml:"password"`   //
	DB        int    `yaml:"db"`         //
	KeyPrefix string `yaml:"key_prefix"` // default "tiktok-auth-proxy:"
	// TLS connects with TLS, verifying the server with the system's root
	// certificates and the host name of Address.
	TLS bool `yaml:"tls"`
}

// Credential kinds.
const (
	KindAdvertiser    = "advertiser"
	KindTikTokAccount = "tiktok_account"
)

// Credential is one TikTok app authorization the proxy can inject.
type Credential struct {
	// Name matches [a-z0-9_-]+ and is unique; it is the metrics label and
	// the value of the X-TikTok-Credential header.
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Kind is KindAdvertiser (default) or KindTikTokAccount.
	Kind      string `yaml:"kind"`
	AppID     string `yaml:"app_id"`
	AppSecret Secret `yaml:"app_secret"`
	// AdvertiserIDs are merged with the ids TikTok grants at authorization.
	AdvertiserIDs []string `yaml:"advertiser_ids"`
	// Default marks the credential used when a request names no credential
	// and no known advertiser. With one credential it is always the default.
	Default   bool      `yaml:"default"`
	RateLimit RateLimit `yaml:"rate_limit"`
	// OAuth overrides the oauth: section's URLs for this credential only,
	// so credentials of both kinds can point at their own endpoints.
	OAuth Endpoints `yaml:"oauth"`
}

// Endpoints are one credential's OAuth URLs; empty ones fall back to the
// oauth: section, then to the kind's defaults.
type Endpoints struct {
	AuthorizeURL string `yaml:"authorize_url"`
	TokenURL     string `yaml:"token_url"`
	RefreshURL   string `yaml:"refresh_url"`
}

// EndpointsFor is cr's OAuth URL overrides: its own oauth: first, then the
// oauth: section. An empty URL means the kind's default.
func (c *Config) EndpointsFor(cr Credential) Endpoints {
	return Endpoints{
		AuthorizeURL: cmp.Or(cr.OAuth.AuthorizeURL, c.OAuth.AuthorizeURL),
		TokenURL:     cmp.Or(cr.OAuth.TokenURL, c.OAuth.TokenURL),
		RefreshURL:   cmp.Or(cr.OAuth.RefreshURL, c.OAuth.RefreshURL),
	}
}

// RateLimit is a token bucket; QPS 0 turns it off.
type RateLimit struct {
	QPS   float64 `yaml:"qps"`
	Burst int     `yaml:"burst"`
}

// Routing tunes credential selection.
type Routing struct {
	// CredentialHeader names the credential explicitly. Default X-TikTok-Credential.
	CredentialHeader string `yaml:"credential_header"`
	// MaxInspectBytes is the largest JSON body read to find advertiser_id.
	// Default 1048576.
	MaxInspectBytes int64 `yaml:"max_inspect_bytes"`
}

// Breaker configures the per-credential circuit breaker.
type Breaker struct {
	ConsecutiveFailures uint32        `yaml:"consecutive_failures"` // default 5
	OpenTimeout         time.Duration `yaml:"open_timeout"`         // default 30s
}

// TikTok's access tiers, the values of RateLimits.Tier.
const (
	TierBasic    = "basic"
	TierAdvanced = "advanced"
	TierPremium  = "premium"
	TierUltimate = "ultimate"
)

// TierQPS is TikTok's published per-app QPS of each tier.
var TierQPS = map[string]float64{TierBasic: 10, TierAdvanced: 20, TierPremium: 30, TierUltimate: 50}

// RateLimits is the budget the proxy keeps every app under (TikTok's quota
// belongs to the app, not to a credential or an advertiser).
type RateLimits struct {
	// Tier is TikTok's access tier of every configured app: basic,
	// advanced, premium or ultimate (TierQPS); "" sets no per-app budget
	// (a credential's rate_limit still does).
	Tier string `yaml:"tier"`
	// Endpoints are per-path QPS limits added to the built-in ones
	// (/open_api/v1.3/report/task/create/ at 2 QPS); a path listed here
	// replaces a built-in value.
	Endpoints map[string]float64 `yaml:"endpoints"`
	// MaxWait is the longest a request waits for its turn before the
	// proxy answers 90012 with Retry-After. Default 10s.
	MaxWait time.Duration `yaml:"max_wait"`
}

// Retry configures retries of reads TikTok answered with a transient code.
type Retry struct {
	// Attempts is the total number of tries (1 = no retry). Default 3.
	Attempts int `yaml:"attempts"`
	// MaxWait bounds the time spent waiting between tries. Default 10s.
	MaxWait time.Duration `yaml:"max_wait"`
}

// Client is an inbound caller of the proxy, authenticated by Token and
// allowed only Credentials.
type Client struct {
	Name        string   `yaml:"name"`
	Token       Secret   `yaml:"token"`
	Credentials []string `yaml:"credentials"`
}

// ForwardProxy configures the HTTPS_PROXY (MITM) front end; empty Listen
// turns it off. When it is on, Load resolves relative CACert and CAKey
// against the config file's directory and defaults Hosts to
// DefaultForwardHosts.
type ForwardProxy struct {
	Listen string   `yaml:"listen"`  // e.g. 127.0.0.1:3128
	CACert string   `yaml:"ca_cert"` // PEM CA certificate clients trust
	CAKey  string   `yaml:"ca_key"`  // PEM private key of CACert
	Hosts  []string `yaml:"hosts"`   // the only hosts intercepted; requests go to upstream.base_url
}

// Log configures log/slog.
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // json (default) or text
}
