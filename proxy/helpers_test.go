package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// fakeTokens is a Tokens with fixed answers.
type fakeTokens struct {
	mu          sync.Mutex
	tokens      map[string]string   // credential → token
	errs        map[string]error    // credential → Token error
	advertisers map[string]string   // advertiser → credential
	claimants   map[string][]string // advertiser no one owns → credentials claiming it
	// rotate, when set for a credential, is the token Rejected switches to.
	rotate   map[string]string
	rejected []string // "cred/token/code" of every Rejected call
}

func newFakeTokens() *fakeTokens {
	return &fakeTokens{
		tokens:      map[string]string{"main": "tok-main", "other": "tok-other"},
		errs:        map[string]error{},
		advertisers: map[string]string{"1111111111111111111": "main", "2222222222222222222": "other"},
		claimants:   map[string][]string{"3333333333333333333": {"main", "other"}},
		rotate:      map[string]string{},
	}
}

func (f *fakeTokens) Token(_ context.Context, cred string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.errs[cred]; err != nil {
		return "", err
	}
	return f.tokens[cred], nil
}

func (f *fakeTokens) Rejected(_ context.Context, cred, token string, code int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejected = append(f.rejected, cred+"/"+token+"/"+itoa(code))
	next, ok := f.rotate[cred]
	if !ok {
		return false
	}
	f.tokens[cred] = next
	return true
}

func (f *fakeTokens) CredentialFor(adv string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.advertisers[adv]
	return c, ok
}

func (f *fakeTokens) Claimants(adv string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.claimants[adv]
}

func (f *fakeTokens) rejections() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.rejected...)
}

// received is what the fake upstream saw of one request.
type received struct {
	Method, Path, RawQuery, Host string
	Header                       http.Header
	Body                         []byte
}

// upstream is a fake TikTok that records every request.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []received
}

// newUpstream starts a fake TikTok; handler nil answers {"code":0}. The
// body is recorded before handler runs, so handlers must not read it.
func newUpstream(t *testing.T, handler http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	if handler == nil {
		handler = func(w http.ResponseWriter, r *http.Request) { writeEnvelope(w, 0) }
	}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, received{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Clone(), body})
		u.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		handler(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []received {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]received(nil), u.seen...)
}

func writeEnvelope(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"code":`+itoa(code)+`,"message":"m","request_id":"tt","data":{}}`)
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// harness is a Proxy wired to a fake upstream, tokens, a fresh registry
// and a log buffer.
type harness struct {
	p      *Proxy
	up     *upstream
	tok    *fakeTokens
	reg    *prometheus.Registry
	m      *metrics.Metrics
	logs   *syncBuffer
	config *config.Config
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig(baseURL string) *config.Config {
	return &config.Config{
		Listen:      "127.0.0.1:8080",
		AdminListen: "127.0.0.1:8081",
		Upstream:    config.Upstream{BaseURL: baseURL, Timeout: 10 * time.Second},
		Credentials: []config.Credential{
			{Name: "main", Default: true, AppID: "app-main", AppSecret: "SENTINEL-APP-SECRET-main"},
			{Name: "other", AppID: "app-other", AppSecret: "SENTINEL-APP-SECRET-other"},
		},
		Routing: config.Routing{CredentialHeader: "X-TikTok-Credential", MaxInspectBytes: 1024},
		Breaker: config.Breaker{ConsecutiveFailures: 3, OpenTimeout: 30 * time.Second},
	}
}

// newHarness builds the proxy; edit may change the config and options.
func newHarness(t *testing.T, handler http.HandlerFunc, edit func(*config.Config, *Options)) *harness {
	t.Helper()
	up := newUpstream(t, handler)
	return buildHarness(t, up, up.URL, edit)
}

// newMemHarness builds the proxy with TikTok served in-process by rt, for
// tests on synctest's fake clock, which real connections do not follow
// (h.up is nil).
func newMemHarness(t *testing.T, rt roundTripFunc, edit func(*config.Config, *Options)) *harness {
	t.Helper()
	return buildHarness(t, nil, "http://tiktok.test", func(c *config.Config, o *Options) {
		o.Transport = rt
		if edit != nil {
			edit(c, o)
		}
	})
}

func buildHarness(t *testing.T, up *upstream, baseURL string, edit func(*config.Config, *Options)) *harness {
	t.Helper()
	h := &harness{up: up, tok: newFakeTokens(), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	h.m = metrics.New(h.reg, "test", "go")
	h.config = testConfig(baseURL)
	opts := Options{
		Config:  h.config,
		Tokens:  h.tok,
		Metrics: h.m,
		Logger:  slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(h.config, &opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.p = p
	return h
}

// jsonResponse is TikTok's answer to r with body streamed as it is read.
func jsonResponse(r *http.Request, status int, body io.Reader) *http.Response {
	return &http.Response{
		Status: http.StatusText(status), StatusCode: status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(body), ContentLength: -1, Request: r,
	}
}

// stalled is a body that sends nothing more until ctx ends, then fails
// with ctx's error, as a transport's body does.
type stalled struct{ ctx context.Context }

func (s stalled) Read([]byte) (int, error) {
	<-s.ctx.Done()
	return 0, s.ctx.Err()
}

// do serves one request through the proxy handler. A request with
// httptest's default Host (example.com) is sent as a script on this
// machine sends it, to the listen address.
func (h *harness) do(r *http.Request) *httptest.ResponseRecorder {
	if r.Host == "example.com" {
		r.Host = h.config.Listen
	}
	w := httptest.NewRecorder()
	h.p.ServeHTTP(w, r)
	return w
}

// localRequest is a request for the proxy as a script on this machine sends
// it (httptest's default Host is example.com, which the proxy refuses).
func localRequest(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, target, body)
	r.Host = "127.0.0.1:8080"
	return r
}

// checkProxyError asserts a proxy error response.
func checkProxyError(t *testing.T, w *httptest.ResponseRecorder, code, status int) envelope {
	t.Helper()
	if w.Code != status {
		t.Errorf("status = %d, want %d (body %s)", w.Code, status, w.Body)
	}
	if got := w.Header().Get(HeaderError); got != itoa(code) {
		t.Errorf("%s = %q, want %d", HeaderError, got, code)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, w.Body)
	}
	var e envelope
	_ = json.Unmarshal(w.Body.Bytes(), &e)
	if e.Code != code || e.Message == "" || len(e.RequestID) != 32 || string(env["data"]) != "{}" {
		t.Errorf("envelope = %s, want code %d, a message, a 32-hex request_id and data {}", w.Body, code)
	}
	if e.RequestID != w.Header().Get(HeaderRequestID) {
		t.Errorf("envelope request_id %q != header %q", e.RequestID, w.Header().Get(HeaderRequestID))
	}
	return e
}

// checkCredential asserts the credential header of a response.
func checkCredential(t *testing.T, w *httptest.ResponseRecorder, want string) {
	t.Helper()
	if got := w.Header().Values(HeaderCredential); len(got) != 1 || got[0] != want {
		t.Errorf("%s = %q, want [%s]", HeaderCredential, got, want)
	}
}

func multipartBody(boundary string, parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--" + boundary + "\r\n" + p + "\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.String()
}

// The token manager is what cmd passes as Options.Tokens.
var _ Tokens = (*tokens.Manager)(nil)

// logLines parses the JSON log lines whose msg is msg.
func (h *harness) logLines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// slowTimeout is upstream.timeout for tests that let it pass with a request
// in flight: a loaded CI runner gets the request's headers (and a small
// body) through the proxy well within it, and the test waits it out once.
const slowTimeout = 2 * time.Second

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// serveGet serves the proxy over loopback HTTP and sends it a GET of
// campaignGet, returning once the response headers arrived. cancel hangs
// up; the server, the request and the body are closed at cleanup, and
// timeout is only a safety net.
func (h *harness) serveGet(t *testing.T, timeout time.Duration) (resp *http.Response, cancel context.CancelFunc) {
	t.Helper()
	srv := httptest.NewServer(h.p)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+campaignGet, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s through the proxy: %v", campaignGet, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, cancel
}

// roundTripFunc is an http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
