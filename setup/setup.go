// Package setup serves the admin listener: the /authorize setup page, the
// one-time OAuth authorization flow and its callback, /api/credentials,
// health and readiness, /metrics, and the API the authorize command uses to
// complete through a running listener.
//
// A flow starts with a fresh 256-bit state, single-use and valid for
// StateTTL, bound to the browser by a cookie. The callback checks it,
// exchanges TikTok's code and stores the grant; any failure stores nothing.
// Nothing secret (app secret, token, auth code, admin token) is ever
// written to a page, a JSON answer or a log line.
package setup

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// Tokens is the token store as the admin listener needs it; *tokens.Manager
// implements it. Implementations must be safe for concurrent use.
type Tokens interface {
	Statuses() []tokens.Status
	Status(name string) (tokens.Status, error)
	Authorize(ctx context.Context, name string, g *tiktok.Grant) (tokens.Status, error)
	Ready(ctx context.Context) error
}

// Exchanger is TikTok's OAuth as the flow needs it; *tiktok.Client
// implements it. Implementations must be safe for concurrent use.
type Exchanger interface {
	AuthCodeURL(app tiktok.App, state string) string
	Exchange(ctx context.Context, app tiktok.App, code string) (*tiktok.Grant, error)
}

// The production implementations satisfy the interfaces setup asks for.
var (
	_ Tokens     = (*tokens.Manager)(nil)
	_ Authorizer = (*tokens.Manager)(nil)
	_ Exchanger  = (*tiktok.Client)(nil)
)

// Credential is one configured credential as the setup page shows it.
type Credential struct {
	Name        string
	Description string
	Kind        string     // config.KindAdvertiser ("" means the same) or config.KindTikTokAccount
	App         tiktok.App // fully resolved: endpoints and redirect URL set
	// AdvertiserIDs are the configured advertiser_ids, shown as routed
	// here from config.
	AdvertiserIDs []string
	// Default marks the credential used when a request names none.
	Default bool
}

// BreakerInfo is a credential's circuit breaker as the setup page explains
// it.
type BreakerInfo struct {
	State     string    // "closed", "half-open" or "open"; "" unknown
	Until     time.Time // when an open breaker lets a request through; zero unknown
	LastError string    // the failure that opened it; never holds a token
}

// Options configure an Admin. Credentials, Tokens and Exchanger are required.
type Options struct {
	Credentials []Credential
	Tokens      Tokens
	Exchanger   Exchanger
	// AdminToken, when set, is required as "Authorization: Bearer TOKEN" (or
	// HTTP Basic with the token as password, so a browser can prompt for it)
	// on every path but /healthz, /readyz and /oauth/callback.
	AdminToken config.Secret
	// Loopback tells whether the listener is on a loopback address. New
	// refuses a non-loopback listener without AdminToken. A loopback listener
	// without AdminToken only answers requests whose Host is a loopback name,
	// so a web page cannot reach it through DNS rebinding.
	Loopback bool
	// Metrics is mounted at /metrics; nil answers 404 there.
	Metrics http.Handler
	// ProxyURL is the proxy's base URL (e.g. http://127.0.0.1:8080), shown
	// in the "what to call next" example.
	ProxyURL string
	// BreakerState, when set, returns the credential's circuit breaker state
	// ("closed", "half-open", "open") for the page and JSON.
	BreakerState func(name string) string
	// Breaker, when set, is preferred over BreakerState: it also says until
	// when an open breaker pauses requests and why it opened.
	Breaker func(name string) BreakerInfo
	// Pauses, when set, lists the pauses TikTok's rate-limit answers put
	// on apps, endpoints and advertisers, one sentence each ("app 7123
	// paused until 14:05:00 UTC: per-minute limit (TikTok 40100)"), shown
	// above the cards.
	Pauses func() []string
	// WaitTimeout bounds one long-poll of /api/authorize/{state}/wait.
	// Default 30s.
	WaitTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Admin is the admin listener's http.Handler. Safe for concurrent use.
type Admin struct {
	opts   Options
	order  []string
	creds  map[string]Credential
	states *stateStore
	log    *slog.Logger
	now    func() time.Time
	mux    *http.ServeMux
	// tokenHash is the SHA-256 of the admin token (nil: none), compared in
	// constant time against the hash of what a request presents.
	tokenHash []byte
	// hosts are the extra Host names a loopback listener without admin
	// token answers: those of the credentials' redirect URLs.
	hosts map[string]bool
	// onWait, set by tests, runs when a long-poll starts blocking.
	onWait func()
	// closing is closed by Close: long-polls then answer at once.
	closing   chan struct{}
	closeOnce sync.Once
}

// New builds the admin handler. It fails when a required option is missing,
// a credential is duplicated, or the listener is not loopback and has no
// admin token.
func New(opts Options) (*Admin, error) {
	if opts.Tokens == nil || opts.Exchanger == nil {
		return nil, errors.New("setup: Tokens and Exchanger are required")
	}
	if !opts.Loopback && opts.AdminToken == "" {
		return nil, errors.New("setup: admin_token is required when the admin listener is not loopback")
	}
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = 30 * time.Second
	}
	a := &Admin{opts: opts, creds: make(map[string]Credential), hosts: make(map[string]bool), log: opts.Logger, now: opts.Now,
		closing: make(chan struct{})}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	for _, c := range opts.Credentials {
		if c.Name == "" {
			return nil, errors.New("setup: a credential has no name")
		}
		if _, dup := a.creds[c.Name]; dup {
			return nil, fmt.Errorf("setup: credential %q configured twice", c.Name)
		}
		if c.Kind == "" {
			c.Kind = config.KindAdvertiser
		}
		a.creds[c.Name] = c
		if u, err := url.Parse(c.App.RedirectURL); err == nil && u.Hostname() != "" {
			a.hosts[strings.ToLower(u.Hostname())] = true
		}
		a.order = append(a.order, c.Name)
	}
	if opts.AdminToken != "" {
		h := sha256.Sum256([]byte(opts.AdminToken.Value()))
		a.tokenHash = h[:]
	}
	a.states = newStateStore(a.now)
	a.routes()
	return a, nil
}

// Close makes every long-poll of /api/authorize/{state}/wait, in progress or
// future, answer {"done": false} at once, so that http.Server.Shutdown does
// not wait up to WaitTimeout for them; the authorize command then polls
// again until the listener is back, and still takes a pasted redirected
// URL meanwhile. Call it when shutting down, before
// http.Server.Shutdown. Every other path keeps working; Close never fails
// and may be called more than once.
func (a *Admin) Close() {
	a.closeOnce.Do(func() { close(a.closing) })
}

func (a *Admin) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/authorize", http.StatusFound)
	})
	m.HandleFunc("GET /authorize", a.handlePage)
	m.HandleFunc("GET /authorize/{name}", a.handleBegin)
	m.HandleFunc("GET /authorize/{name}/done", a.handleDone)
	m.HandleFunc("GET /oauth/callback", a.handleCallback)
	m.HandleFunc("GET /api/credentials", a.handleCredentials)
	m.HandleFunc("POST /api/authorize/{name}", jsonOnly(a.handleAPIBegin))
	m.HandleFunc("GET /api/authorize/{state}/wait", a.handleAPIWait)
	m.HandleFunc("POST /api/authorize/{state}/complete", jsonOnly(a.handleAPIComplete))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	})
	m.HandleFunc("GET /readyz", a.handleReady)
	if a.opts.Metrics != nil {
		m.Handle("GET /metrics", a.opts.Metrics)
	}
	a.mux = m
}

// ServeHTTP implements http.Handler.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.tokenHash == nil && !a.knownHost(r.Host) {
		http.Error(w, "setup: this admin listener only answers loopback host names", http.StatusMisdirectedRequest)
		return
	}
	if !public(r.URL.Path) && !a.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="tiktok-auth-proxy admin", charset="UTF-8"`)
		http.Error(w, "setup: admin token required (Authorization: Bearer TOKEN)", http.StatusUnauthorized)
		return
	}
	a.mux.ServeHTTP(w, r)
}

// public paths are reachable without the admin token: probes, and the
// callback TikTok redirects an arbitrary browser to (the state protects it).
func public(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/oauth/callback"
}

func (a *Admin) authorized(r *http.Request) bool {
	if a.tokenHash == nil {
		return true
	}
	var presented string
	if scheme, v, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		presented = strings.TrimSpace(v)
	} else if _, pw, ok := r.BasicAuth(); ok {
		presented = pw
	} else {
		return false
	}
	h := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(h[:], a.tokenHash) == 1
}

// knownHost reports whether a Host header names this machine's loopback or
// the host of a configured redirect URL.
func (a *Admin) knownHost(host string) bool {
	if config.IsLoopbackHost(host) {
		return true
	}
	h := host
	if sh, _, err := net.SplitHostPort(host); err == nil {
		h = sh
	}
	return a.hosts[strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))]
}

func (a *Admin) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := a.opts.Tokens.Ready(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	_, _ = w.Write([]byte("ok"))
}
