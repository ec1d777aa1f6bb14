package setup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// Sentinel secrets: no page, JSON answer or log line may ever contain one.
const (
	sentinelAppSecret    = "SENTINEL-APP-SECRET-9f2c"
	sentinelAccessToken  = "SENTINEL-ACCESS-TOKEN-41ab"
	sentinelRefreshToken = "SENTINEL-REFRESH-TOKEN-77de"
	sentinelAuthCode     = "SENTINEL-AUTH-CODE-0c3e"
	sentinelAdminToken   = "SENTINEL-ADMIN-TOKEN-5e1a"
)

var sentinels = []string{sentinelAppSecret, sentinelAccessToken, sentinelRefreshToken, sentinelAuthCode, sentinelAdminToken}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type authorizeCall struct {
	name  string
	grant *tiktok.Grant
}

// fakeTokens records Authorize calls, keeps the grant each stored, and
// answers Statuses from a map.
type fakeTokens struct {
	mu       sync.Mutex
	now      func() time.Time
	statuses map[string]tokens.Status
	grants   map[string]*tiktok.Grant // what Authorize stored, by credential
	names    map[string]string        // advertiser id -> name, as the listing would give
	calls    []authorizeCall
	authErr  error
	readyErr error
}

func (f *fakeTokens) Statuses() []tokens.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []tokens.Status
	for _, s := range f.statuses {
		out = append(out, s)
	}
	return out
}

func (f *fakeTokens) Status(name string) (tokens.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.statuses[name]
	if !ok {
		return tokens.Status{}, tokens.ErrUnknownCredential
	}
	return s, nil
}

func (f *fakeTokens) Authorize(ctx context.Context, name string, g *tiktok.Grant) (tokens.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, authorizeCall{name: name, grant: g})
	if f.authErr != nil {
		return tokens.Status{}, f.authErr
	}
	now := f.now()
	s := tokens.Status{Name: name, Authorized: true, Scopes: g.Scopes, AuthorizedAt: now, Refreshable: g.RefreshToken != ""}
	for _, id := range g.AdvertiserIDs {
		s.Advertisers = append(s.Advertisers, tokens.Advertiser{ID: id, Name: f.names[id]})
	}
	if g.ExpiresIn > 0 {
		s.AccessExpiresAt = now.Add(g.ExpiresIn)
	}
	if g.RefreshExpiresIn > 0 {
		s.RefreshExpiresAt = now.Add(g.RefreshExpiresIn)
	}
	if f.statuses == nil {
		f.statuses = make(map[string]tokens.Status)
	}
	if f.grants == nil {
		f.grants = make(map[string]*tiktok.Grant)
	}
	f.statuses[name] = s
	f.grants[name] = g
	return s, nil
}

// seed stores g for name as an earlier authorization would have, without
// recording an Authorize call.
func (f *fakeTokens) seed(name string, g *tiktok.Grant) {
	if _, err := f.Authorize(context.Background(), name, g); err != nil {
		panic(err)
	}
	f.mu.Lock()
	f.calls = f.calls[:len(f.calls)-1]
	f.mu.Unlock()
}

// grant returns a copy of the grant stored for name, or nil.
func (f *fakeTokens) grant(name string) *tiktok.Grant {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.grants[name]
	if !ok {
		return nil
	}
	cp := *g
	return &cp
}

func (f *fakeTokens) Ready(ctx context.Context) error { return f.readyErr }

func (f *fakeTokens) authorizeCalls() []authorizeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]authorizeCall(nil), f.calls...)
}

type exchangeCall struct {
	app  tiktok.App
	code string
}

// fakeExchanger builds consent URLs carrying the state, sends every minted
// state on states, and answers Exchange with exchange when set, else from
// err and grants by code.
type fakeExchanger struct {
	mu       sync.Mutex
	grants   map[string]*tiktok.Grant
	err      error
	exchange func(ctx context.Context, app tiktok.App, code string) (*tiktok.Grant, error)
	calls    []exchangeCall
	states   chan string
}

func (f *fakeExchanger) AuthCodeURL(app tiktok.App, state string) string {
	select {
	case f.states <- state:
	default:
	}
	q := url.Values{"app_id": {app.AppID}, "state": {state}, "redirect_uri": {app.RedirectURL}}
	return app.Endpoints.AuthorizeURL + "?" + q.Encode()
}

func (f *fakeExchanger) Exchange(ctx context.Context, app tiktok.App, code string) (*tiktok.Grant, error) {
	f.mu.Lock()
	f.calls = append(f.calls, exchangeCall{app: app, code: code})
	exchange := f.exchange
	f.mu.Unlock()
	if exchange != nil {
		// Outside the lock: it may talk to a loopback TikTok.
		return exchange(ctx, app, code)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	g, ok := f.grants[code]
	if !ok {
		return nil, &tiktok.APIError{Code: tiktok.CodeInvalidAuthCode, Message: "auth_code is invalid", RequestID: "req-1"}
	}
	cp := *g
	return &cp, nil
}

func (f *fakeExchanger) exchangeCalls() []exchangeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]exchangeCall(nil), f.calls...)
}

// syncBuffer is a goroutine-safe bytes.Buffer for logs and terminal output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testApp(name string) tiktok.App {
	return tiktok.App{
		Kind: tiktok.KindAdvertiser, AppID: "app-" + name, Secret: sentinelAppSecret,
		RedirectURL: "http://localhost:8081/oauth/callback",
		Endpoints:   tiktok.Endpoints{AuthorizeURL: "https://tiktok.test/portal/auth", TokenURL: "https://tiktok.test/token"},
	}
}

func sentinelGrant() *tiktok.Grant {
	return &tiktok.Grant{
		AccessToken: sentinelAccessToken, ExpiresIn: 24 * time.Hour,
		RefreshToken: sentinelRefreshToken, RefreshExpiresIn: 365 * 24 * time.Hour,
		AdvertiserIDs: []string{"7012345678901234567", "7012345678901234568"},
		Scopes:        []string{"4", "100"},
	}
}

type harness struct {
	admin *Admin
	tok   *fakeTokens
	ex    *fakeExchanger
	clock *fakeClock
	logs  *syncBuffer
}

func newHarness(t *testing.T, mods ...func(*Options)) *harness {
	t.Helper()
	clock := newClock()
	h := &harness{
		tok:   &fakeTokens{now: clock.Now, names: map[string]string{"7012345678901234567": "Acme Shoes"}},
		ex:    &fakeExchanger{grants: map[string]*tiktok.Grant{sentinelAuthCode: sentinelGrant()}, states: make(chan string, 16)},
		clock: clock,
		logs:  &syncBuffer{},
	}
	opts := Options{
		Credentials: []Credential{
			{Name: "main", Description: "Agency ad accounts", Kind: config.KindAdvertiser, App: testApp("main")},
			{Name: "shop", Description: "Shop account", Kind: config.KindTikTokAccount, App: testApp("shop")},
		},
		Tokens:    h.tok,
		Exchanger: h.ex,
		Loopback:  true,
		ProxyURL:  "http://127.0.0.1:8080",
		Now:       clock.Now,
		Logger:    slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mods {
		m(&opts)
	}
	a, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.admin = a
	return h
}

type response struct {
	status int
	header http.Header
	body   string
}

// do serves one request on the redirect URL's Host (localhost:8081);
// extra are "Name: value" headers.
func (h *harness) do(t *testing.T, method, target string, body io.Reader, extra ...string) response {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	req.Host = "localhost:8081"
	for _, hv := range extra {
		k, v, _ := strings.Cut(hv, ": ")
		req.Header.Add(k, v)
	}
	if method == http.MethodPost && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.admin.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Result().Header, body: rec.Body.String()}
}

// begin starts a browser flow and returns the state and the cookie header.
func (h *harness) begin(t *testing.T, name string) (state, cookie string) {
	t.Helper()
	r := h.do(t, http.MethodGet, "/authorize/"+name, nil)
	if r.status != http.StatusFound {
		t.Fatalf("GET /authorize/%s = %d, want 302; body %s", name, r.status, r.body)
	}
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		t.Fatalf("Location: %v", err)
	}
	state = loc.Query().Get("state")
	cookies := (&http.Response{Header: r.header}).Cookies()
	if len(cookies) != 1 {
		t.Fatalf("got %d cookies, want 1", len(cookies))
	}
	return state, "Cookie: " + cookies[0].Name + "=" + cookies[0].Value
}

// callback serves TikTok's redirect to the callback and, when it answers
// with the redirect to a clean /authorize/{name}/done URL, follows it with
// the same headers, as a browser does: the response is the page the
// operator ends on.
func (h *harness) callback(t *testing.T, code, state string, extra ...string) response {
	t.Helper()
	return h.follow(t, h.do(t, http.MethodGet, callbackURL(code, state), nil, extra...), extra...)
}

// follow follows the callback's redirect to /authorize/{name}/done, if r is
// one, with the same headers.
func (h *harness) follow(t *testing.T, r response, extra ...string) response {
	t.Helper()
	if r.status != http.StatusSeeOther {
		return r
	}
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, "/authorize/") || !strings.HasSuffix(loc, "/done") || strings.Contains(loc, "?") {
		t.Fatalf("callback redirected to %q, want a clean /authorize/{name}/done", loc)
	}
	return h.do(t, http.MethodGet, loc, nil, extra...)
}

func callbackURL(code, state string) string {
	return "/oauth/callback?" + url.Values{"auth_code": {code}, "code": {code}, "state": {state}}.Encode()
}

// checkHTML fails when page is not well-formed: unbalanced non-void
// elements, a duplicate id, or a missing doctype.
func checkHTML(t *testing.T, page string) {
	t.Helper()
	if !strings.HasPrefix(page, "<!DOCTYPE html>") {
		t.Errorf("page does not start with <!DOCTYPE html>")
	}
	void := map[string]bool{"meta": true, "link": true, "br": true, "img": true, "input": true, "hr": true}
	var stack []string
	ids := map[string]bool{}
	z := html.NewTokenizer(strings.NewReader(page))
	for i := 0; i < 100000; i++ {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if !errors.Is(z.Err(), io.EOF) {
				t.Errorf("tokenizer: %v", z.Err())
			}
			if len(stack) != 0 {
				t.Errorf("unclosed elements at end: %v", stack)
			}
			return
		case html.StartTagToken, html.SelfClosingTagToken:
			tok := z.Token()
			for _, at := range tok.Attr {
				if at.Key == "id" {
					if ids[at.Val] {
						t.Errorf("duplicate id %q", at.Val)
					}
					ids[at.Val] = true
				}
			}
			if tt == html.StartTagToken && !void[tok.Data] {
				stack = append(stack, tok.Data)
			}
		case html.EndTagToken:
			tok := z.Token()
			if len(stack) == 0 || stack[len(stack)-1] != tok.Data {
				t.Errorf("unexpected </%s>, open: %v", tok.Data, stack)
				return
			}
			stack = stack[:len(stack)-1]
		}
	}
	t.Errorf("page too long to check")
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, body)
		}
	}
}

func noSentinels(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range sentinels {
		if strings.Contains(text, s) {
			t.Errorf("%s contains secret %q", what, s)
		}
	}
}

func httptestRequest(method, target, host string) *http.Request {
	req := httptest.NewRequest(method, target, nil)
	req.Host = host
	return req
}

func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
