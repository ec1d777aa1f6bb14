// Package proxy is the request path of tiktok-auth-proxy: it picks the
// credential a request belongs to, checks the calling client, waits for the
// request's turn in its app's budget (package quota), applies the circuit
// breaker, injects the access token and forwards the request to TikTok,
// reading TikTok's envelope code on the way back without buffering the
// body, and retrying what is safe to retry.
//
// The path is one Core, shaped like golang.org/x/oauth2's Transport: an
// http.RoundTripper (one per authenticated client) that routes a request
// and round-trips it, answering its own errors as *http.Response values in
// TikTok's envelope, and settling the breaker, the metrics and the log line
// when the response body is closed. Two front ends serve it: Proxy, the
// reverse proxy of the proxy listener (scripts call
// http://localhost:8080/open_api/...), an httputil.ReverseProxy whose
// Transport is the core; and the forward (HTTPS_PROXY) front end, which
// asks Core.Tunnel for the RoundTripper of each tunnel.
package proxy

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/jsonlog"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/quota"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// Defaults for zero values of the config fields the proxy reads (a loaded
// config has them filled already).
const (
	DefaultTimeout             = 60 * time.Second
	DefaultCredentialHeader    = "X-TikTok-Credential"
	DefaultMaxInspectBytes     = 1 << 20
	DefaultConsecutiveFailures = 5
	DefaultOpenTimeout         = 30 * time.Second
)

// Tokens is the token store as the proxy needs it; *tokens.Manager
// implements it. Implementations must be safe for concurrent use.
type Tokens interface {
	// Token returns the credential's access token. Errors the proxy maps:
	// tokens.ErrNotAuthorized (90003), tokens.ErrReauthRequired (90004),
	// *tokens.RefreshError (90005, its RetryAfter), tokens.ErrUnknownCredential (90002).
	Token(ctx context.Context, credential string) (string, error)
	// Rejected reports that TikTok answered code (40105, 40102) to a
	// request whose only credential was token; retry is true when a new
	// token is available for one retry.
	Rejected(ctx context.Context, credential, token string, code int) (retry bool)
	// CredentialFor returns the credential owning advertiserID.
	CredentialFor(advertiserID string) (credential string, ok bool)
	// Claimants returns the credentials that all claim an advertiser no
	// one owns (ok false from CredentialFor); nil for any other.
	Claimants(advertiserID string) []string
}

// Options configure a Core (and the Proxy built on it).
type Options struct {
	// Config is required. The proxy reads Listen, AllowedHosts, Upstream,
	// Credentials (names, default, app, rate_limit), Routing, Breaker,
	// RateLimits, Retry and Clients; zero values take the package
	// defaults, except rate_limit.burst, which must be set with qps
	// (config.Load does).
	Config *config.Config
	// Tokens is required.
	Tokens Tokens
	// Metrics; nil disables them.
	Metrics *metrics.Metrics
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// AccessLog receives the access log, a line per request; nil means
	// Logger. serve batches it (internal/logbuf).
	AccessLog *slog.Logger
	// Transport sends requests to TikTok; nil means a pooled HTTP/2-capable
	// transport that ignores the environment's proxy variables.
	Transport http.RoundTripper
	// AdminURL is the admin listener's base URL shown in error messages
	// ("open <AdminURL>/authorize"); "" means http://<Config.AdminListen>.
	AdminURL string
	// Quota keeps every app under its budget (rate_limits, rate_limit) and
	// the pauses TikTok prescribes; nil means a quota.Limiter of Config in
	// this process (serve passes a Redis-backed one to share the budget
	// between replicas).
	Quota *quota.Limiter
	// Now is the clock of durations and of the retry budget; nil means
	// time.Now. Deadlines (upstream.timeout) always use the real clock,
	// which connections and contexts run on.
	Now func() time.Time
}

// Core is the request path both front ends share. Safe for concurrent use.
type Core struct {
	target           *url.URL
	timeout          time.Duration
	credentialHeader string
	maxInspect       int64
	names            []string
	defaultCred      string
	clients          []client
	apps             map[string]app // credential → the app that signs its advertiser listing
	quota            *quota.Limiter
	retry            retryPolicy
	breakers         map[string]*breaker
	tokens           Tokens
	metrics          *metrics.Metrics
	log              *slog.Logger
	accessLog        *slog.Logger
	accessJSON       *jsonlog.Handler // accessLog's handler when it is serve's, which logs attributes without a slog.Record
	adminURL         string
	now              func() time.Time
	base             http.RoundTripper
	slots            *slots // the in-flight bound

	// credentialKey is credentialHeader canonicalised, its key in an
	// http.Header: worked out once, not on every request.
	credentialKey string
	// credentialValues are the values of each configured credential's
	// answer header (HeaderCredential), made once: headers are only read
	// on the way out.
	credentialValues map[string][]string

	// heading counts the requests sent towards TikTok and not yet settled
	// (the connections they hold or wait for); past traceFrom of them a
	// round trip carries the connection trace (upstreamRoundTrip). With a
	// net/http transport of the caller's (Options.Transport), whose
	// connection bound is unknown, every one does.
	heading   atomic.Int64
	traceFrom int64
}

// NewCore builds a Core. It refuses a non-loopback Config.Listen without
// clients, since the proxy would then lend its tokens to anyone.
func NewCore(opts Options) (*Core, error) {
	cfg := opts.Config
	if cfg == nil {
		return nil, errors.New("proxy: no config")
	}
	if opts.Tokens == nil {
		return nil, errors.New("proxy: no token store")
	}
	target, err := url.Parse(cfg.Upstream.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("proxy: upstream.base_url: %w", err)
	}
	if (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return nil, fmt.Errorf("proxy: upstream.base_url %q is not an absolute http(s) URL", cfg.Upstream.BaseURL)
	}
	if cfg.Listen != "" && !config.IsLoopback(cfg.Listen) && len(cfg.Clients) == 0 {
		return nil, fmt.Errorf("proxy: listen %s is not a loopback address and no clients are configured: add clients so only they can use the credentials", cfg.Listen)
	}
	c := &Core{
		target:           target,
		timeout:          orDefault(cfg.Upstream.Timeout, DefaultTimeout),
		credentialHeader: orDefault(cfg.Routing.CredentialHeader, DefaultCredentialHeader), // as configured, for messages; http.Header canonicalises
		credentialKey:    http.CanonicalHeaderKey(orDefault(cfg.Routing.CredentialHeader, DefaultCredentialHeader)),
		maxInspect:       orDefault(cfg.Routing.MaxInspectBytes, DefaultMaxInspectBytes),
		apps:             map[string]app{},
		credentialValues: map[string][]string{},
		quota:            opts.Quota,
		breakers:         map[string]*breaker{},
		tokens:           opts.Tokens,
		metrics:          opts.Metrics,
		log:              opts.Logger,
		adminURL:         strings.TrimSuffix(opts.AdminURL, "/"),
		now:              opts.Now,
		slots:            newSlots(MaxInflight, MaxQueueWait),
		base:             opts.Transport,
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.accessLog = cmp.Or(opts.AccessLog, c.log)
	c.accessJSON, _ = c.accessLog.Handler().(*jsonlog.Handler)
	if c.now == nil {
		c.now = time.Now
	}
	if c.adminURL == "" && cfg.AdminListen != "" {
		c.adminURL = "http://" + cfg.AdminListen
	}
	switch c.base.(type) {
	case nil:
		_, upstream := fdLimits()
		c.base = newTransport(upstream)
		c.traceFrom = int64(upstream) * 3 / 4
	case *http.Transport:
		// Its connection bound and dialer are the caller's: every round
		// trip is traced.
		c.traceFrom = -1
	default:
		// Not net/http's transport: the trace's hooks would never fire.
		c.traceFrom = math.MaxInt64
	}
	if c.quota == nil {
		c.quota = quota.New(cfg, quota.Options{Metrics: c.metrics})
	}
	c.retry = newRetryPolicy(cfg.Retry, c.now)
	failures := orDefault(cfg.Breaker.ConsecutiveFailures, DefaultConsecutiveFailures)
	openTimeout := orDefault(cfg.Breaker.OpenTimeout, DefaultOpenTimeout)
	for _, cr := range cfg.Credentials {
		if _, dup := c.breakers[cr.Name]; dup || cr.Name == "" {
			return nil, fmt.Errorf("proxy: credential name %q is empty or duplicated", cr.Name)
		}
		c.names = append(c.names, cr.Name)
		if cr.Default || len(cfg.Credentials) == 1 {
			if c.defaultCred != "" {
				return nil, fmt.Errorf("proxy: credentials %q and %q are both default", c.defaultCred, cr.Name)
			}
			c.defaultCred = cr.Name
		}
		// config.Load fills the burst in; a second default here could
		// disagree with the one check and the docs describe.
		if cr.RateLimit.QPS > 0 && cr.RateLimit.Burst < 1 {
			return nil, fmt.Errorf("proxy: credential %q: rate_limit.burst must be at least 1 when qps is set (config.Load fills it in)", cr.Name)
		}
		c.breakers[cr.Name] = c.newBreaker(cr.Name, failures, openTimeout)
		c.apps[cr.Name] = app{id: cr.AppID, secret: cr.AppSecret}
		c.credentialValues[cr.Name] = []string{cr.Name}
	}
	for _, cl := range cfg.Clients {
		c.clients = append(c.clients, newClient(cl))
	}
	return c, nil
}

// newTransport is the pooled transport towards TikTok, with at most
// upstream connections (fdLimits). Proxy is nil so an
// HTTPS_PROXY pointing at this very process is never followed, and
// compression is left to the client so bodies pass through untouched.
func newTransport(upstream int) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: dialWaitingForResources((&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          200,
		MaxIdleConnsPerHost:   100,
		MaxConnsPerHost:       upstream,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		// No ResponseHeaderTimeout: every request's context already ends
		// upstream.timeout after it arrived (exchange), which is never
		// later, and a second timer per request only cost.
		DisableCompression: true,
	}
}

// Tunnel authenticates a forward-proxy client from the CONNECT (or plain
// proxy) request's Proxy-Authorization header (Bearer TOKEN, or Basic with
// the token as password), as the clients config requires; when no clients
// are configured every caller is accepted. It returns the RoundTripper that
// serves every request inside that tunnel on behalf of that client, or,
// when authentication fails, a refusal response (90010 envelope, 401). The
// RoundTripper never returns proxy errors as Go errors: it returns envelope
// *http.Response values. The request given to it has an absolute URL for
// one of the intercepted hosts (or the upstream); the core rewrites it to
// upstream.base_url.
func (c *Core) Tunnel(connect *http.Request) (http.RoundTripper, *http.Response) {
	cl, perr := c.authenticate(connect)
	if perr != nil {
		return nil, errorResponse(perr, newRequestID(), connect)
	}
	return &transport{core: c, client: cl}, nil
}

// transport is the core as an http.RoundTripper for one client: the
// tunnel's (Tunnel), or, for one request of the reverse front end, the
// client its own Proxy-Authorization names, which ReverseProxy removes (it
// is hop-by-hop) before its transport sees the request.
type transport struct {
	core   *Core
	client *client // nil without clients
	// authErr is the client's failed authentication, reported in its
	// turn among the checks of route.
	authErr *Error
	// reverse is the reverse front end serving one request through this
	// transport: it checks the request's Host, and the request given to
	// RoundTrip is ReverseProxy's own outgoing copy, the core's to change
	// (a tunnel's requests are copied first). deadline is then when the
	// request arrived plus upstream.timeout, which also bounds reading its
	// body; zero for a tunnel's, whose requests start their own.
	reverse  *Proxy
	deadline time.Time
}

// RoundTrip routes req and round-trips it to TikTok. Proxy errors come back
// as envelope responses, so err is always nil. The response's body must be
// closed: closing it settles the breaker, the metrics and the log line.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.core
	ex := c.newExchange(req, t.deadline)
	if t.client != nil {
		ex.client = t.client.name
	}
	var out *http.Request
	if t.reverse != nil {
		// ReverseProxy's copy is ours: a second copy of its header map
		// would only cost.
		out = req.WithContext(ex.ctx)
	} else {
		out = req.Clone(ex.ctx)
	}
	if out.Body != nil && out.Body != http.NoBody {
		ex.body = &watchedBody{ReadCloser: out.Body}
		out.Body = ex.body
	}
	if t.reverse != nil {
		if perr := t.reverse.checkHost(out); perr != nil {
			return c.refuse(ex, out, perr), nil
		}
	}
	if perr := c.slots.admit(ex.ctx); perr != nil {
		return c.refuse(ex, out, perr), nil
	}
	defer c.slots.release()
	// A refused route may still name the credential, for the answer's
	// header and the log line.
	var perr *Error
	ex.route, perr = c.route(out, t)
	if perr == nil {
		var resp *http.Response
		if resp, perr = c.send(ex, out); perr == nil {
			return resp, nil
		}
	}
	return c.refuse(ex, out, perr), nil
}

// send takes out along ex.route: the app's budget, circuit breaker, token,
// the round trip to TikTok (retries of transient answers, one retry after
// 40105/40102), all within upstream.timeout of the request's arrival. The response it returns
// settles the exchange when its body is closed; a proxy error it returns
// settles in refuse.
func (c *Core) send(ex *exchange, out *http.Request) (*http.Response, *Error) {
	cred := ex.route.Credential
	// Read before rewrite removes the header: TikTok never sees it.
	if v := out.Header[retryKey]; len(v) > 0 {
		ex.retryWrites = strings.EqualFold(strings.TrimSpace(v[0]), "writes")
	}
	if perr := c.waitTurn(ex, out); perr != nil {
		return nil, perr
	}
	b := c.breakers[cred]
	if b == nil {
		return nil, newError(CodeUnknownCredential, http.StatusBadRequest, "credential %q is not configured", cred)
	}
	done, probe, perr := b.allow()
	if perr != nil {
		return nil, perr
	}
	ex.breaker, ex.done, ex.probe = b, done, probe
	token, err := c.tokens.Token(ex.ctx, cred)
	if err != nil {
		// A wait for the refresh of an expired token that ran out of
		// time is a failed refresh (90005): TikTok never saw the request.
		var re *tokens.RefreshError
		if ex.ctx.Err() != nil && (ex.clientGone() || !errors.As(err, &re)) {
			return nil, c.interrupted(ex)
		}
		return nil, c.tokenError(cred, err)
	}
	ex.token = token
	c.rewrite(out, ex)
	resp, err := c.attempts(ex, out)
	if err != nil {
		return nil, c.failed(ex, err)
	}
	c.received(ex, resp)
	return resp, nil
}

// rewrite makes out the request to TikTok: upstream URL and Host, the body
// selection read, the credential's token, no client credentials and no
// selection header; the advertiser listing signed with the credential's app.
func (c *Core) rewrite(out *http.Request, ex *exchange) {
	out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = c.target.Scheme, c.target.Host, "", ""
	if sel := ex.route.sel; sel != nil {
		switch {
		case sel.replay != nil:
			out.Body = io.NopCloser(bytes.NewReader(sel.replay))
			out.ContentLength = int64(len(sel.replay))
		case sel.body != nil:
			out.Body = sel.body
		}
	}
	h := out.Header
	stripClientCredentials(h, c.credentialHeader)
	delete(h, retryKey)
	h.Set(headerAccessToken, ex.token)
	if out.URL.Path == advertiserGetPath {
		c.signAdvertiserGet(out.URL, ex.route.Credential)
	}
}

// interrupted is the error for a wait (rate limit, token) that the
// request's context ended: the client left, or the deadline passed.
func (c *Core) interrupted(ex *exchange) *Error {
	if ex.clientGone() {
		return errClientGone
	}
	return c.upstreamTimeout()
}

func (c *Core) upstreamTimeout() *Error {
	return newError(CodeUpstream, http.StatusGatewayTimeout,
		"TikTok (%s) did not answer within upstream.timeout (%s); try again later", c.target.Host, c.timeout)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func (c *Core) tokenError(cred string, err error) *Error {
	authorize := c.adminURL + "/authorize"
	if c.adminURL == "" {
		authorize = "/authorize on the admin listener"
	}
	var re *tokens.RefreshError
	switch {
	case errors.Is(err, tokens.ErrNotAuthorized):
		return newError(CodeNotAuthorized, http.StatusServiceUnavailable,
			"credential %q has never been authorized: open %s and authorize it", cred, authorize)
	case errors.Is(err, tokens.ErrReauthRequired):
		return newError(CodeReauthRequired, http.StatusServiceUnavailable,
			"credential %q needs re-authorization (its grant expired or was revoked): open %s and re-authorize it", cred, authorize)
	case errors.As(err, &re):
		e := newError(CodeRefreshFailed, http.StatusServiceUnavailable,
			"credential %q: the access token expired and refreshing it failed; the proxy keeps retrying, try again shortly", cred)
		e.RetryAfter = max(re.RetryAfter, time.Second)
		return e
	case errors.Is(err, tokens.ErrUnknownCredential):
		return newError(CodeUnknownCredential, http.StatusBadRequest, "credential %q is not known to the token store", cred)
	default:
		c.log.Error("token store failed", "credential", cred, "err", err)
		e := newError(CodeRefreshFailed, http.StatusServiceUnavailable,
			"credential %q: the token store is not available; try again shortly", cred)
		e.RetryAfter = 10 * time.Second
		return e
	}
}

// errClientGone marks a request whose client hung up; it is logged 499.
var errClientGone = &Error{Status: 499, Message: "client closed the request"}

// Pauses lists the pauses TikTok's rate-limit answers put on the apps,
// endpoints and advertisers, for the setup page.
func (c *Core) Pauses() []quota.Pause { return c.quota.Pauses() }

// BreakerStatus is a credential's circuit breaker as the setup page
// explains it.
type BreakerStatus struct {
	// State is "closed", "half-open" or "open"; "" for an unknown credential.
	State string
	// Until is when an open breaker lets a request through again: when it
	// opened plus breaker.open_timeout. Zero unless open.
	Until time.Time
	// LastError is the failure that opened the breaker: TikTok's HTTP
	// status or code, or why TikTok could not be reached; never a token or
	// a secret. "" while closed.
	LastError string
}

// Breaker returns the credential's circuit breaker: its state, until when
// it pauses requests and why.
func (c *Core) Breaker(name string) BreakerStatus {
	b, ok := c.breakers[name]
	if !ok {
		return BreakerStatus{}
	}
	state := b.cb.State()
	out := BreakerStatus{State: state.String()}
	if state == gobreaker.StateClosed {
		return out
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out.LastError = b.openError
	if state == gobreaker.StateOpen {
		out.Until = b.openedAt.Add(b.timeout)
	}
	return out
}

// newRequestID returns 16 random bytes in hex.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// methodLabel keeps the metrics' method label bounded.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodHead, http.MethodOptions:
		return m
	}
	return "OTHER"
}

func (c *Core) known(name string) bool {
	_, ok := c.breakers[name]
	return ok
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
