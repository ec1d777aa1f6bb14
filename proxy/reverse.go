package proxy

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// Proxy is the reverse front end, the proxy listener's http.Handler:
// scripts call http://localhost:8080/open_api/... and an
// httputil.ReverseProxy sends each request through the Core. What is its
// own is what only a listener can check: the Host a request names and the
// read deadline of its connection. Safe for concurrent use.
type Proxy struct {
	core  *Core
	hosts map[string]bool       // Host names answered without clients besides loopback: listen, allowed_hosts (lower case)
	rp    httputil.ReverseProxy // without its Transport, which each request gets
}

// New builds the Core and the reverse front end over it. It refuses a
// non-loopback Config.Listen without clients, since the proxy would then
// lend its tokens to anyone.
func New(opts Options) (*Proxy, error) {
	core, err := NewCore(opts)
	if err != nil {
		return nil, err
	}
	cfg := opts.Config
	p := &Proxy{core: core, hosts: map[string]bool{strings.ToLower(cfg.Listen): true}}
	for _, h := range cfg.AllowedHosts {
		p.hosts[strings.ToLower(h)] = true
	}
	p.rp = httputil.ReverseProxy{
		// The core rewrites the request; Rewrite (unlike Director) has
		// ReverseProxy drop inbound X-Forwarded-* headers, and none are
		// added, so nothing about the client leaks to TikTok. The query
		// goes on as sent: ReverseProxy drops what Go cannot parse (a ';',
		// over 10,000 parameters), which would send TikTok another request
		// than the client's; selection refuses such a query instead.
		Rewrite: func(pr *httputil.ProxyRequest) { pr.Out.URL.RawQuery = pr.In.URL.RawQuery },
		// A body of unknown length (a report streamed in chunks) or an
		// event stream is flushed after every write whatever this says;
		// one of known length goes out as net/http's buffer fills, which
		// saves a write per chunk.
		FlushInterval: 0,
		// A 32 KiB copy buffer per request was the proxy's largest
		// allocation; pooled, it is reused.
		BufferPool: copyBuffers{},
		ErrorLog:   slog.NewLogLogger(core.log.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// Core is the request path under p, which the forward front end shares.
func (p *Proxy) Core() *Core { return p.core }

// Breaker is Core.Breaker.
func (p *Proxy) Breaker(name string) BreakerStatus { return p.core.Breaker(name) }

// ServeHTTP serves the proxy listener. The request's deadline,
// upstream.timeout from its arrival, also bounds reading its body: nothing
// else would, since the server sets only ReadHeaderTimeout, and a client
// that stops sending would hold the handler (and shutdown) forever.
// net/http lifts the read deadline itself once the body hits EOF
// (connReader.startBackgroundRead clears it before reading ahead to notice
// a hang-up), so the read-ahead never fails at it. A writer without
// deadlines (a ResponseRecorder) leaves the body to its own limits.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	deadline := boundBodyRead(w, r, p.core.timeout)
	cl, authErr := p.core.authenticate(r)
	rp := p.rp
	rp.Transport = &transport{core: p.core, client: cl, authErr: authErr, reverse: p, deadline: deadline}
	rp.ServeHTTP(w, r)
}

// checkHost refuses a request for another host: in absolute form, one
// whose URL is not the upstream's; and, when no clients authenticate
// callers, one whose Host is not a loopback name, the listen address or
// in allowed_hosts, since a web page whose DNS name was rebound to
// 127.0.0.1 would otherwise reach the proxy as its own origin.
func (p *Proxy) checkHost(r *http.Request) *Error {
	if r.URL.Host != "" {
		if sameHost(r.URL, p.core.target) {
			return nil
		}
		return newError(CodeNotFound, http.StatusMisdirectedRequest,
			"this proxy forwards only to %s, not %s", p.core.target.Host, r.URL.Host)
	}
	if len(p.core.clients) > 0 || config.IsLoopbackHost(r.Host) {
		return nil
	}
	h := strings.ToLower(r.Host)
	if name, _, err := net.SplitHostPort(h); p.hosts[h] || (err == nil && p.hosts[name]) {
		return nil
	}
	return newError(CodeNotFound, http.StatusMisdirectedRequest,
		"this proxy answers only loopback host names, its listen address and allowed_hosts, not %q: call it as 127.0.0.1 or localhost, or add the name to allowed_hosts", r.Host)
}

// boundBodyRead sets the read deadline of r's connection to d from now,
// when r has a body, and returns that deadline: nothing else bounds reading
// a body on a listener that sets only ReadHeaderTimeout.
func boundBodyRead(w http.ResponseWriter, r *http.Request, d time.Duration) time.Time {
	deadline := time.Now().Add(d)
	if r.Body != nil && r.Body != http.NoBody {
		_ = http.NewResponseController(w).SetReadDeadline(deadline)
	}
	return deadline
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

// copyBuffers is the ReverseProxy's BufferPool: 32 KiB buffers, as
// ReverseProxy would allocate for each response, kept for reuse.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (copyBuffers) Get() []byte { return copyBufferPool.Get().(*[32 << 10]byte)[:] }

func (copyBuffers) Put(b []byte) {
	if len(b) == 32<<10 {
		copyBufferPool.Put((*[32 << 10]byte)(b))
	}
}
