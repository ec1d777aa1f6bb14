package setup

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

// TestNoSecretAnywhere drives every page and JSON answer with sentinel
// secrets flowing through them, including TikTok errors that (against
// contract) echo the code and the app secret, and checks that no body,
// header or log line contains any of them.
func TestNoSecretAnywhere(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.AdminToken = sentinelAdminToken
		o.BreakerState = func(string) string { return "closed" }
	})
	auth := "Authorization: Bearer " + sentinelAdminToken
	var seen []response
	do := func(method, target, body string, headers ...string) response {
		var r response
		if body != "" {
			r = h.do(t, method, target, strings.NewReader(body), append(headers, auth)...)
		} else {
			r = h.do(t, method, target, nil, append(headers, auth)...)
		}
		seen = append(seen, r)
		return r
	}
	// follow completes a browser callback as a browser does: through the
	// redirect to the clean outcome page.
	follow := func(r response, headers ...string) response {
		if r.status == http.StatusSeeOther {
			return do("GET", r.header.Get("Location"), "", headers...)
		}
		return r
	}
	leaky := "bad auth_code " + sentinelAuthCode + " for secret " + sentinelAppSecret

	do("GET", "/authorize", "")
	do("GET", "/api/credentials", "")
	do("GET", "/authorize/nope", "")

	// Failing exchanges whose errors echo secrets.
	for _, exErr := range []error{
		&tiktok.APIError{Code: tiktok.CodeInvalidAuthCode, Message: leaky, RequestID: "r"},
		&tiktok.APIError{HTTPStatus: 500, Message: leaky},
		errors.New("tiktok: " + leaky),
	} {
		h.ex.err = exErr
		r := h.do(t, "GET", "/authorize/main", nil, auth)
		loc, _ := url.Parse(r.header.Get("Location"))
		cookie := (&http.Response{Header: r.header}).Cookies()[0]
		seen = append(seen, r)
		c := "Cookie: " + cookie.Name + "=" + cookie.Value
		follow(do("GET", callbackURL(sentinelAuthCode, loc.Query().Get("state")), "", c), c)
		b := decodeJSON[BeginResponse](t, do("POST", "/api/authorize/main", "").body)
		do("POST", "/api/authorize/"+b.State+"/complete", `{"code":"`+sentinelAuthCode+`"}`)
		do("GET", "/api/authorize/"+b.State+"/wait", "")
	}
	h.ex.err = nil

	// Successful browser and CLI flows, and everything shown afterwards.
	r := h.do(t, "GET", "/authorize/main", nil, auth)
	seen = append(seen, r)
	loc, _ := url.Parse(r.header.Get("Location"))
	cookie := (&http.Response{Header: r.header}).Cookies()[0]
	c := "Cookie: " + cookie.Name + "=" + cookie.Value
	if ok := follow(do("GET", callbackURL(sentinelAuthCode, loc.Query().Get("state")), "", c), c); ok.status != 200 {
		t.Fatalf("browser flow failed: %d", ok.status)
	}
	b := decodeJSON[BeginResponse](t, do("POST", "/api/authorize/main", "").body)
	if ok := do("POST", "/api/authorize/"+b.State+"/complete", `{"redirected_url":"http://localhost:8081/oauth/callback?auth_code=`+sentinelAuthCode+`&state=`+b.State+`"}`); ok.status != 200 {
		t.Fatalf("CLI flow failed: %d", ok.status)
	}
	do("GET", "/api/authorize/"+b.State+"/wait", "")
	do("GET", "/authorize", "")
	do("GET", "/api/credentials", "")
	do("GET", "/readyz", "")
	do("GET", "/healthz", "")
	h.do(t, "GET", "/authorize", nil) // unauthenticated: 401
	if len(h.tok.authorizeCalls()) != 2 {
		t.Fatalf("%d Authorize calls, want 2 successful flows", len(h.tok.authorizeCalls()))
	}

	for _, r := range seen {
		noSentinels(t, "response body", r.body)
		for k, vs := range r.header {
			for _, v := range vs {
				noSentinels(t, "response header "+k, v)
			}
		}
		if strings.HasPrefix(r.header.Get("Content-Type"), "text/html") && r.status != http.StatusFound && r.status != http.StatusSeeOther {
			checkHTML(t, r.body)
		}
	}
	logs := h.logs.String()
	noSentinels(t, "logs", logs)
	mustContain(t, "logs", logs, "authorization failed", "authorization started")
	mustContain(t, "logs", logs, "[redacted]")
}
