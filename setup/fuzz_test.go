package setup

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzCallback serves arbitrary callback queries, with and without a state
// this browser started. It checks that nothing is exchanged or stored
// without a valid state, a code and no error; that only TikTok's error
// names are shown; and that no page shows the app secret.
func FuzzCallback(f *testing.F) {
	for _, s := range []string{
		"auth_code=c&code=c",
		"error=access_denied&error_description=no",
		"error=server_error&auth_code=c",
		"error=%3Cscript%3E&state=x",
		"state=&state=x&code=c",
		"code=%zz&state=%",
		"auth_code=&code=c2",
		"error=&error_description=Call+555",
		";state=x&code=c",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, query string, started bool) {
		h := newHarness(t)
		req := httptest.NewRequest(http.MethodGet, "/oauth/callback", nil)
		req.Host = "127.0.0.1:8081"
		var cookies []string
		if started {
			state, cookie := h.begin(t, "main")
			cookies = append(cookies, cookie)
			k, v, _ := strings.Cut(cookie, ": ")
			req.Header.Set(k, v)
			// The handler reads the first state: this one.
			query = "state=" + url.QueryEscape(state) + "&" + query
		}
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		h.admin.ServeHTTP(rec, req)
		// A callback that took its state answers 303 to a clean done page;
		// what the browser is shown is that page.
		r := h.follow(t, response{status: rec.Code, header: rec.Header(), body: rec.Body.String()}, cookies...)
		body := r.body

		q := req.URL.Query()
		e, code := q.Get("error"), codeParam(q)
		exchanged, stored := h.ex.exchangeCalls(), h.tok.authorizeCalls()
		if !started || e != "" || code == "" {
			if r.status == http.StatusOK && e == "" || len(exchanged) != 0 || len(stored) != 0 {
				t.Fatalf("query %q (started %v): status %d, %d exchanges, %d stored; want a refusal", query, started, r.status, len(exchanged), len(stored))
			}
		}
		for _, c := range exchanged {
			if c.code != code {
				t.Fatalf("exchanged %q, the query's code is %q", c.code, code)
			}
		}
		if e != "" && !deniedErrors[e] && strings.Contains(body, "TikTok reported an error") {
			t.Fatalf("error %q is not TikTok's, but the page reports it:\n%s", e, body)
		}
		if strings.Contains(body, sentinelAppSecret) {
			t.Fatalf("the page shows the app secret:\n%s", body)
		}
	})
}

// FuzzParseRedirect checks ParseRedirect on arbitrary pasted text: it never
// panics, a success always has a code, and a URL carrying TikTok's error
// parameter is never taken as a code.
func FuzzParseRedirect(f *testing.F) {
	for _, s := range []string{
		"http://localhost:8081/oauth/callback?auth_code=c&code=c&state=s",
		"auth_code=c&state=s",
		"bare-code",
		"http://localhost:8081/oauth/callback?error=access_denied&state=s",
		"?code=c",
		"/oauth/callback?code=%zz",
		"  code with spaces ",
		"http://[::1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		code, state, err := ParseRedirect(line)
		if err != nil {
			return
		}
		if code == "" {
			t.Fatalf("ParseRedirect(%q) = no code, state %q, no error", line, state)
		}
		if state == "" && strings.ContainsAny(code, " \t&") {
			t.Fatalf("ParseRedirect(%q) took %q as a bare code", line, code)
		}
		if u, perr := url.Parse(strings.TrimSpace(line)); perr == nil && u.Query().Get("error") != "" {
			t.Fatalf("ParseRedirect(%q) = code %q despite TikTok's error", line, code)
		}
	})
}
