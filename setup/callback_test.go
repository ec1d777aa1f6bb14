package setup

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

func TestBeginRedirectsWithBoundState(t *testing.T) {
	h := newHarness(t)
	r := h.do(t, http.MethodGet, "/authorize/main", nil)
	if r.status != http.StatusFound {
		t.Fatalf("status %d, want 302", r.status)
	}
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if loc.Host != "tiktok.test" || loc.Path != "/portal/auth" || loc.Query().Get("app_id") != "app-main" {
		t.Errorf("Location %s is not the consent URL of app-main", loc)
	}
	state := loc.Query().Get("state")
	if !validToken(state) {
		t.Errorf("state %q is not 256 random bits in base64url", state)
	}
	cookies := (&http.Response{Header: r.header}).Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v, want one", cookies)
	}
	c := cookies[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.MaxAge != 600 {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Lax, Path=/, Max-Age=600", c)
	}
	if c.Value == state || !validToken(c.Value) {
		t.Errorf("cookie value must be a separate random binding, got %q (state %q)", c.Value, state)
	}

	// A second flow in the same browser reuses its binding, so both tabs work.
	r2 := h.do(t, http.MethodGet, "/authorize/main", nil, "Cookie: "+c.Name+"="+c.Value)
	c2 := (&http.Response{Header: r2.header}).Cookies()
	if len(c2) != 1 || c2[0].Value != c.Value {
		t.Errorf("second begin set cookie %v, want the same binding", c2)
	}
	loc2, _ := url.Parse(r2.header.Get("Location"))
	if s2 := loc2.Query().Get("state"); s2 == state {
		t.Errorf("second begin reused state")
	}
}

func TestBeginUnknownCredential(t *testing.T) {
	h := newHarness(t)
	r := h.do(t, http.MethodGet, "/authorize/nope", nil)
	if r.status != http.StatusNotFound {
		t.Errorf("status %d, want 404", r.status)
	}
	mustContain(t, "404 page", r.body, `id="error"`, `href="/authorize"`)
	checkHTML(t, r.body)
}

func TestCallbackSuccess(t *testing.T) {
	for _, param := range []string{"auth_code", "code"} {
		t.Run(param, func(t *testing.T) {
			h := newHarness(t)
			state, cookie := h.begin(t, "main")
			cb := h.do(t, http.MethodGet, "/oauth/callback?"+url.Values{param: {sentinelAuthCode}, "state": {state}}.Encode(), nil, cookie)
			// The browser leaves the callback URL, and its code, at once.
			if cb.status != http.StatusSeeOther || cb.header.Get("Location") != "/authorize/main/done" {
				t.Fatalf("callback: %d Location %q, want 303 to /authorize/main/done", cb.status, cb.header.Get("Location"))
			}
			if cb.header.Get("Cache-Control") != "no-store" || cb.header.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("callback redirect headers %v", cb.header)
			}
			r := h.follow(t, cb, cookie)
			if r.status != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", r.status, r.body)
			}
			checkHTML(t, r.body)
			mustContain(t, "success page", r.body,
				`id="granted-advertisers"`, "7012345678901234567", "7012345678901234568", "Acme Shoes",
				`id="granted-scopes"`, `<span class="mono">4</span> · Reporting`, "in 24h 0m",
				"curl -sS &#39;http://127.0.0.1:8080/open_api/v1.3/advertiser/info/?advertiser_ids=%5B%227012345678901234567%22%5D&#39;")
			if got := r.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			if got := r.header.Get("Referrer-Policy"); got != "no-referrer" {
				t.Errorf("Referrer-Policy %q, want no-referrer", got)
			}
			calls := h.tok.authorizeCalls()
			if len(calls) != 1 || calls[0].name != "main" || calls[0].grant.AccessToken != sentinelAccessToken {
				t.Fatalf("Authorize calls %+v, want one for main with the exchanged grant", calls)
			}
			ex := h.ex.exchangeCalls()
			if len(ex) != 1 || ex[0].code != sentinelAuthCode || ex[0].app.AppID != "app-main" {
				t.Errorf("Exchange calls %+v", ex)
			}
			// The state is consumed: replaying the callback repeats nothing.
			again := h.callback(t, sentinelAuthCode, state, cookie)
			if again.status != http.StatusOK || !strings.Contains(again.body, `id="granted-advertisers"`) {
				t.Errorf("replay: status %d body %s", again.status, again.body)
			}
			if n := len(h.tok.authorizeCalls()); n != 1 {
				t.Errorf("replay stored again: %d Authorize calls", n)
			}
			if n := len(h.ex.exchangeCalls()); n != 1 {
				t.Errorf("replay exchanged again: %d Exchange calls", n)
			}
		})
	}
}

func TestCallbackErrors(t *testing.T) {
	const otherBinding = "Cookie: " + bindingCookie + "=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	tests := []struct {
		name string
		// run performs the failing callback, given a fresh browser flow.
		run        func(t *testing.T, h *harness, state, cookie string) response
		status     int
		message    string
		also       string // a second part the page must show, if any
		exchanged  bool   // the failure happens after the exchange was attempted
		consumed   bool   // the state can no longer be completed afterwards
		authorized int    // Authorize calls expected in total
	}{
		{
			name: "unknown state",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				return h.callback(t, sentinelAuthCode, "bm90LWEtc3RhdGU", cookie)
			},
			status: 400, message: "was not started here",
		},
		{
			name: "missing state",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				return h.follow(t, h.do(t, http.MethodGet, "/oauth/callback?auth_code="+sentinelAuthCode, nil, cookie), cookie)
			},
			status: 400, message: "no state parameter",
		},
		{
			// The first use failed: the same browser is shown that failure
			// again, and any other request is refused (a reuse after success
			// is TestCallbackReloadAfterSuccess).
			name: "reused state",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				if r := h.callback(t, "stale-code", state, cookie); r.status != 502 {
					t.Fatalf("first callback: %d %s", r.status, r.body)
				}
				if r := h.callback(t, sentinelAuthCode, state, cookie); r.status != 502 || !strings.Contains(r.body, "40110") {
					t.Errorf("same browser's reuse: %d %s, want the first failure again", r.status, r.body)
				}
				return h.callback(t, sentinelAuthCode, state)
			},
			status: 400, message: "already been used", exchanged: true, consumed: true,
		},
		{
			name: "expired state",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				h.clock.Advance(StateTTL)
				return h.callback(t, sentinelAuthCode, state, cookie)
			},
			status: 400, message: "expired", consumed: true,
		},
		{
			name: "cross-browser cookie",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				return h.callback(t, sentinelAuthCode, state, otherBinding)
			},
			status: 400, message: "different browser",
		},
		{
			name: "missing cookie",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				return h.callback(t, sentinelAuthCode, state)
			},
			status: 400, message: "another browser",
		},
		{
			name: "TikTok access_denied",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				q := url.Values{"error": {"access_denied"}, "error_description": {"The user denied <b>access</b>"}, "state": {state}}
				return h.follow(t, h.do(t, http.MethodGet, "/oauth/callback?"+q.Encode(), nil, cookie), cookie)
			},
			status: 400, message: "The user denied &lt;b&gt;access&lt;/b&gt;", consumed: true,
		},
		{
			name: "TikTok access_denied with unknown state",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				q := url.Values{"error": {"access_denied"}, "error_description": {"The user canceled"}, "state": {"bm90LWEtc3RhdGU"}}
				return h.follow(t, h.do(t, http.MethodGet, "/oauth/callback?"+q.Encode(), nil, cookie), cookie)
			},
			status: 400, message: "(access_denied). ", also: "was not started here",
		},
		{
			name: "TikTok access_denied without state",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				q := url.Values{"error": {"access_denied"}, "error_description": {"The user canceled"}}
				return h.follow(t, h.do(t, http.MethodGet, "/oauth/callback?"+q.Encode(), nil, cookie), cookie)
			},
			status: 400, message: "(access_denied). ", also: "no state parameter",
		},
		{
			name: "TikTok server_error",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				q := url.Values{"error": {"server_error"}, "state": {state}, "auth_code": {sentinelAuthCode}}
				return h.follow(t, h.do(t, http.MethodGet, "/oauth/callback?"+q.Encode(), nil, cookie), cookie)
			},
			status: 502, message: "TikTok reported an error: server_error", consumed: true,
		},
		{
			name: "missing code",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				return h.follow(t, h.do(t, http.MethodGet, "/oauth/callback?state="+state, nil, cookie), cookie)
			},
			status: 400, message: "no authorization code", consumed: true,
		},
		{
			name: "exchange envelope error",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				return h.callback(t, "stale-code", state, cookie)
			},
			status: 502, message: "code 40110: auth_code is invalid (request_id req-1)", exchanged: true, consumed: true,
		},
		{
			name: "exchange HTTP error",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				h.ex.err = &tiktok.APIError{HTTPStatus: 503, Message: "Service Unavailable"}
				return h.callback(t, sentinelAuthCode, state, cookie)
			},
			status: 502, message: "answered HTTP 503", exchanged: true, consumed: true,
		},
		{
			name: "exchange transport error",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				h.ex.err = errors.New("tiktok: Post \"https://tiktok.test/token\": dial tcp: connection refused")
				return h.callback(t, sentinelAuthCode, state, cookie)
			},
			status: 502, message: "could not reach TikTok", exchanged: true, consumed: true,
		},
		{
			name: "exchange answer not JSON",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				h.ex.exchange = tokenEndpoint(t, `<html>Sign in to continue</html>`)
				return h.callback(t, sentinelAuthCode, state, cookie)
			},
			status: 502, message: "answered with an unexpected response", exchanged: true, consumed: true,
		},
		{
			name: "exchange success without access_token",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				h.ex.exchange = tokenEndpoint(t, `{"code":0,"message":"OK","request_id":"r","data":{"advertiser_ids":["7012345678901234567"]}}`)
				return h.callback(t, sentinelAuthCode, state, cookie)
			},
			status: 502, message: "answered with an unexpected response", exchanged: true, consumed: true,
		},
		{
			name: "exchange timeout",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				// What tiktok.Client returns once exchangeTimeout has passed.
				h.ex.err = fmt.Errorf("tiktok: token request: %w", context.DeadlineExceeded)
				return h.callback(t, sentinelAuthCode, state, cookie)
			},
			status: 504, message: "did not answer in time", exchanged: true, consumed: true,
		},
		{
			name: "store failure",
			run: func(t *testing.T, h *harness, state, cookie string) response {
				h.tok.authErr = errors.New("tokens: disk full")
				return h.callback(t, sentinelAuthCode, state, cookie)
			},
			status: 500, message: "could not store the grant", exchanged: true, consumed: true, authorized: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			// An earlier authorization that no failure may touch.
			h.tok.seed("main", earlierGrant())
			before := h.do(t, http.MethodGet, "/api/credentials", nil).body
			state, cookie := h.begin(t, "main")
			r := tt.run(t, h, state, cookie)
			if r.status != tt.status {
				t.Errorf("status %d, want %d", r.status, tt.status)
			}
			checkHTML(t, r.body)
			mustContain(t, "error page", r.body, `id="error"`, `href="/authorize"`, tt.message, tt.also, "Nothing was stored")
			if after := h.do(t, http.MethodGet, "/api/credentials", nil).body; after != before {
				t.Errorf("/api/credentials changed:\nbefore %s\nafter  %s", before, after)
			}
			if g := h.tok.grant("main"); !reflect.DeepEqual(g, earlierGrant()) {
				t.Errorf("stored grant changed to %+v", g)
			}
			noSentinels(t, "error page", r.body)
			noSentinels(t, "log", h.logs.String())
			if got := len(h.tok.authorizeCalls()); got != tt.authorized {
				t.Errorf("Authorize called %d times, want %d", got, tt.authorized)
			}
			if got := len(h.ex.exchangeCalls()) > 0; got != tt.exchanged {
				t.Errorf("exchanged = %v, want %v", got, tt.exchanged)
			}
			// Whether the state survives: the real browser retries properly.
			h.ex.err, h.tok.authErr = nil, nil
			retry := h.callback(t, sentinelAuthCode, state, cookie)
			if consumed := retry.status != http.StatusOK; consumed != tt.consumed {
				t.Errorf("state consumed = %v, want %v (retry %d: %s)", consumed, tt.consumed, retry.status, retry.body)
			}
		})
	}
}

// earlierGrant is an authorization made before a test's flow.
func earlierGrant() *tiktok.Grant {
	return &tiktok.Grant{AccessToken: "earlier-access-token", AdvertiserIDs: []string{"7099999999999999999"}, Scopes: []string{"1"}}
}

// tokenEndpoint is an Exchange that runs the real tiktok.Client against a
// loopback token endpoint answering HTTP 200 with body.
func tokenEndpoint(t *testing.T, body string) func(context.Context, tiktok.App, string) (*tiktok.Grant, error) {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(ts.Close)
	return func(ctx context.Context, app tiktok.App, code string) (*tiktok.Grant, error) {
		app.Endpoints.TokenURL = ts.URL + "/open_api/v1.3/oauth2/access_token/"
		return (&tiktok.Client{HTTP: ts.Client()}).Exchange(ctx, app, code)
	}
}

// Reloading the success page (the same callback URL in the same browser)
// shows the outcome again instead of an error, and repeats nothing.
func TestCallbackReloadAfterSuccess(t *testing.T) {
	h := newHarness(t)
	state, cookie := h.begin(t, "main")
	if r := h.callback(t, sentinelAuthCode, state, cookie); r.status != http.StatusOK {
		t.Fatalf("callback %d %s", r.status, r.body)
	}
	r := h.callback(t, sentinelAuthCode, state, cookie)
	if r.status != http.StatusOK {
		t.Fatalf("reload: status %d, want 200: %s", r.status, r.body)
	}
	checkHTML(t, r.body)
	mustContain(t, "reload page", r.body, `id="granted-advertisers"`,
		"7012345678901234567", "Acme Shoes", `<span class="mono">100</span> · Read Ad Account Information`)
	noSentinels(t, "reload page", r.body)
	if strings.Contains(r.body, `id="error"`) {
		t.Errorf("reload page shows an error:\n%s", r.body)
	}
	if a, e := len(h.tok.authorizeCalls()), len(h.ex.exchangeCalls()); a != 1 || e != 1 {
		t.Errorf("reload repeated the flow: %d Authorize, %d Exchange calls", a, e)
	}
	// Another browser holding the URL learns nothing about the grant.
	const otherBinding = "Cookie: " + bindingCookie + "=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	for _, extra := range [][]string{{otherBinding}, nil} {
		r := h.callback(t, sentinelAuthCode, state, extra...)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "already been used") || strings.Contains(r.body, "7012345678901234567") {
			t.Errorf("reload with %v: status %d body %s, want 400 already been used", extra, r.status, r.body)
		}
	}

	// A CLI state is bound to nobody, so a reload could come from anyone
	// who saw the URL (an access log): it shows nothing of the grant. The
	// terminal that started it already showed the outcome.
	_, cli, err := h.admin.Begin("main", "")
	if err != nil {
		t.Fatal(err)
	}
	if r := h.callback(t, sentinelAuthCode, cli); r.status != http.StatusOK {
		t.Fatalf("CLI callback: status %d %s", r.status, r.body)
	}
	r = h.callback(t, sentinelAuthCode, cli)
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "already been used") {
		t.Errorf("CLI callback reload: status %d %s, want 400 already been used", r.status, r.body)
	}
	for _, id := range []string{"7012345678901234567", "7012345678901234568"} {
		if strings.Contains(r.body, id) {
			t.Errorf("CLI callback reload shows advertiser %s", id)
		}
	}
	if n := len(h.tok.authorizeCalls()); n != 2 {
		t.Errorf("%d Authorize calls, want 2", n)
	}
}

// The binding cookie is Secure when the browser reaches the listener over
// https: directly, or through a TLS-terminating ingress, which an https
// redirect URL reveals.
func TestBindingCookieSecure(t *testing.T) {
	tests := []struct {
		name, redirect string
		tls, secure    bool
	}{
		{"plain http", "http://localhost:8081/oauth/callback", false, false},
		{"https redirect behind an ingress", "https://setup.example.com/oauth/callback", false, true},
		{"https redirect, upper-case scheme", "HTTPS://setup.example.com/oauth/callback", false, true},
		{"TLS on the listener", "http://localhost:8081/oauth/callback", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) { o.Credentials[0].App.RedirectURL = tt.redirect })
			u, _ := url.Parse(tt.redirect)
			req := httptestRequest(http.MethodGet, "/authorize/main", u.Host)
			if tt.tls {
				req.TLS = &tls.ConnectionState{}
			}
			rec := serve(h.admin, req)
			if rec.Code != http.StatusFound {
				t.Fatalf("status %d", rec.Code)
			}
			cookies := rec.Result().Cookies()
			if len(cookies) != 1 || cookies[0].Secure != tt.secure {
				t.Errorf("cookies %+v, want one with Secure=%v", cookies, tt.secure)
			}
		})
	}
}

// A CLI state has no cookie: any browser's callback completes it.
func TestCallbackCompletesCLIState(t *testing.T) {
	h := newHarness(t)
	_, state, err := h.admin.Begin("main", "")
	if err != nil {
		t.Fatal(err)
	}
	r := h.callback(t, sentinelAuthCode, state)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if len(h.tok.authorizeCalls()) != 1 {
		t.Errorf("Authorize not called once")
	}
}

// A browser state cannot be completed without its binding, even by Complete.
func TestCompleteRequiresBindingOfBrowserState(t *testing.T) {
	h := newHarness(t)
	_, state, err := h.admin.Begin("main", "binding-of-browser-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.Complete(t.Context(), state, "", sentinelAuthCode); !errors.Is(err, errNoBinding) {
		t.Errorf("Complete without binding: %v, want errNoBinding", err)
	}
	if _, err := h.admin.Complete(t.Context(), state, "binding-of-browser-b", sentinelAuthCode); !errors.Is(err, errWrongBinding) {
		t.Errorf("Complete with other binding: %v, want errWrongBinding", err)
	}
	res, err := h.admin.Complete(t.Context(), state, "binding-of-browser-a", sentinelAuthCode)
	if err != nil || res.Credential != "main" || len(res.Status.Advertisers) != 2 {
		t.Errorf("Complete with binding: %+v, %v", res, err)
	}
}

func TestStateStoreBoundedAndSwept(t *testing.T) {
	clock := newClock()
	s := newStateStore(clock.Now)
	first, _, err := s.mint("main", "b")
	if err != nil {
		t.Fatal(err)
	}
	for range maxStates + 10 {
		clock.Advance(time.Millisecond)
		if _, _, err := s.mint("main", "b"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.states); n > maxStates {
		t.Errorf("%d states held, want at most %d", n, maxStates)
	}
	if _, ok := s.states[first]; ok {
		t.Errorf("oldest state was not evicted")
	}
	clock.Advance(StateTTL)
	if _, _, err := s.mint("main", "b"); err != nil {
		t.Fatal(err)
	}
	if n := len(s.states); n != 1 {
		t.Errorf("%d states after expiry sweep, want 1", n)
	}
}

// TestCallbackDenialWithoutStateHidesDescription: with no valid state
// anyone can craft the callback link, so the free-text description it
// carries is not shown on the admin's page; TikTok's error code is.
func TestCallbackDenialWithoutStateHidesDescription(t *testing.T) {
	h := newHarness(t)
	for _, state := range []string{"", "bm90LWEtc3RhdGU"} {
		q := url.Values{"error": {"access_denied"}, "error_description": {"Call +1 555 0100 to restore access"}}
		if state != "" {
			q.Set("state", state)
		}
		r := h.do(t, http.MethodGet, "/oauth/callback?"+q.Encode(), nil)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "access_denied") {
			t.Errorf("state %q: status %d, want 400 naming access_denied", state, r.status)
		}
		if strings.Contains(r.body, "555 0100") {
			t.Errorf("state %q: the crafted description is shown:\n%s", state, r.body)
		}
	}
}
