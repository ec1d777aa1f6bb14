package setup

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The localhost/127.0.0.1 trap: the binding cookie is kept per host name,
// so a flow started on another name than the redirect URL's would fail at
// the callback. /authorize/{name} first moves the browser there.
func TestBeginMovesToRedirectOrigin(t *testing.T) {
	tests := []struct {
		name, redirect, host, target string
		wantMove                     string // "" when the flow starts here
	}{
		{"127.0.0.1 while the redirect says localhost", "http://localhost:8081/oauth/callback", "127.0.0.1:8081", "/authorize/main",
			"http://localhost:8081/authorize/main?moved=1"},
		{"localhost while the redirect says 127.0.0.1", "http://127.0.0.1:8081/oauth/callback", "localhost:8081", "/authorize/main",
			"http://127.0.0.1:8081/authorize/main?moved=1"},
		{"another port", "http://localhost:9000/oauth/callback", "localhost:8081", "/authorize/main",
			"http://localhost:9000/authorize/main?moved=1"},
		{"the redirect URL's host", "http://localhost:8081/oauth/callback", "LOCALHOST:8081", "/authorize/main", ""},
		{"https default port behind an ingress", "https://setup.example.com/oauth/callback", "setup.example.com", "/authorize/main", ""},
		{"already moved once", "http://localhost:8081/oauth/callback", "127.0.0.1:8081", "/authorize/main?moved=1", ""},
		{"a callback elsewhere", "https://relay.example.com/tiktok", "127.0.0.1:8081", "/authorize/main", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) { o.Credentials[0].App.RedirectURL = tt.redirect })
			rec := serve(h.admin, httptestRequest(http.MethodGet, tt.target, tt.host))
			if rec.Code != http.StatusFound {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			loc := rec.Header().Get("Location")
			cookies := rec.Result().Cookies()
			if tt.wantMove != "" {
				if loc != tt.wantMove || len(cookies) != 0 {
					t.Errorf("Location %q cookies %v, want a move to %q without a cookie", loc, cookies, tt.wantMove)
				}
				if n := len(h.ex.exchangeCalls()); n != 0 {
					t.Errorf("%d exchanges", n)
				}
				return
			}
			if !strings.HasPrefix(loc, "https://tiktok.test/portal/auth") || len(cookies) != 1 {
				t.Errorf("Location %q cookies %v, want TikTok's consent page and the binding cookie", loc, cookies)
			}
		})
	}
}

func TestSetupURL(t *testing.T) {
	h := newHarness(t)
	if got := h.admin.SetupURL("http://127.0.0.1:8081"); got != "http://localhost:8081/authorize" {
		t.Errorf("SetupURL = %q, want the redirect URL's origin", got)
	}
	h = newHarness(t, func(o *Options) {
		for i := range o.Credentials {
			o.Credentials[i].App.RedirectURL = "https://relay.example.com/tiktok"
		}
	})
	if got := h.admin.SetupURL("http://127.0.0.1:8081/"); got != "http://127.0.0.1:8081/authorize" {
		t.Errorf("SetupURL with a foreign callback = %q, want the listener's own", got)
	}
}

// If the trap still happens (a bookmark of the consent page, another
// browser), the error page names the credential, says exactly why, and
// offers to try again where it works.
func TestCallbackWithoutCookieExplainsHostNames(t *testing.T) {
	h := newHarness(t)
	state, _ := h.begin(t, "main")
	r := h.callback(t, sentinelAuthCode, state)
	if r.status != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", r.status)
	}
	checkHTML(t, r.body)
	mustContain(t, "error page", r.body,
		"<h1>Authorization failed: main</h1>",
		"127.0.0.1", "localhost", "Start again from http://localhost:8081/authorize/main",
		`<a class="button" id="retry" href="/authorize/main">Try again</a>`,
		`id="back" href="/authorize"`,
		"any existing authorization of “main” is unchanged")
	if n := len(h.ex.exchangeCalls()); n != 0 {
		t.Errorf("%d exchanges for a callback without its cookie", n)
	}
}

// The error page after the callback's redirect names the credential, has a
// Try again button, and no doubled punctuation from TikTok's description.
func TestDeniedErrorPage(t *testing.T) {
	h := newHarness(t)
	state, cookie := h.begin(t, "main")
	q := url.Values{"error": {"access_denied"}, "error_description": {"The user canceled."}, "state": {state}}
	cb := h.do(t, http.MethodGet, "/oauth/callback?"+q.Encode(), nil, cookie)
	if cb.status != http.StatusSeeOther || cb.header.Get("Location") != "/authorize/main/done" {
		t.Fatalf("callback %d Location %q, want 303 to /authorize/main/done", cb.status, cb.header.Get("Location"))
	}
	r := h.follow(t, cb, cookie)
	if r.status != http.StatusBadRequest {
		t.Fatalf("status %d", r.status)
	}
	checkHTML(t, r.body)
	mustContain(t, "error page", r.body, "<h1>Authorization failed: main</h1>", "The user canceled.</p>",
		`id="retry" href="/authorize/main">Try again</a>`)
	msg := text(r.body[strings.Index(r.body, `id="error"`):])
	for _, stray := range []string{"..", ". .", " .", ":."} {
		if strings.Contains(msg, stray) {
			t.Errorf("error page has stray punctuation %q: %s", stray, msg)
		}
	}
}

// The outcome page shows nothing to a browser that did not run the flow.
func TestDoneWithoutFlow(t *testing.T) {
	h := newHarness(t)
	state, cookie := h.begin(t, "main")
	if r := h.callback(t, sentinelAuthCode, state, cookie); r.status != http.StatusOK {
		t.Fatalf("flow: %d", r.status)
	}
	const otherBinding = "Cookie: " + bindingCookie + "=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	for _, extra := range [][]string{nil, {otherBinding}} {
		r := h.do(t, http.MethodGet, "/authorize/main/done", nil, extra...)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/authorize" || strings.Contains(r.body, "7012345678901234567") {
			t.Errorf("done page with %v: %d Location %q, want 303 to /authorize", extra, r.status, r.header.Get("Location"))
		}
	}
	if r := h.do(t, http.MethodGet, "/authorize/shop/done", nil, cookie); r.status != http.StatusSeeOther {
		t.Errorf("done page of a credential this browser did not authorize: %d, want 303", r.status)
	}
}
