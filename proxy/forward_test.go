package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

const apiHost = "business-api.tiktok.com"

// fakeCore is a tunneler that authenticates by a fixed table, records what
// it receives and answers with respond.
type fakeCore struct {
	mu       sync.Mutex
	clients  map[string]string // Proxy-Authorization → client name; nil accepts everyone as ""
	tunnels  int               // Tunnel calls that were accepted
	received []coreRequest
	respond  func(r *http.Request) *http.Response
}

type coreRequest struct {
	client string
	url    string
	header http.Header
}

func (c *fakeCore) Tunnel(connect *http.Request) (http.RoundTripper, *http.Response) {
	name := ""
	if c.clients != nil {
		var ok bool
		if name, ok = c.clients[connect.Header.Get("Proxy-Authorization")]; !ok {
			return nil, errorResponse(newError(CodeClientAuth, http.StatusUnauthorized, "client authentication missing or wrong"), "", connect)
		}
	}
	c.mu.Lock()
	c.tunnels++
	c.mu.Unlock()
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		c.mu.Lock()
		c.received = append(c.received, coreRequest{client: name, url: r.URL.String(), header: r.Header.Clone()})
		c.mu.Unlock()
		return c.respond(r), nil
	}), nil
}

func (c *fakeCore) tunnelCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tunnels
}

func (c *fakeCore) requests() []coreRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]coreRequest(nil), c.received...)
}

func okResponse(r *http.Request) *http.Response {
	return jsonResponse(r, http.StatusOK, strings.NewReader(`{"code":0,"message":"OK","data":{}}`))
}

// forwardHarness is a Forward served on loopback with a CA made for the test.
type forwardHarness struct {
	core  *fakeCore
	fwd   *Forward
	srv   *httptest.Server
	roots *x509.CertPool
	logs  *syncBuffer
}

func newForwardHarness(t *testing.T, core *fakeCore, edit ...func(*ForwardOptions)) *forwardHarness {
	t.Helper()
	certPEM, keyPEM, err := config.NewCA(config.DefaultForwardHosts(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if core.respond == nil {
		core.respond = okResponse
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := ForwardOptions{CA: ca, Hosts: config.DefaultForwardHosts(), Logger: log}
	for _, e := range edit {
		e(&opts)
	}
	fwd, err := NewForward(opts, core)
	if err != nil {
		t.Fatal(err)
	}
	h := &forwardHarness{core: core, fwd: fwd, srv: httptest.NewServer(fwd), roots: x509.NewCertPool(), logs: logs}
	t.Cleanup(h.srv.Close)
	h.roots.AppendCertsFromPEM(certPEM)
	return h
}

// client is an HTTP client using the forward proxy with proxyUser in the
// proxy URL, trusting roots (nil: the system's).
func (h *forwardHarness) client(t *testing.T, proxyUser *url.Userinfo, roots *x509.CertPool) *http.Client {
	t.Helper()
	pu, err := url.Parse(h.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	pu.User = proxyUser
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// connect opens a raw connection to the proxy and sends a CONNECT for
// hostport with the given extra header lines; it returns the connection and
// the proxy's answer.
func (h *forwardHarness) connect(t *testing.T, hostport, headers string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A guard against a hang, not a timing assertion.
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", hostport, hostport, headers)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

// tlsTunnel CONNECTs to the API host and completes TLS trusting the test CA.
func (h *forwardHarness) tlsTunnel(t *testing.T, headers string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	conn, br, resp := h.connect(t, apiHost+":443", headers)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	if br.Buffered() > 0 {
		t.Fatal("proxy sent bytes after its CONNECT answer")
	}
	tc := tls.Client(conn, &tls.Config{ServerName: apiHost, RootCAs: h.roots})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc, bufio.NewReader(tc)
}

func readEnvelope(t *testing.T, resp *http.Response) envelope {
	t.Helper()
	defer resp.Body.Close()
	var env envelope
	// Read to the end, so the client may reuse the connection.
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		err = json.Unmarshal(b, &env)
	}
	if err != nil {
		t.Fatalf("%s: body is not the envelope: %v", resp.Status, err)
	}
	return env
}

// checkTunnelAnswer reads the next answer in a tunnel and checks its status
// and envelope code.
func checkTunnelAnswer(t *testing.T, br *bufio.Reader, what string, status, code int) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if env := readEnvelope(t, resp); resp.StatusCode != status || env.Code != code {
		t.Fatalf("%s: %s, code %d; want %d, code %d", what, resp.Status, env.Code, status, code)
	}
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// TestForwardMITM: a client trusting the CA reaches the core through the
// tunnel with its client; every request of the tunnel carries it.
func TestForwardMITM(t *testing.T) {
	core := &fakeCore{clients: map[string]string{basicAuth("alice", "tok-a"): "alice", basicAuth("bob", "tok-b"): "bob"}}
	h := newForwardHarness(t, core)
	c := h.client(t, url.UserPassword("alice", "tok-a"), h.roots)
	for i := range 3 {
		resp, err := c.Get("https://" + apiHost + "/open_api/v1.3/campaign/get/?advertiser_id=1")
		if err != nil {
			t.Fatal(err)
		}
		if env := readEnvelope(t, resp); resp.StatusCode != http.StatusOK || env.Code != 0 {
			t.Fatalf("request %d: %s, code %d", i, resp.Status, env.Code)
		}
	}
	got := core.requests()
	if len(got) != 3 {
		t.Fatalf("core got %d requests, want 3", len(got))
	}
	for _, r := range got {
		if r.client != "alice" || r.url != "https://"+apiHost+"/open_api/v1.3/campaign/get/?advertiser_id=1" {
			t.Errorf("core got client %q, URL %q", r.client, r.url)
		}
		if r.header.Get("Proxy-Authorization") != "" {
			t.Error("Proxy-Authorization reached the core's request")
		}
	}
	// One tunnel served all three (keep-alive): the client was
	// authenticated once, on CONNECT.
	if core.tunnelCount() != 1 {
		t.Errorf("%d tunnels, want 1", core.tunnelCount())
	}

	// Another client on its own tunnel is carried as itself.
	resp, err := h.client(t, url.UserPassword("bob", "tok-b"), h.roots).Get("https://sandbox-ads.tiktok.com/open_api/v1.3/report/integrated/get/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := core.requests(); got[len(got)-1].client != "bob" || !strings.HasPrefix(got[len(got)-1].url, "https://sandbox-ads.tiktok.com/") {
		t.Errorf("second client: core got %+v", got[len(got)-1])
	}
}

// TestForwardClientAuth: without or with a wrong Proxy-Authorization the
// CONNECT is refused with 407 and the core's 90010 envelope; no tunnel opens.
func TestForwardClientAuth(t *testing.T) {
	core := &fakeCore{clients: map[string]string{"Bearer tok-a": "alice"}}
	h := newForwardHarness(t, core)
	for name, header := range map[string]string{
		"missing": "",
		"wrong":   "Proxy-Authorization: Bearer nope\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, _, resp := h.connect(t, apiHost+":443", header)
			if resp.StatusCode != http.StatusProxyAuthRequired || resp.Header.Get("Proxy-Authenticate") == "" {
				t.Errorf("%s, Proxy-Authenticate %q; want 407 with a challenge", resp.Status, resp.Header.Get("Proxy-Authenticate"))
			}
			if env := readEnvelope(t, resp); env.Code != CodeClientAuth {
				t.Errorf("code %d, want %d", env.Code, CodeClientAuth)
			}
		})
	}
	_, _, resp := h.connect(t, apiHost+":443", "Proxy-Authorization: Bearer tok-a\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("right token: %s", resp.Status)
	}
	if core.tunnelCount() != 1 {
		t.Errorf("%d tunnels accepted, want 1", core.tunnelCount())
	}
}

// TestForwardRefusesOtherHosts: never an open proxy.
func TestForwardRefusesOtherHosts(t *testing.T) {
	core := &fakeCore{}
	h := newForwardHarness(t, core)
	for _, hostport := range []string{"example.com:443", "business-api.tiktok.com.evil.test:443", apiHost + ":8443", "127.0.0.1:443"} {
		_, _, resp := h.connect(t, hostport, "")
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("CONNECT %s: %s, want 403", hostport, resp.Status)
		}
		if env := readEnvelope(t, resp); env.Code != CodeNotFound || !strings.Contains(env.Message, "intercepts only "+apiHost) {
			t.Errorf("CONNECT %s: envelope %+v", hostport, env)
		}
	}

	c := h.client(t, nil, h.roots)
	for _, u := range []string{"http://example.com/open_api/v1.3/x/", "http://" + apiHost + ":8080/open_api/v1.3/x/"} {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		if env := readEnvelope(t, resp); resp.StatusCode != http.StatusForbidden || env.Code != CodeNotFound {
			t.Errorf("plain GET %s: %s, code %d; want 403, %d", u, resp.Status, env.Code, CodeNotFound)
		}
	}

	// Inside a tunnel to an intercepted host, a request naming another
	// Host is refused too.
	tc, br := h.tlsTunnel(t, "")
	fmt.Fprintf(tc, "GET /open_api/v1.3/x/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
	checkTunnelAnswer(t, br, "Host example.com inside the tunnel", http.StatusForbidden, CodeNotFound)

	// A request addressed to the forward listener itself is no proxy request.
	resp, err := http.Get(h.srv.URL + "/open_api/v1.3/x/")
	if err != nil {
		t.Fatal(err)
	}
	if env := readEnvelope(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(env.Message, "HTTPS_PROXY") {
		t.Errorf("direct request: %s, %+v", resp.Status, env)
	}
	// Only the tunnel the test opened to the API host reached the core.
	if n := len(core.requests()); n != 0 || core.tunnelCount() != 1 {
		t.Errorf("core reached %d times (%d tunnels, want 1) by refused requests", n, core.tunnelCount())
	}
}

// TestForwardPlainHTTP: a plain-HTTP proxy request for an intercepted host
// is authenticated on its own and served by the core.
func TestForwardPlainHTTP(t *testing.T) {
	core := &fakeCore{clients: map[string]string{basicAuth("alice", "tok-a"): "alice"}}
	h := newForwardHarness(t, core)
	resp, err := h.client(t, url.UserPassword("alice", "tok-a"), nil).Get("http://" + apiHost + "/open_api/v1.3/campaign/get/")
	if err != nil {
		t.Fatal(err)
	}
	if env := readEnvelope(t, resp); resp.StatusCode != http.StatusOK || env.Code != 0 {
		t.Errorf("%s, code %d", resp.Status, env.Code)
	}
	if got := core.requests(); len(got) != 1 || got[0].client != "alice" || got[0].header.Get("Proxy-Authorization") != "" {
		t.Errorf("core got %+v", got)
	}
	resp, err = h.client(t, nil, nil).Get("http://" + apiHost + "/open_api/v1.3/campaign/get/")
	if err != nil {
		t.Fatal(err)
	}
	if env := readEnvelope(t, resp); resp.StatusCode != http.StatusProxyAuthRequired || env.Code != CodeClientAuth {
		t.Errorf("without client token: %s, code %d", resp.Status, env.Code)
	}
}

// TestForwardUntrustedCA: a client that does not trust the operator's CA
// fails TLS, and nothing reaches the core.
func TestForwardUntrustedCA(t *testing.T) {
	core := &fakeCore{}
	h := newForwardHarness(t, core)
	_, err := h.client(t, nil, x509.NewCertPool()).Get("https://" + apiHost + "/open_api/v1.3/campaign/get/")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("err = %v, want an unknown-authority TLS failure", err)
	}
	if n := len(core.requests()); n != 0 {
		t.Errorf("core got %d requests", n)
	}
	// The operator learns why.
	eventually(t, "the failed handshake to be logged", func() bool {
		return strings.Contains(h.logs.String(), "level=WARN") && strings.Contains(h.logs.String(), "does the client trust forward_proxy.ca_cert?")
	})
}

// TestForwardHeaders: hop-by-hop headers (and those Connection names) are
// stripped both ways; Accept-Encoding and the encoded body pass unchanged.
func TestForwardHeaders(t *testing.T) {
	core := &fakeCore{respond: func(r *http.Request) *http.Response {
		resp := jsonResponse(r, http.StatusOK, strings.NewReader("\x1f\x8bnot-really-gzip"))
		resp.Header.Set("Content-Encoding", "gzip")
		resp.Header.Set("Connection", "X-Upstream-Hop")
		resp.Header.Set("X-Upstream-Hop", "1")
		resp.Header.Set("Keep-Alive", "timeout=5")
		resp.Header.Set("Proxy-Authenticate", "Basic")
		resp.Header.Set("Upgrade", "h2c")
		resp.Header.Set("X-End-To-End", "kept")
		return resp
	}}
	h := newForwardHarness(t, core)
	tc, br := h.tlsTunnel(t, "")
	fmt.Fprintf(tc, "GET /open_api/v1.3/campaign/get/ HTTP/1.1\r\nHost: %s\r\n"+
		"Accept-Encoding: gzip, br\r\nConnection: keep-alive, X-Client-Hop\r\nX-Client-Hop: 1\r\n"+
		"Keep-Alive: timeout=5\r\nProxy-Authorization: Bearer leak\r\nProxy-Connection: keep-alive\r\n"+
		"Te: trailers\r\nUpgrade: h2c\r\nX-End-To-End: kept\r\n\r\n", apiHost)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	got := core.requests()
	if len(got) != 1 {
		t.Fatalf("core got %d requests", len(got))
	}
	for _, name := range []string{"Connection", "X-Client-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Te", "Upgrade"} {
		if v := got[0].header.Get(name); v != "" {
			t.Errorf("request header %s: %q reached the core", name, v)
		}
	}
	if got[0].header.Get("Accept-Encoding") != "gzip, br" || got[0].header.Get("X-End-To-End") != "kept" {
		t.Errorf("end-to-end request headers changed: %v", got[0].header)
	}
	for _, name := range []string{"X-Upstream-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
		if v := resp.Header.Get(name); v != "" {
			t.Errorf("response header %s: %q reached the client", name, v)
		}
	}
	if resp.Header.Get("Content-Encoding") != "gzip" || string(body) != "\x1f\x8bnot-really-gzip" || resp.Header.Get("X-End-To-End") != "kept" {
		t.Errorf("response changed: %v %q", resp.Header, body)
	}
}

// streamingCore answers with a body the test writes chunk by chunk.
func streamingCore() (*fakeCore, *io.PipeWriter) {
	pr, pw := io.Pipe()
	return &fakeCore{respond: func(r *http.Request) *http.Response {
		resp := jsonResponse(r, http.StatusOK, pr)
		resp.ContentLength = -1
		return resp
	}}, pw
}

// checkStreamed writes three chunks into pw, and requires each to be read
// from body before the next is written: a proxy buffering the response
// would leave the read waiting (until the connection's 10s guard fails it).
func checkStreamed(t *testing.T, pw *io.PipeWriter, body io.Reader) {
	t.Helper()
	for i := range 3 {
		chunk := fmt.Sprintf(`{"chunk":%d}`, i)
		if _, err := io.WriteString(pw, chunk); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(chunk))
		if _, err := io.ReadFull(body, buf); err != nil || string(buf) != chunk {
			t.Fatalf("chunk %d: read %q, %v; want %q before the next is sent", i, buf, err, chunk)
		}
	}
	pw.Close()
	if rest, err := io.ReadAll(body); err != nil || len(rest) != 0 {
		t.Errorf("after the last chunk: %q, %v", rest, err)
	}
}

func TestForwardStreamsTunnel(t *testing.T) {
	core, pw := streamingCore()
	defer pw.Close() // before the server's Close waits for the handler
	h := newForwardHarness(t, core)
	tc, br := h.tlsTunnel(t, "")
	fmt.Fprintf(tc, "GET /open_api/v1.3/report/task/download/ HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkStreamed(t, pw, resp.Body)
}

func TestForwardStreamsPlainHTTP(t *testing.T) {
	core, pw := streamingCore()
	defer pw.Close() // before the server's Close waits for the handler
	h := newForwardHarness(t, core)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+apiHost+"/open_api/v1.3/report/task/download/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.client(t, nil, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	checkStreamed(t, pw, resp.Body)
}

// TestForwardLeafCache: tunnels to one host share a leaf certificate, and
// the cache keeps at most its bound, dropping the least recently used.
func TestForwardLeafCache(t *testing.T) {
	h := newForwardHarness(t, &fakeCore{})
	var leaves [][]byte
	for range 2 {
		tc, _ := h.tlsTunnel(t, "")
		leaves = append(leaves, tc.ConnectionState().PeerCertificates[0].Raw)
	}
	if string(leaves[0]) != string(leaves[1]) {
		t.Error("the second tunnel to the host got a new certificate: the cache is not used")
	}

	now := time.Now()
	c := newLeafCache(2, func() time.Time { return now })
	made := map[string]int{}
	fetch := func(host string) {
		t.Helper()
		_, err := c.Fetch(host, func() (*tls.Certificate, error) {
			made[host]++
			return &tls.Certificate{Leaf: &x509.Certificate{NotAfter: now.Add(48 * time.Hour)}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	fetch("a")
	fetch("b")
	fetch("a") // a is now the most recently used
	fetch("c") // drops b
	if c.order.Len() != 2 || len(c.hosts) != 2 {
		t.Errorf("cache holds %d (%d hosts), want its bound 2", c.order.Len(), len(c.hosts))
	}
	fetch("a")
	fetch("b")
	if made["a"] != 1 || made["b"] != 2 || made["c"] != 1 {
		t.Errorf("certificates made %v, want a once, b twice (dropped as least recently used), c once", made)
	}
	// A certificate within a day of its end is made again.
	now = now.Add(25 * time.Hour)
	fetch("a")
	if made["a"] != 2 {
		t.Errorf("a made %d times, want a new one near its expiry", made["a"])
	}
}

func TestNewForwardRefuses(t *testing.T) {
	certPEM, keyPEM, err := config.NewCA(config.DefaultForwardHosts(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for name, tt := range map[string]struct {
		opts ForwardOptions
		core tunneler
	}{
		"no CA":    {ForwardOptions{Hosts: []string{apiHost}}, &fakeCore{}},
		"no hosts": {ForwardOptions{CA: ca}, &fakeCore{}},
		"no core":  {ForwardOptions{CA: ca, Hosts: []string{apiHost}}, nil},
	} {
		if _, err := NewForward(tt.opts, tt.core); err == nil {
			t.Errorf("%s: NewForward succeeded", name)
		}
	}
}

// TestForwardIgnoresProxyEnvironment: goproxy's defaults follow
// HTTPS_PROXY, which may point at this very process; NewForward replaces
// them.
func TestForwardIgnoresProxyEnvironment(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	h := newForwardHarness(t, &fakeCore{})
	if h.fwd.gp.ConnectDial != nil || h.fwd.gp.ConnectDialWithReq != nil {
		t.Error("goproxy's CONNECT dialer is set (goproxy's default dials HTTPS_PROXY)")
	}
	if h.fwd.gp.Tr.Proxy != nil {
		t.Error("goproxy's transport follows a proxy")
	}
}

// closedByProxy reads from a tunnel's client side and fails unless the
// proxy closed the connection: a read that runs into the 10s guard the
// harness sets means the tunnel stayed open.
func closedByProxy(t *testing.T, what string, r io.Reader) {
	t.Helper()
	n, err := r.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: read %d bytes, %v; want the proxy to have closed the tunnel", what, n, err)
	}
}

// openTunnels is how many tunnels h's Forward tracks.
func (h *forwardHarness) openTunnels() int {
	h.fwd.tuns.mu.Lock()
	defer h.fwd.tuns.mu.Unlock()
	return len(h.fwd.tuns.open)
}

// TestForwardTunnelIdleTimeout: a tunnel that waits for its first request
// or its next one longer than IdleTimeout is closed (goproxy sets no
// deadline on the connection it takes over, so it would stay open for
// good), and no longer tracked.
func TestForwardTunnelIdleTimeout(t *testing.T) {
	// Long enough that a loaded machine finishes the handshake and writes the
	// request inside it (a stall past it would fail the test, not pass it),
	// short enough to keep the test quick.
	h := newForwardHarness(t, &fakeCore{}, func(o *ForwardOptions) { o.IdleTimeout = time.Second })
	_, br := h.tlsTunnel(t, "")
	closedByProxy(t, "no request", br)

	tc, br := h.tlsTunnel(t, "")
	fmt.Fprintf(tc, "GET /open_api/v1.3/campaign/get/ HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	checkTunnelAnswer(t, br, "the tunnel's one request", http.StatusOK, 0)
	closedByProxy(t, "after one request", br)
	eventually(t, "the closed tunnels to be forgotten", func() bool { return h.openTunnels() == 0 })
}

// TestForwardTunnelBodyTimeout: a request inside a tunnel whose body stops
// arriving fails its read at ReadTimeout (upstream.timeout), as on the
// proxy listener, rather than holding the core until the client leaves;
// the answer still reaches the client, and the tunnel, whose request
// stream is now unreadable, then closes.
func TestForwardTunnelBodyTimeout(t *testing.T) {
	bodyErr := make(chan error, 1)
	core := &fakeCore{respond: func(r *http.Request) *http.Response {
		_, err := io.ReadAll(r.Body)
		bodyErr <- err
		return jsonResponse(r, http.StatusRequestTimeout, strings.NewReader(`{"code":90011,"message":"body too slow","data":{}}`))
	}}
	h := newForwardHarness(t, core, func(o *ForwardOptions) { o.ReadTimeout = 100 * time.Millisecond })
	tc, br := h.tlsTunnel(t, "")
	fmt.Fprintf(tc, "POST /open_api/v1.3/campaign/create/ HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"adver", apiHost)
	select {
	case err := <-bodyErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("reading the stalled body: %v, want the read deadline", err)
		}
	case <-time.After(10 * time.Second): // a guard against a hang, not a timing assertion
		t.Fatal("reading the stalled body was not bounded")
	}
	checkTunnelAnswer(t, br, "the core's answer to the stalled body", http.StatusRequestTimeout, 90011)
	closedByProxy(t, "after the stalled body", br)
}

// TestForwardCloseTunnels: at shutdown (CloseTunnels) an idle tunnel is
// closed at once, a busy one once its answer is written in full, and one
// opened later at once.
func TestForwardCloseTunnels(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	core := &fakeCore{respond: func(r *http.Request) *http.Response {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		return okResponse(r)
	}}
	h := newForwardHarness(t, core)
	get := func(tc *tls.Conn, path string) {
		fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, apiHost)
	}
	idle, idleBr := h.tlsTunnel(t, "")
	get(idle, "/open_api/v1.3/campaign/get/")
	resp, err := http.ReadResponse(idleBr, nil)
	if err != nil {
		t.Fatal(err)
	}
	readEnvelope(t, resp)
	busy, busyBr := h.tlsTunnel(t, "")
	get(busy, "/slow")
	<-started

	h.fwd.CloseTunnels()
	closedByProxy(t, "idle tunnel", idleBr)
	close(release)
	resp, err = http.ReadResponse(busyBr, nil)
	if err != nil {
		t.Fatalf("busy tunnel: %v, want its answer", err)
	}
	if env := readEnvelope(t, resp); resp.StatusCode != http.StatusOK || env.Code != 0 {
		t.Fatalf("busy tunnel: %s, code %d", resp.Status, env.Code)
	}
	closedByProxy(t, "busy tunnel once answered", busyBr)

	conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second)) // a guard against a hang
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
	closedByProxy(t, "tunnel opened after CloseTunnels", conn)
	eventually(t, "every tunnel to be forgotten", func() bool { return h.openTunnels() == 0 })
}

// TestForwardCloseTunnelsAfterLastChunk: shutdown arriving between the
// close of a chunked response's body and the write of its last line (goproxy
// closes the body first) waits for the answer to be written in full; the
// tunnel was once closed right there, and the client read "unexpected EOF"
// instead of the trailer. The server's connections run CloseTunnels at the
// first write after the body is closed, which is that very moment.
func TestForwardCloseTunnelsAfterLastChunk(t *testing.T) {
	var bodyClosed atomic.Bool
	core := &fakeCore{respond: func(r *http.Request) *http.Response {
		resp := okResponse(r) // no length: goproxy sends it chunked
		resp.Body = &closeHook{ReadCloser: resp.Body, hook: func() { bodyClosed.Store(true) }}
		return resp
	}}
	h := newForwardHarness(t, core)
	h.srv.Close()
	h.srv = httptest.NewUnstartedServer(h.fwd)
	h.srv.Listener = shutAtWriteListener{Listener: h.srv.Listener, armed: &bodyClosed, shut: h.fwd.CloseTunnels}
	h.srv.Start()
	t.Cleanup(h.srv.Close)

	tc, br := h.tlsTunnel(t, "")
	fmt.Fprintf(tc, "GET /open_api/v1.3/campaign/get/ HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.TransferEncoding) == 0 {
		t.Fatal("the answer is not chunked: the test no longer reaches its last line")
	}
	if env := readEnvelope(t, resp); resp.StatusCode != http.StatusOK || env.Code != 0 {
		t.Fatalf("%s, code %d", resp.Status, env.Code)
	}
	if bodyClosed.Load() {
		t.Fatal("CloseTunnels never ran between the body's close and the last line")
	}
	closedByProxy(t, "tunnel once answered", br)
}

// closeHook calls hook once its body is closed.
type closeHook struct {
	io.ReadCloser
	hook func()
}

func (b *closeHook) Close() error {
	err := b.ReadCloser.Close()
	b.hook()
	return err
}

// shutAtWriteListener's connections call shut before the first write after
// armed is set, and disarm it.
type shutAtWriteListener struct {
	net.Listener
	armed *atomic.Bool
	shut  func()
}

func (l shutAtWriteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &shutAtWriteConn{Conn: c, l: l}, nil
}

type shutAtWriteConn struct {
	net.Conn
	l shutAtWriteListener
}

func (c *shutAtWriteConn) Write(p []byte) (int, error) {
	if c.l.armed.CompareAndSwap(true, false) {
		c.l.shut()
	}
	return c.Conn.Write(p)
}
