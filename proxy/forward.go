package proxy

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/elazarl/goproxy"
)

// DefaultCertCacheSize is how many leaf certificates a Forward keeps when
// ForwardOptions.CertCacheSize is 0.
const DefaultCertCacheSize = 64

// tunneler is the proxy core as the forward front end needs it: it
// authenticates the client of a CONNECT (or plain proxy) request by its
// Proxy-Authorization and returns the RoundTripper serving every request
// of that tunnel for that client, or the refusal to send instead. The
// RoundTripper answers proxy errors with envelope responses; its error
// means it could not start. Implementations must be safe for concurrent
// use.
type tunneler interface {
	Tunnel(connect *http.Request) (http.RoundTripper, *http.Response)
}

// ForwardOptions configure a Forward.
type ForwardOptions struct {
	// CA signs the certificates shown to clients for Hosts; required, with
	// its private key (config.ForwardProxy.LoadCA loads one). goproxy's
	// built-in CA is never used.
	CA tls.Certificate
	// Hosts are the only host names intercepted (any case, no port);
	// required. Every other CONNECT or plain-HTTP request gets 403.
	Hosts []string
	// CertCacheSize bounds how many leaf certificates are kept, least
	// recently used dropped first; 0 means DefaultCertCacheSize.
	CertCacheSize int
	// IdleTimeout closes a tunnel that waits this long for its next
	// request (or for its TLS handshake and first request); 0 means
	// DefaultTunnelIdleTimeout.
	IdleTimeout time.Duration
	// ReadTimeout bounds reading a request's body, from its header on,
	// inside a tunnel and in a plain-HTTP request: upstream.timeout, as on
	// the proxy listener; 0 means DefaultTimeout.
	ReadTimeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Forward is the forward-proxy front end (HTTPS_PROXY): an http.Handler for
// the forward listener built on goproxy. A CONNECT to one of the hosts is
// authenticated by the core, answered 200, and its TLS terminated with a
// certificate signed by the operator's CA; every request inside the tunnel
// goes to the core's RoundTripper for that client. Plain-HTTP proxy
// requests for the hosts are served the same way. Anything else is refused
// with 403, so the proxy is never an open relay. Safe for concurrent use.
type Forward struct {
	gp     *goproxy.ProxyHttpServer
	core   tunneler
	hosts  map[string]bool
	names  string // the hosts, for messages
	mitm   *goproxy.ConnectAction
	reject *goproxy.ConnectAction
	log    *slog.Logger
	tuns   *tunnels
}

// tunnel is what a CONNECT leaves for the requests inside it (goproxy
// copies ProxyCtx.UserData to each of them): the core's RoundTripper for
// its client and the connection it runs on (nil for a plain-HTTP request).
type tunnel struct {
	rt http.RoundTripper
	hj *hijacker
}

// NewForward builds the forward front end over core.
func NewForward(opts ForwardOptions, core tunneler) (*Forward, error) {
	if core == nil {
		return nil, errors.New("proxy: forward: no core")
	}
	if len(opts.CA.Certificate) == 0 || opts.CA.PrivateKey == nil {
		return nil, errors.New("proxy: forward: no CA certificate and key")
	}
	if len(opts.Hosts) == 0 {
		return nil, errors.New("proxy: forward: no hosts to intercept")
	}
	f := &Forward{core: core, hosts: map[string]bool{}, log: opts.Logger, tuns: &tunnels{
		idle: orDefault(opts.IdleTimeout, DefaultTunnelIdleTimeout),
		read: orDefault(opts.ReadTimeout, DefaultTimeout),
		open: map[*tunnelConn]struct{}{},
	}}
	if f.log == nil {
		f.log = slog.Default()
	}
	for _, h := range opts.Hosts {
		f.hosts[strings.ToLower(h)] = true
	}
	names := make([]string, 0, len(f.hosts))
	for h := range f.hosts {
		names = append(names, h)
	}
	slices.Sort(names)
	f.names = strings.Join(names, ", ")
	f.mitm = &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(&opts.CA)}
	// goproxy.RejectConnect would do, but carries goproxy's built-in CA.
	f.reject = &goproxy.ConnectAction{Action: goproxy.ConnectReject}

	gp := goproxy.NewProxyHttpServer()
	// Every request goes to the core, so neither goproxy's transport nor its
	// CONNECT dialer ever runs; both are still replaced, since goproxy's
	// defaults follow HTTPS_PROXY (which may point at this very process).
	gp.Tr = &http.Transport{Proxy: nil}
	gp.ConnectDial = nil
	gp.CertStore = newLeafCache(orDefault(opts.CertCacheSize, DefaultCertCacheSize), time.Now)
	gp.Logger = goproxyLogger{f.log}
	gp.NonproxyHandler = http.HandlerFunc(f.notProxy)
	gp.OnRequest().HandleConnectFunc(f.connect)
	gp.OnRequest().DoFunc(f.request)
	f.gp = gp
	return f, nil
}

// ServeHTTP serves the forward listener.
func (f *Forward) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		hj := &hijacker{ResponseWriter: w, ts: f.tuns}
		f.tuns.hijackers.Store(r, hj)
		defer f.tuns.hijackers.Delete(r)
		f.gp.ServeHTTP(hj, r)
		return
	}
	boundBodyRead(w, r, f.tuns.read)
	// goproxy copies a plain-HTTP response without flushing; a streamed
	// report must reach the client as it comes.
	f.gp.ServeHTTP(flushingWriter{w}, r)
}

// CloseTunnels closes every tunnel waiting for a request now and every
// other one once its request is answered; a tunnel opened later is closed
// at once. http.Server.Shutdown does not see the connections tunnels took
// over: serve registers this with RegisterOnShutdown.
func (f *Forward) CloseTunnels() { f.tuns.closeAll() }

// connect decides a CONNECT: MITM for an intercepted host whose client the
// core accepts, else a refusal written on the connection before it closes.
func (f *Forward) connect(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	name, ok := f.intercepted(host, "443")
	if !ok {
		ctx.Resp = f.refuse(ctx.Req, host)
		return f.reject, host
	}
	rt, refusal := f.core.Tunnel(ctx.Req)
	if refusal != nil {
		ctx.Resp = proxyAuthRefusal(refusal)
		return f.reject, host
	}
	hj, _ := f.tuns.hijackers.Load(ctx.Req)
	ctx.UserData = &tunnel{rt: rt, hj: hj.(*hijacker)}
	return f.mitm, name
}

// request serves one request: inside a tunnel with the tunnel's
// RoundTripper, between its connection's read bound and idle wait; a
// plain-HTTP one after authenticating it on its own.
func (f *Forward) request(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	t, inTunnel := ctx.UserData.(*tunnel)
	if !inTunnel {
		return r, f.answer(r, nil)
	}
	conn := t.hj.conn
	conn.serving()
	resp := f.answer(r, t)
	body := resp.Body
	if body == nil {
		body = http.NoBody
	}
	resp.Body = &answeredBody{ReadCloser: body, done: sync.OnceFunc(conn.answered)}
	return r, resp
}

// answer is the response to r: from t's RoundTripper inside a tunnel (t
// non-nil), or from the core after authenticating a plain-HTTP request.
func (f *Forward) answer(r *http.Request, t *tunnel) *http.Response {
	inTunnel := t != nil
	port := "80"
	if inTunnel {
		port = "443"
	}
	// Inside a tunnel too: the request's own Host must be intercepted, not
	// only the CONNECT's.
	if _, ok := f.intercepted(r.URL.Host, port); !ok {
		return f.refuse(r, r.URL.Host)
	}
	if !inTunnel {
		rt, refusal := f.core.Tunnel(r)
		if refusal != nil {
			return proxyAuthRefusal(refusal)
		}
		t = &tunnel{rt: rt}
	}
	return f.roundTrip(t.rt, r)
}

// roundTrip sends r through rt without the hop-by-hop headers either way,
// as httputil.ReverseProxy does on the reverse listener.
func (f *Forward) roundTrip(rt http.RoundTripper, r *http.Request) *http.Response {
	out := r.WithContext(r.Context())
	out.Header = r.Header.Clone()
	removeHopByHop(out.Header)
	// The client's Connection: close is about its own connection (goproxy
	// closes it after this response), not the one towards TikTok.
	out.Close = false
	out.RequestURI = ""
	resp, err := rt.RoundTrip(out)
	if err != nil {
		f.log.Error("forward proxy: core could not start the request", "error", err)
		return errorResponse(newError(CodeUpstream, http.StatusBadGateway, "the proxy could not send the request to TikTok"), newRequestID(), r)
	}
	removeHopByHop(resp.Header)
	resp.Close = false
	return resp
}

// intercepted reports whether hostport names an intercepted host on the
// given default port, and returns the host's lower-case name with the port.
func (f *Forward) intercepted(hostport, defaultPort string) (string, bool) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, defaultPort
	}
	host = strings.ToLower(host)
	return net.JoinHostPort(host, port), port == defaultPort && f.hosts[host]
}

// refuse is the 403 for a host that is not intercepted.
func (f *Forward) refuse(r *http.Request, host string) *http.Response {
	f.log.Info("forward proxy: refused a request for a host not intercepted", "method", r.Method, "host", host, "remote", r.RemoteAddr)
	return errorResponse(newError(CodeNotFound, http.StatusForbidden,
		"this proxy intercepts only %s (port 443 for HTTPS, 80 for plain HTTP); %s is refused", f.names, host), newRequestID(), r)
}

// notProxy answers a request sent to the forward listener as if it were a
// server, which it is not.
func (f *Forward) notProxy(w http.ResponseWriter, r *http.Request) {
	WriteError(w, newError(CodeNotFound, http.StatusForbidden,
		"this is the forward proxy: set HTTPS_PROXY=http://%s and call https://%s/open_api/..., or send requests to the proxy's listen address", r.Host, strings.SplitN(f.names, ", ", 2)[0]), newRequestID())
}

// proxyAuthRefusal turns the core's 401 for a missing or wrong client
// token into the forward proxy's 407 with a Proxy-Authenticate challenge,
// which HTTP clients expect from a proxy (and answer with the credentials
// of their proxy URL).
func proxyAuthRefusal(resp *http.Response) *http.Response {
	if resp.StatusCode == http.StatusUnauthorized {
		resp.StatusCode = http.StatusProxyAuthRequired
		resp.Status = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
		resp.Header.Set("Proxy-Authenticate", `Basic realm="tiktok-auth-proxy"`)
	}
	return resp
}

// hopByHop are the headers of one connection (RFC 9110 section 7.6.1),
// never forwarded.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop headers from h, and those the
// Connection header names.
func removeHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// flushingWriter flushes the header as soon as it is written and the body
// after every write.
type flushingWriter struct{ http.ResponseWriter }

func (w flushingWriter) WriteHeader(status int) {
	w.ResponseWriter.WriteHeader(status)
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w flushingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	_ = http.NewResponseController(w.ResponseWriter).Flush()
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w flushingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// goproxyLogger sends goproxy's messages (only its warnings: Verbose is
// off) to slog. A failed TLS handshake is a warning, since it is usually a
// client that does not trust the CA; the rest (a client that hung up or
// sent nothing until the idle timeout, a connection reset) is routine, and
// debug.
type goproxyLogger struct{ log *slog.Logger }

func (l goproxyLogger) Printf(format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	level := slog.LevelDebug
	if strings.Contains(msg, "handshake") && !strings.Contains(msg, os.ErrDeadlineExceeded.Error()) {
		level = slog.LevelWarn
		msg += " (does the client trust forward_proxy.ca_cert?)"
	}
	l.log.Log(context.Background(), level, "forward proxy: "+msg)
}

// leafCache is goproxy's CertStorage with a size bound: the least recently
// used certificate is dropped first, and one about to expire is made
// again.
type leafCache struct {
	mu    sync.Mutex
	max   int
	now   func() time.Time
	order *list.List // of *leafEntry, most recently used first
	hosts map[string]*list.Element
}

type leafEntry struct {
	host string
	cert *tls.Certificate
}

// leafRenewBefore is how long before its NotAfter a cached certificate is
// replaced, so no client is shown one that expires during its connection.
const leafRenewBefore = 24 * time.Hour

func newLeafCache(max int, now func() time.Time) *leafCache {
	return &leafCache{max: max, now: now, order: list.New(), hosts: map[string]*list.Element{}}
}

// Fetch returns host's certificate, made by gen when not cached or about
// to expire. gen runs under the lock: it takes about a millisecond, and
// only the few intercepted hosts ever get here.
func (c *leafCache) Fetch(host string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.hosts[host]; ok {
		e := el.Value.(*leafEntry)
		if e.cert.Leaf != nil && c.now().Add(leafRenewBefore).Before(e.cert.Leaf.NotAfter) {
			c.order.MoveToFront(el)
			return e.cert, nil
		}
		c.order.Remove(el)
		delete(c.hosts, host)
	}
	cert, err := gen()
	if err != nil {
		return nil, fmt.Errorf("proxy: forward: certificate for %s: %w", host, err)
	}
	c.hosts[host] = c.order.PushFront(&leafEntry{host: host, cert: cert})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.hosts, last.Value.(*leafEntry).host)
	}
	return cert, nil
}
