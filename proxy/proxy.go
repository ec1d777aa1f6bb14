// Package proxy is the request path of tiktok-auth-proxy: it picks the
// credential a request belongs to, checks the calling client, applies the
// credential's rate limit and circuit breaker, injects the access token and
// forwards the request to TikTok, reading TikTok's envelope code on the way
// back without buffering the body.
//
// A Proxy is an http.Handler for the proxy listener (reverse mode: scripts
// call http://localhost:8080/open_api/...). Its two steps are exported for
// other front ends: Prepare (target check, client authentication,
// credential selection) and Forward (rate limit, breaker, token, forward,
// one retry after 40105/40102). A forward-proxy (HTTPS_PROXY, MITM) front end
// terminates TLS for the TikTok host and hands every decrypted request to
// ServeHTTP, or to Prepare and Forward when it owns the ResponseWriter:
// requests in absolute form for the upstream host are accepted, requests for
// any other host get 90009.
package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
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
	// DefaultMaxWait is how long a request may wait for its credential's
	// rate limit before getting 90012.
	DefaultMaxWait = time.Second
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
}

// Options configure a Proxy.
type Options struct {
	// Config is required. The proxy reads Listen, Upstream, Credentials
	// (names, default, rate_limit), Routing, Breaker and Clients; zero
	// values take the package defaults, except rate_limit.burst, which
	// must be set with qps (config.Load does).
	Config *config.Config
	// Tokens is required.
	Tokens Tokens
	// Metrics; nil disables them.
	Metrics *metrics.Metrics
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Transport sends requests to TikTok; nil means a pooled HTTP/2-capable
	// transport that ignores the environment's proxy variables.
	Transport http.RoundTripper
	// AdminURL is the admin listener's base URL shown in error messages
	// ("open <AdminURL>/authorize"); "" means http://<Config.AdminListen>.
	AdminURL string
	// MaxWait bounds how long a request waits for its credential's
	// rate_limit; beyond it the request gets 90012. 0 means DefaultMaxWait.
	MaxWait time.Duration
	// Now is the clock of the rate limiter and of durations; nil means
	// time.Now. Deadlines (upstream.timeout) always use the real clock,
	// which connections and contexts run on.
	Now func() time.Time
}

// Proxy forwards /open_api/ requests to TikTok with the right credential's
// token. It is an http.Handler, safe for concurrent use.
type Proxy struct {
	target           *url.URL
	timeout          time.Duration
	credentialHeader string
	maxInspect       int64
	names            []string
	defaultCred      string
	clients          []client
	apps             map[string]app  // credential → the app that signs its advertiser listing
	hosts            map[string]bool // Host names answered without clients besides loopback: listen, allowed_hosts (lower case)
	limiters         map[string]*rate.Limiter
	breakers         map[string]*breaker
	tokens           Tokens
	metrics          *metrics.Metrics
	log              *slog.Logger
	adminURL         string
	maxWait          time.Duration
	now              func() time.Time
	// wait sleeps for a rate-limit delay unless ctx ends first; tests
	// replace it to see the delay without spending it.
	wait func(ctx context.Context, d time.Duration) error
	rp   *httputil.ReverseProxy
}

// New builds a Proxy. It refuses a non-loopback Config.Listen without
// clients, since the proxy would then lend its tokens to anyone.
func New(opts Options) (*Proxy, error) {
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
	p := &Proxy{
		target:           target,
		timeout:          orDefault(cfg.Upstream.Timeout, DefaultTimeout),
		credentialHeader: orDefault(cfg.Routing.CredentialHeader, DefaultCredentialHeader), // as configured, for messages; http.Header canonicalises
		maxInspect:       orDefault(cfg.Routing.MaxInspectBytes, DefaultMaxInspectBytes),
		limiters:         map[string]*rate.Limiter{},
		breakers:         map[string]*breaker{},
		apps:             map[string]app{},
		hosts:            map[string]bool{strings.ToLower(cfg.Listen): true},
		tokens:           opts.Tokens,
		metrics:          opts.Metrics,
		log:              opts.Logger,
		adminURL:         strings.TrimSuffix(opts.AdminURL, "/"),
		maxWait:          orDefault(opts.MaxWait, DefaultMaxWait),
		now:              opts.Now,
		wait:             sleep,
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.adminURL == "" && cfg.AdminListen != "" {
		p.adminURL = "http://" + cfg.AdminListen
	}
	failures := orDefault(cfg.Breaker.ConsecutiveFailures, DefaultConsecutiveFailures)
	openTimeout := orDefault(cfg.Breaker.OpenTimeout, DefaultOpenTimeout)
	for _, c := range cfg.Credentials {
		if _, dup := p.breakers[c.Name]; dup || c.Name == "" {
			return nil, fmt.Errorf("proxy: credential name %q is empty or duplicated", c.Name)
		}
		p.names = append(p.names, c.Name)
		if c.Default || len(cfg.Credentials) == 1 {
			if p.defaultCred != "" {
				return nil, fmt.Errorf("proxy: credentials %q and %q are both default", p.defaultCred, c.Name)
			}
			p.defaultCred = c.Name
		}
		if c.RateLimit.QPS > 0 {
			// config.Load fills the burst in; a second default here could
			// disagree with the one check and the docs describe.
			if c.RateLimit.Burst < 1 {
				return nil, fmt.Errorf("proxy: credential %q: rate_limit.burst must be at least 1 when qps is set (config.Load fills it in)", c.Name)
			}
			p.limiters[c.Name] = rate.NewLimiter(rate.Limit(c.RateLimit.QPS), c.RateLimit.Burst)
		}
		p.breakers[c.Name] = p.newBreaker(c.Name, failures, openTimeout)
		p.apps[c.Name] = app{id: c.AppID, secret: c.AppSecret}
	}
	for _, c := range cfg.Clients {
		p.clients = append(p.clients, newClient(c))
	}
	for _, h := range cfg.AllowedHosts {
		p.hosts[strings.ToLower(h)] = true
	}
	base := opts.Transport
	if base == nil {
		base = newTransport(p.timeout)
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      &attempts{p: p, base: base},
		FlushInterval:  -1,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// newTransport is the pooled transport towards TikTok. Proxy is nil so an
// HTTPS_PROXY pointing at this very process is never followed, and
// compression is left to the client so bodies pass through untouched.
func newTransport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          200,
		MaxIdleConnsPerHost:   100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: timeout,
		DisableCompression:    true,
	}
}

// Route is where Prepare decided a request goes.
type Route struct {
	Credential  string   // the configured credential name
	Advertisers []string // advertiser ids the request names (may be empty)
	Client      string   // the authenticated client's name ("" without clients)
	sel         *selection
	// tokenOnly is set when the injected token is the request's only
	// credential, so a 40105/40102 speaks of the token (see tokenOnly).
	tokenOnly bool
}

// exchange is one request's state, carried in its context from ServeHTTP
// through the ReverseProxy hooks. The hooks run on the handler goroutine;
// only the watched bodies are read elsewhere (they lock).
type exchange struct {
	id    string
	start time.Time
	// deadline ends the whole request, upstream.timeout after it arrived:
	// reading its body, waiting for a token and TikTok's answer.
	deadline  time.Time
	clientCtx context.Context // the client's own context, to tell a hang-up from a timeout
	route     *Route
	token     string
	breaker   *breaker
	done      func(error) // breaker outcome; nil once reported
	probe     bool        // the half-open breaker's one request
	// outcome is reported to the breaker when the request ends: nil
	// success, errFailure, errExcluded (the default: nothing learnt).
	outcome  error
	code     int // TikTok envelope code of the response, when codeOK
	codeOK   bool
	retried  bool
	proxyErr int
	status   int          // overrides the status written, for a response cut off mid-body
	hungUp   bool         // the client went away
	body     *watchedBody // the client's body (ServeHTTP only)
	resp     *watchedBody // TikTok's response body once headers arrived
}

type exchangeKey struct{}

func exchangeOf(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

func (p *Proxy) newExchange(r *http.Request) (*exchange, *http.Request) {
	ex := &exchange{id: newRequestID(), start: p.now(), deadline: time.Now().Add(p.timeout), clientCtx: r.Context(), outcome: errExcluded}
	return ex, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex))
}

// pastDeadline reports whether the request's deadline has passed.
func (ex *exchange) pastDeadline() bool { return !time.Now().Before(ex.deadline) }

// clientGone reports whether the client hung up. On HTTP/1 a body read
// failing at the deadline ServeHTTP sets also cancels the client's
// context, so a cancellation from then on is the timeout's, not the client's.
func (ex *exchange) clientGone() bool {
	return ex.clientCtx.Err() != nil && !ex.pastDeadline()
}

// ServeHTTP serves the proxy listener: Prepare, Forward, one log line and
// the request metrics.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ex, r := p.newExchange(r)
	rec := &recorder{ResponseWriter: w}
	rec.Header().Set(HeaderRequestID, ex.id)
	if r.Body != nil && r.Body != http.NoBody {
		ex.body = &watchedBody{ReadCloser: r.Body}
		r.Body = ex.body
		// Nothing else bounds reading the body: Prepare reads it before any
		// upstream call, and the server sets only ReadHeaderTimeout, so a
		// client that stops sending would hold the handler (and shutdown)
		// forever. net/http lifts the deadline itself once the body hits
		// EOF (connReader.startBackgroundRead clears it before reading
		// ahead to notice a hang-up), so the read-ahead never fails at it
		// and cancels the connection's context. A writer without deadlines
		// (a ResponseRecorder) leaves the body to its own limits.
		_ = http.NewResponseController(rec).SetReadDeadline(ex.deadline)
	}
	// ReverseProxy aborts a response whose copy failed (the client hung up
	// or TikTok's body broke off) by panicking with http.ErrAbortHandler;
	// Forward has settled the outcome, and the request is still logged and
	// counted before the panic goes on to net/http, which closes the
	// connection.
	defer func() {
		v := recover()
		p.observe(ex, r, rec)
		if v != nil {
			panic(v)
		}
	}()
	var rt *Route
	perr := p.checkHost(r)
	if perr == nil {
		rt, perr = p.Prepare(r)
	}
	if perr == nil {
		perr = p.Forward(rec, r, rt)
	}
	if perr != nil {
		// A client that left mid-body gets no answer (and is logged 499),
		// whatever reading its body then failed with.
		if perr == errClientGone || ex.clientGone() {
			ex.hungUp = true
		} else {
			ex.proxyErr = perr.Code
			if ex.route != nil {
				rec.Header().Set(HeaderCredential, ex.route.Credential)
			}
			WriteError(rec, perr, ex.id)
		}
	}
}

// Prepare checks that r is for TikTok's /open_api/, authenticates the
// client, picks the credential and checks the client may use it. It may
// consume a bounded prefix of r.Body; Forward sends the body on unchanged.
// Only the connection's read deadline bounds those reads: ServeHTTP sets it
// to upstream.timeout, and a front end calling Prepare itself should too
// (http.ResponseController.SetReadDeadline); a read past it is 90011 (408).
func (p *Proxy) Prepare(r *http.Request) (*Route, *Error) {
	if perr := p.checkTarget(r); perr != nil {
		return nil, perr
	}
	if crossSite(r) {
		return nil, newError(CodeClientAuth, http.StatusForbidden,
			"a browser marked this request as sent by a page of another site (Origin, Sec-Fetch-Site): the proxy spends with its credentials only for scripts, never for web pages")
	}
	cl, perr := p.authenticate(r)
	if perr != nil {
		return nil, perr
	}
	sel, perr := p.selectCredential(r)
	if perr != nil {
		return nil, perr
	}
	rt := &Route{Credential: sel.credential, Advertisers: sel.advertisers, sel: sel, tokenOnly: tokenOnly(r, sel)}
	// The route is recorded before the client check so that a 403 names the
	// credential the client was refused.
	if ex := exchangeOf(r.Context()); ex != nil {
		ex.route = rt
	}
	if cl != nil {
		rt.Client = cl.name
		if !cl.creds[sel.credential] {
			return nil, newError(CodeClientAuth, http.StatusForbidden,
				"client %q may not use credential %q: add it to the client's credentials in config", cl.name, sel.credential)
		}
	}
	return rt, nil
}

// checkTarget allows only /open_api/ paths, and absolute-form URLs only for
// the upstream host, so the proxy is never an open relay.
func (p *Proxy) checkTarget(r *http.Request) *Error {
	if r.URL.Host != "" && !sameHost(r.URL, p.target) {
		return newError(CodeNotFound, http.StatusMisdirectedRequest,
			"this proxy forwards only to %s, not %s", p.target.Host, r.URL.Host)
	}
	if !strings.HasPrefix(r.URL.Path, "/open_api/") || !strings.HasPrefix(path.Clean(r.URL.Path), "/open_api/") {
		return newError(CodeNotFound, http.StatusNotFound,
			"only /open_api/ paths are forwarded to TikTok; call http://<proxy>/open_api/v1.3/...")
	}
	if r.URL.Path != advertiserGetPath && hasSegment(r.URL.Path, "oauth2") {
		return newError(CodeNotFound, http.StatusNotFound,
			"the proxy owns the OAuth grants, so /oauth2/ paths are not forwarded; the one exception, %s, lists the credential's advertisers (the proxy adds app_id and secret)",
			advertiserGetPath)
	}
	if ambiguousPath(r.URL) {
		return newError(CodeNotFound, http.StatusNotFound,
			"paths with a backslash, a ';' or an encoded '/', '\\' or '.' are not forwarded: TikTok's API has none, and servers disagree on what they mean")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return newError(CodeNotFound, http.StatusMethodNotAllowed,
			"method %s is not forwarded: TikTok's API takes only GET and POST", r.Method)
	}
	return nil
}

// ambiguousPath reports a path that servers may read differently from the
// proxy's check above: a backslash or ';' (a separator for some), or an
// encoded '/', '\' or '.' (decoded by some before routing).
func ambiguousPath(u *url.URL) bool {
	if strings.ContainsAny(u.Path, "\\;") {
		return true
	}
	raw := strings.ToLower(u.EscapedPath())
	return strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") || strings.Contains(raw, "%2e")
}

// checkHost refuses, when no clients authenticate callers, a Host other
// than a loopback name, the listen address or one in allowed_hosts: a web
// page whose DNS name was rebound to 127.0.0.1 would otherwise reach the
// proxy as its own origin. An absolute-form request names its host in the
// URL, which checkTarget checks.
func (p *Proxy) checkHost(r *http.Request) *Error {
	if len(p.clients) > 0 || r.URL.Host != "" || config.IsLoopbackHost(r.Host) {
		return nil
	}
	h := strings.ToLower(r.Host)
	if name, _, err := net.SplitHostPort(h); p.hosts[h] || (err == nil && p.hosts[name]) {
		return nil
	}
	return newError(CodeNotFound, http.StatusMisdirectedRequest,
		"this proxy answers only loopback host names, its listen address and allowed_hosts, not %q: call it as 127.0.0.1 or localhost, or add the name to allowed_hosts", r.Host)
}

// crossSite reports a request a browser marks as sent by a page of another
// origin: Sec-Fetch-Site other than same-origin or none (typed by the
// user), or an Origin other than the request's own. Scripts send neither.
func crossSite(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return true
	}
	origins := r.Header.Values("Origin")
	if len(origins) == 0 {
		return false
	}
	own := r.URL.Scheme + "://" + r.URL.Host
	if r.URL.Host == "" {
		own = "http://" + r.Host
		if r.TLS != nil {
			own = "https://" + r.Host
		}
	}
	return len(origins) > 1 || !strings.EqualFold(origins[0], own)
}

// hasSegment reports whether the path has the segment seg, in any case.
func hasSegment(p, seg string) bool {
	for s := range strings.SplitSeq(p, "/") {
		if strings.EqualFold(s, seg) {
			return true
		}
	}
	return false
}

// Forward sends r along rt: rate limit, circuit breaker, token, the
// ReverseProxy (at most one retry after 40105/40102), all within
// upstream.timeout of the request's arrival. It returns a proxy error when
// nothing was written yet (the caller writes it with WriteError); upstream
// failures (90007) it writes itself.
func (p *Proxy) Forward(w http.ResponseWriter, r *http.Request, rt *Route) *Error {
	ex := exchangeOf(r.Context())
	if ex == nil {
		ex, r = p.newExchange(r)
	}
	ex.route = rt
	cred := rt.Credential
	ctx, cancel := context.WithDeadline(r.Context(), ex.deadline)
	defer cancel()
	if perr := p.waitRate(ctx, ex, cred); perr != nil {
		return perr
	}
	b := p.breakers[cred]
	if b == nil {
		return newError(CodeUnknownCredential, http.StatusBadRequest, "credential %q is not configured", cred)
	}
	done, probe, perr := b.allow()
	if perr != nil {
		return perr
	}
	ex.breaker, ex.done, ex.probe = b, done, probe
	// The breaker hears the outcome once the response has ended, so a body
	// cut off half-way counts too (a probe's success is heard earlier, see
	// modifyResponse); a panic (an aborted copy) is settled here, then goes
	// on.
	defer func() {
		v := recover()
		if v != nil || ex.respErr() != nil {
			p.cutOff(ex)
		}
		ex.finish(ex.outcome)
		if v != nil {
			panic(v)
		}
	}()
	token, err := p.tokens.Token(ctx, cred)
	if err != nil {
		if ctx.Err() != nil {
			return p.interrupted(ex)
		}
		return p.tokenError(cred, err)
	}
	ex.token = token

	if sel := rt.sel; sel != nil {
		switch {
		case sel.replay != nil:
			r.Body = io.NopCloser(bytes.NewReader(sel.replay))
			r.ContentLength = int64(len(sel.replay))
		case sel.body != nil:
			r.Body = sel.body
		}
	}
	p.rp.ServeHTTP(w, r.WithContext(ctx))
	return nil
}

// respErr is the error that ended the copy of TikTok's response body.
func (ex *exchange) respErr() error {
	if ex.resp == nil {
		return nil
	}
	_, err := ex.resp.state()
	return err
}

// cutOff settles a response that ended before its body did. A client that
// hung up says nothing about TikTok. Nor does one too slow to take the body
// within upstream.timeout: the copy waits on the client while it writes and
// on TikTok while it reads, so a read that failed at the deadline having
// begun only after it means the copy had been stuck writing; the request
// is logged and counted as 408. Otherwise TikTok's body broke off or
// upstream.timeout cut it while TikTok kept the copy waiting: the client
// has a 200 and half a body, but the request is logged and counted as the
// 504 (or 502) it really was, and it is a breaker failure.
func (p *Proxy) cutOff(ex *exchange) {
	err := ex.respErr()
	timedOut := ex.pastDeadline() || isTimeout(err)
	switch {
	case ex.clientGone():
		ex.outcome, ex.hungUp = errExcluded, true
	case err == nil:
		// An abort with TikTok's body intact: the write to the client
		// failed without its context ending. Nothing to hold against TikTok.
		ex.outcome = errExcluded
	case timedOut && !ex.resp.failedReadBegan().Before(ex.deadline):
		ex.outcome, ex.status = errExcluded, http.StatusRequestTimeout
		p.log.Warn("client too slow: response not delivered within upstream.timeout", "request_id", ex.id,
			"credential", ex.route.Credential, "timeout", p.timeout.String())
	case timedOut:
		ex.outcome, ex.proxyErr, ex.status = errFailure, CodeUpstream, http.StatusGatewayTimeout
		p.log.Warn("upstream response cut off by upstream.timeout", "request_id", ex.id, "credential", ex.route.Credential,
			"timeout", p.timeout.String(), "err", err)
	default:
		ex.outcome, ex.proxyErr, ex.status = errFailure, CodeUpstream, http.StatusBadGateway
		p.log.Warn("upstream response broke off", "request_id", ex.id, "credential", ex.route.Credential, "err", err)
	}
}

// interrupted is the error for a wait (rate limit, token) that ctx ended:
// the client left, or the request's deadline passed.
func (p *Proxy) interrupted(ex *exchange) *Error {
	if ex.clientGone() {
		return errClientGone
	}
	return p.upstreamTimeout()
}

func (p *Proxy) upstreamTimeout() *Error {
	return newError(CodeUpstream, http.StatusGatewayTimeout,
		"TikTok (%s) did not answer within upstream.timeout (%s); try again later", p.target.Host, p.timeout)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func (p *Proxy) tokenError(cred string, err error) *Error {
	authorize := p.adminURL + "/authorize"
	if p.adminURL == "" {
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
		p.log.Error("token store failed", "credential", cred, "err", err)
		e := newError(CodeRefreshFailed, http.StatusServiceUnavailable,
			"credential %q: the token store is not available; try again shortly", cred)
		e.RetryAfter = 10 * time.Second
		return e
	}
}

// errClientGone marks a request whose client hung up: nothing is written.
var errClientGone = &Error{Status: 499, Message: "client closed the request"}

// rewrite builds the outbound request: upstream URL and Host, the
// credential's token, no client credentials and no selection header.
// Rewrite (unlike Director) drops inbound X-Forwarded-* headers, and none
// are added, so nothing about the client leaks to TikTok.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	ex := exchangeOf(pr.In.Context())
	pr.SetURL(p.target)
	pr.Out.Host = ""
	h := pr.Out.Header
	h.Del(p.credentialHeader)
	h.Del(headerProxyAuth)
	h.Set(headerAccessToken, ex.token)
	if pr.In.URL.Path == advertiserGetPath {
		p.signAdvertiserGet(pr.Out.URL, ex.route.Credential)
	}
}

// modifyResponse labels the response with its credential, decides the
// breaker outcome now that the envelope code has been peeked, and watches
// the body so a copy that breaks off can be told from a client hang-up.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	ex := exchangeOf(resp.Request.Context())
	resp.Header.Set(HeaderCredential, ex.route.Credential)
	if resp.StatusCode >= 500 || (ex.codeOK && isServerCode(ex.code)) {
		ex.outcome = errFailure
	} else {
		ex.outcome = nil
		// Status and envelope show TikTok is back. A half-open breaker
		// refuses everything else while its probe is out, and a long
		// report would keep it out for up to upstream.timeout, so a
		// probe's success is reported now; its body breaking off later
		// is then a failure of its own (finish), towards tripping the
		// breaker again. Other requests wait for their body's end:
		// reported early, every success would reset the consecutive
		// failures of a TikTok that stalls mid-body, which would then
		// never trip it.
		if ex.probe {
			ex.finish(nil)
		}
	}
	// ReverseProxy needs a 101's body to stay its io.ReadWriteCloser.
	if resp.StatusCode != http.StatusSwitchingProtocols {
		ex.resp = &watchedBody{ReadCloser: resp.Body}
		resp.Body = ex.resp
	}
	return nil
}

// errorHandler answers a failed round trip: nothing for a client that hung
// up, 90011 when the client's own body failed (408 when it stalled), else
// 90007 (502 unreachable, 504 timed out).
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	ex := exchangeOf(r.Context())
	if ex.clientGone() {
		ex.outcome, ex.hungUp = errExcluded, true
		return
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// url.Error quotes the URL, whose query may carry an app secret.
		err = ue.Err
	}
	// The transport reads the client's body only once connected, and a
	// TikTok that reads it slowly blocks the transport's writes, not its
	// reads: a Read waiting on the client at the deadline (or failed by
	// it) means the client stalled, which says nothing about TikTok.
	reading, bodyErr := ex.body.state()
	var perr *Error
	switch {
	case bodyErr != nil && !isTimeout(bodyErr):
		ex.outcome = errExcluded
		perr = p.bodyError(bodyErr)
	case isTimeout(bodyErr) || (reading && ex.pastDeadline()):
		ex.outcome = errExcluded
		perr = p.bodyTimeout()
	case ex.pastDeadline() || isTimeout(err):
		ex.outcome = errFailure
		perr = p.upstreamTimeout()
	default:
		ex.outcome = errFailure
		perr = newError(CodeUpstream, http.StatusBadGateway,
			"TikTok (%s) could not be reached: %v; try again later", p.target.Host, err)
	}
	ex.proxyErr = perr.Code
	w.Header().Set(HeaderCredential, ex.route.Credential)
	if ex.outcome == errFailure {
		p.log.Warn("upstream request failed", "request_id", ex.id, "credential", ex.route.Credential, "err", err)
	}
	WriteError(w, perr, ex.id)
}

// observe writes the request's log line and metrics.
func (p *Proxy) observe(ex *exchange, r *http.Request, rec *recorder) {
	d := p.now().Sub(ex.start)
	status := rec.status
	switch {
	case ex.hungUp:
		status = 499
	case ex.status != 0:
		status = ex.status
	case status == 0:
		status = http.StatusOK
	}
	cred := "none"
	if ex.route != nil {
		cred = ex.route.Credential
	}
	p.metrics.ObserveRequest(cred, methodLabel(r.Method), status, d)
	attrs := []slog.Attr{
		slog.String("request_id", ex.id),
		slog.String("credential", cred),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Float64("duration_seconds", d.Seconds()),
		slog.Int64("bytes", rec.bytes),
	}
	if ex.codeOK {
		attrs = append(attrs, slog.Int("tiktok_code", ex.code))
	}
	if ex.proxyErr != 0 {
		attrs = append(attrs, slog.Int("proxy_error", ex.proxyErr))
	}
	if ex.retried {
		attrs = append(attrs, slog.Bool("retried", true))
	}
	p.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

// finish reports the breaker outcome once; after a probe's early success
// only a failure is reported, on its own.
func (ex *exchange) finish(err error) {
	switch {
	case ex.done != nil:
		ex.done(err)
		ex.done = nil
	case ex.probe && err == errFailure:
		ex.breaker.fail()
	}
}

// recorder remembers the status and byte count; Unwrap lets
// http.ResponseController (used by ReverseProxy) flush through it.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

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

func (p *Proxy) known(name string) bool {
	_, ok := p.breakers[name]
	return ok
}

// sameHost compares hosts with default ports filled from each URL's scheme.
func sameHost(a, b *url.URL) bool {
	return strings.EqualFold(a.Hostname(), b.Hostname()) && portOf(a) == portOf(b)
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "http" {
		return "80"
	}
	return "443"
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
