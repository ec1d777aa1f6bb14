package setup

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

func TestAdminToken(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.AdminToken = sentinelAdminToken
		o.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("# metrics\n")) })
	})
	basic := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+sentinelAdminToken))
	tests := []struct {
		method, path string
		protected    bool
	}{
		{"GET", "/", true},
		{"GET", "/authorize", true},
		{"GET", "/authorize/main", true},
		{"GET", "/api/credentials", true},
		{"GET", "/metrics", true},
		{"POST", "/api/authorize/main", true},
		{"GET", "/api/authorize/x/wait", true},
		{"POST", "/api/authorize/x/complete", true},
		{"GET", "/healthz", false},
		{"GET", "/readyz", false},
		{"GET", "/oauth/callback?state=x&auth_code=y", false},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			cases := []struct {
				name   string
				header []string
				ok     bool
			}{
				{"no token", nil, !tt.protected},
				{"wrong bearer", []string{"Authorization: Bearer wrong"}, !tt.protected},
				{"token without Bearer", []string{"Authorization: " + sentinelAdminToken}, !tt.protected},
				{"bearer", []string{"Authorization: Bearer " + sentinelAdminToken}, true},
				{"bearer, any case", []string{"Authorization: bearer " + sentinelAdminToken}, true},
				{"basic, wrong password", []string{"Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(sentinelAdminToken+":x"))}, !tt.protected},
				{"basic", []string{basic}, true},
			}
			for _, c := range cases {
				r := h.do(t, tt.method, tt.path, strings.NewReader("{}"), c.header...)
				if got := r.status != http.StatusUnauthorized; got != c.ok {
					t.Errorf("%s: status %d, want allowed=%v", c.name, r.status, c.ok)
				}
				if r.status == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic ") {
					t.Errorf("%s: 401 without a Basic challenge", c.name)
				}
				noSentinels(t, "response", r.body)
			}
		})
	}
}

func TestHostCheckWithoutToken(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Credentials[0].App.RedirectURL = "https://relay.example.com/tiktok" })
	for host, ok := range map[string]bool{
		"127.0.0.1:8081": true, "localhost:8081": true, "[::1]:8081": true, "localhost": true,
		"127.0.0.2": true, "evil.example:8081": false, "127.0.0.1.evil.example": false, "10.0.0.1:8081": false,
		"LocalHost:8081": true, "app.localhost:8081": true, "[::ffff:127.0.0.1]:8081": true, "::1": true,
		"localhost.evil.example": false, "[::2]:8081": false, "": false,
		// The redirect URL's host, whatever its case or port.
		"Relay.Example.com:443": true, "relay.example.com": true, "relay.example.com.evil.example": false,
	} {
		req := httptestRequest("GET", "/healthz", host)
		rec := serve(h.admin, req)
		if got := rec.Code == http.StatusOK; got != ok {
			t.Errorf("Host %q: status %d, want allowed=%v", host, rec.Code, ok)
		}
	}
	// With an admin token any Host may ask: the token is the protection.
	ht := newHarness(t, func(o *Options) { o.AdminToken = sentinelAdminToken })
	if rec := serve(ht.admin, httptestRequest("GET", "/healthz", "proxy.internal:8081")); rec.Code != http.StatusOK {
		t.Errorf("with token: status %d, want 200", rec.Code)
	}
}

func TestNewRefusesOpenNonLoopback(t *testing.T) {
	_, err := New(Options{Tokens: &fakeTokens{}, Exchanger: &fakeExchanger{}, Loopback: false})
	if err == nil || !strings.Contains(err.Error(), "admin_token") {
		t.Errorf("New without token on non-loopback: %v, want an admin_token error", err)
	}
	_, err = New(Options{Tokens: &fakeTokens{}, Exchanger: &fakeExchanger{}, Loopback: true,
		Credentials: []Credential{{Name: "a"}, {Name: "a"}}})
	if err == nil {
		t.Errorf("New with a duplicate credential: no error")
	}
}

func TestProbesAndRedirects(t *testing.T) {
	h := newHarness(t)
	if r := h.do(t, "GET", "/healthz", nil); r.status != 200 || r.body != "ok" {
		t.Errorf("/healthz = %d %q", r.status, r.body)
	}
	if r := h.do(t, "GET", "/readyz", nil); r.status != 200 {
		t.Errorf("/readyz = %d %q", r.status, r.body)
	}
	h.tok.readyErr = errors.New("tokens: store unreachable: connection refused")
	if r := h.do(t, "GET", "/readyz", nil); r.status != 503 || !strings.Contains(r.body, "store unreachable") {
		t.Errorf("/readyz with store down = %d %q", r.status, r.body)
	}
	if r := h.do(t, "GET", "/", nil); r.status != 302 || r.header.Get("Location") != "/authorize" {
		t.Errorf("/ = %d Location %q", r.status, r.header.Get("Location"))
	}
	if r := h.do(t, "GET", "/metrics", nil); r.status != 404 {
		t.Errorf("/metrics without a handler = %d, want 404", r.status)
	}
	hm := newHarness(t, func(o *Options) {
		o.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("tiktok_auth_proxy_build_info 1\n"))
		})
	})
	if r := hm.do(t, "GET", "/metrics", nil); r.status != 200 || !strings.Contains(r.body, "build_info") {
		t.Errorf("/metrics = %d %q", r.status, r.body)
	}
}

func TestAPICredentials(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.BreakerState = func(string) string { return "closed" } })
	state, cookie := h.begin(t, "main")
	if r := h.callback(t, sentinelAuthCode, state, cookie); r.status != 200 {
		t.Fatalf("callback %d", r.status)
	}
	r := h.do(t, "GET", "/api/credentials", nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d type %q", r.status, r.header.Get("Content-Type"))
	}
	noSentinels(t, "/api/credentials", r.body)
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0]["name"] != "main" || got[1]["name"] != "shop" {
		t.Fatalf("credentials %v, want main then shop", got)
	}
	main := got[0]
	for k, want := range map[string]any{
		"description": "Agency ad accounts", "kind": "advertiser", "authorized": true,
		"breaker_state": "closed", "reauthorization_required": false, "access_expires_at": "2026-03-02T12:00:00Z",
	} {
		if main[k] != want {
			t.Errorf("main[%q] = %v, want %v", k, main[k], want)
		}
	}
	if ads, _ := main["advertisers"].([]any); len(ads) != 2 {
		t.Errorf("main advertisers %v", main["advertisers"])
	}
	shop := got[1]
	if shop["authorized"] != false || shop["kind"] != "tiktok_account" {
		t.Errorf("shop %v", shop)
	}
	if ads, ok := shop["advertisers"].([]any); !ok || len(ads) != 0 {
		t.Errorf("shop advertisers %v, want []", shop["advertisers"])
	}
}

func TestSpan(t *testing.T) {
	now := newClock().Now()
	tests := []struct {
		at   time.Time
		want string
	}{
		{now.Add(24*time.Hour - time.Minute), "in 23h 59m"},
		{now.Add(24 * time.Hour), "in 24h 0m"},
		{now.Add(47*time.Hour + 59*time.Minute), "in 47h 59m"},
		{now.Add(48 * time.Hour), "in 2d 0h"},
		{now.Add(365 * 24 * time.Hour), "in 365d 0h"},
		{now.Add(5*time.Minute + 59*time.Second), "in 5m"},
		{now.Add(30 * time.Second), "in less than a minute"},
		{now.Add(-90 * time.Minute), "1h 30m ago"},
		{now.Add(-10 * time.Second), "just now"},
	}
	for _, tt := range tests {
		if got := until(now, tt.at); got != tt.want {
			t.Errorf("until(%v) = %q, want %q", tt.at.Sub(now), got, tt.want)
		}
	}
	st := tokens.Status{Authorized: true}
	if got := accessLine(now, st).Text; got != "long-lived (no expiry)" {
		t.Errorf("long-lived access = %q", got)
	}
	if got := refreshLine(now, st).Text; got != "" {
		t.Errorf("long-lived refresh = %q, want no row", got)
	}
	if got := accessLine(now, tokens.Status{}).Text; got != "" {
		t.Errorf("unauthorized access = %q, want no row", got)
	}
}

// The pauses TikTok's rate limits put on an app are on the page, escaped.
func TestPagePausesShown(t *testing.T) {
	pause := "app 7123 paused until 14:05:00 UTC: per-minute limit (TikTok 40100) <b>"
	h := newHarness(t, func(o *Options) { o.Pauses = func() []string { return []string{pause} } })
	r := h.do(t, "GET", "/authorize", nil)
	if r.status != 200 || !strings.Contains(r.body, "TikTok's quota: app 7123 paused until 14:05:00 UTC: per-minute limit (TikTok 40100) &lt;b&gt;") {
		t.Errorf("page %d lacks the pause:\n%s", r.status, r.body)
	}
	h = newHarness(t)
	if r := h.do(t, "GET", "/authorize", nil); strings.Contains(r.body, "class=\"alert pause\"") {
		t.Error("a pause shown with none in force")
	}
}
