package setup

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func decodeJSON[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return v
}

// apiBegin mints a CLI state through the API.
func (h *harness) apiBegin(t *testing.T, name string) BeginResponse {
	t.Helper()
	r := h.do(t, http.MethodPost, "/api/authorize/"+name, nil)
	if r.status != http.StatusOK {
		t.Fatalf("POST /api/authorize/%s = %d %s", name, r.status, r.body)
	}
	return decodeJSON[BeginResponse](t, r.body)
}

func TestAPIBegin(t *testing.T) {
	h := newHarness(t)
	b := h.apiBegin(t, "main")
	if !validToken(b.State) {
		t.Errorf("state %q", b.State)
	}
	u, err := url.Parse(b.AuthorizeURL)
	if err != nil || u.Query().Get("state") != b.State || u.Query().Get("app_id") != "app-main" {
		t.Errorf("authorize_url %q does not carry the state", b.AuthorizeURL)
	}
	if want := h.clock.Now().Add(StateTTL); !b.ExpiresAt.Equal(want) {
		t.Errorf("expires_at %v, want %v", b.ExpiresAt, want)
	}
	r := h.do(t, http.MethodPost, "/api/authorize/nope", nil)
	if r.status != http.StatusNotFound || !strings.Contains(r.body, `"error"`) {
		t.Errorf("unknown credential: %d %s", r.status, r.body)
	}
}

func TestAPIRequiresJSON(t *testing.T) {
	h := newHarness(t)
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		r := h.do(t, http.MethodPost, "/api/authorize/main", strings.NewReader("{}"), "Content-Type: "+ct)
		if r.status != http.StatusUnsupportedMediaType {
			t.Errorf("Content-Type %s: status %d, want 415", ct, r.status)
		}
	}
	if r := h.do(t, http.MethodPost, "/api/authorize/main", nil, "Content-Type: application/json; charset=utf-8"); r.status != 200 {
		t.Errorf("JSON with charset: status %d", r.status)
	}
}

// waitingPoll starts a long-poll of state's wait API and returns once it
// blocks; its answer arrives on the channel.
func (h *harness) waitingPoll(t *testing.T, state string) <-chan response {
	t.Helper()
	waiting := make(chan struct{})
	var once sync.Once
	h.admin.onWait = func() { once.Do(func() { close(waiting) }) }
	got := make(chan response, 1)
	go func() { got <- h.do(t, http.MethodGet, "/api/authorize/"+state+"/wait", nil) }()
	<-waiting
	return got
}

func TestAPIWaitCompletesWhenCallbackFires(t *testing.T) {
	h := newHarness(t)
	b := h.apiBegin(t, "main")
	got := h.waitingPoll(t, b.State)
	// The consenting browser is not the CLI: no cookie, and still accepted.
	if r := h.callback(t, sentinelAuthCode, b.State); r.status != http.StatusOK {
		t.Fatalf("callback %d %s", r.status, r.body)
	}
	r := <-got
	w := decodeJSON[WaitResponse](t, r.body)
	if r.status != 200 || !w.Done || w.Result == nil || w.Result.Credential != "main" || len(w.Result.Status.Advertisers) != 2 {
		t.Fatalf("wait = %d %s", r.status, r.body)
	}
	noSentinels(t, "wait", r.body)
	// Later polls still report the outcome, without blocking.
	if w := decodeJSON[WaitResponse](t, h.do(t, http.MethodGet, "/api/authorize/"+b.State+"/wait", nil).body); !w.Done || w.Result == nil {
		t.Errorf("second wait %+v", w)
	}
}

func TestAPIWaitReportsFailedCallback(t *testing.T) {
	h := newHarness(t)
	b := h.apiBegin(t, "main")
	q := url.Values{"error": {"access_denied"}, "state": {b.State}}
	if r := h.do(t, http.MethodGet, "/oauth/callback?"+q.Encode(), nil); r.status != http.StatusBadRequest {
		t.Fatalf("callback %d", r.status)
	}
	w := decodeJSON[WaitResponse](t, h.do(t, http.MethodGet, "/api/authorize/"+b.State+"/wait", nil).body)
	if !w.Done || w.Result != nil || !strings.Contains(w.Error, "access_denied") {
		t.Errorf("wait %+v, want done with the access_denied error", w)
	}
}

func TestAPIWaitTimeoutAndUnknown(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.WaitTimeout = time.Nanosecond })
	b := h.apiBegin(t, "main")
	r := h.do(t, http.MethodGet, "/api/authorize/"+b.State+"/wait", nil)
	if w := decodeJSON[WaitResponse](t, r.body); r.status != 200 || w.Done {
		t.Errorf("timed-out wait = %d %s, want done:false", r.status, r.body)
	}
	if r := h.do(t, http.MethodGet, "/api/authorize/unknown/wait", nil); r.status != http.StatusNotFound {
		t.Errorf("unknown state wait = %d", r.status)
	}
	// A browser state is not visible through the CLI API.
	browserState, _ := h.begin(t, "main")
	if r := h.do(t, http.MethodGet, "/api/authorize/"+browserState+"/wait", nil); r.status != http.StatusNotFound {
		t.Errorf("browser state wait = %d, want 404", r.status)
	}
	body := strings.NewReader(`{"code":"` + sentinelAuthCode + `"}`)
	if r := h.do(t, http.MethodPost, "/api/authorize/"+browserState+"/complete", body); r.status != http.StatusNotFound {
		t.Errorf("browser state complete = %d, want 404", r.status)
	}
	h.clock.Advance(StateTTL)
	if r := h.do(t, http.MethodGet, "/api/authorize/"+b.State+"/wait", nil); r.status != http.StatusNotFound {
		t.Errorf("expired state wait = %d, want 404", r.status)
	}
	if n := len(h.tok.authorizeCalls()); n != 0 {
		t.Errorf("%d Authorize calls, want 0", n)
	}
}

// TestAPIWaitAnswersOnClose: shutting down must not wait WaitTimeout for
// a long-poll; one in progress and one begun later both answer done:false.
func TestAPIWaitAnswersOnClose(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.WaitTimeout = time.Hour })
	b := h.apiBegin(t, "main")
	got := h.waitingPoll(t, b.State)
	h.admin.Close()
	for i, r := range []response{<-got, h.do(t, http.MethodGet, "/api/authorize/"+b.State+"/wait", nil)} {
		if w := decodeJSON[WaitResponse](t, r.body); r.status != 200 || w.Done {
			t.Errorf("wait %d after Close = %d %s, want done:false", i, r.status, r.body)
		}
	}
	h.admin.Close() // a second Close is harmless
	// The flow itself still completes, and a poll then reports it.
	if r := h.callback(t, sentinelAuthCode, b.State); r.status != http.StatusOK {
		t.Fatalf("callback after Close %d %s", r.status, r.body)
	}
	if w := decodeJSON[WaitResponse](t, h.do(t, http.MethodGet, "/api/authorize/"+b.State+"/wait", nil).body); !w.Done || w.Result == nil {
		t.Errorf("wait after the callback %+v, want the result", w)
	}
}

func TestAPIComplete(t *testing.T) {
	tests := []struct {
		name       string
		body       func(state string) string
		status     int
		want       string
		authorized int
		consumed   bool
	}{
		{"code", func(string) string { return `{"code":"` + sentinelAuthCode + `"}` }, 200, `"credential":"main"`, 1, true},
		{"redirected url", func(s string) string {
			return `{"redirected_url":"http://localhost:8081/oauth/callback?auth_code=` + sentinelAuthCode + `&state=` + s + `"}`
		}, 200, `"advertisers"`, 1, true},
		{"redirected url of another state", func(string) string {
			return `{"redirected_url":"http://localhost:8081/oauth/callback?auth_code=` + sentinelAuthCode + `&state=other"}`
		}, 400, "another authorization", 0, false},
		{"redirected url without state", func(string) string {
			return `{"redirected_url":"http://localhost:8081/oauth/callback?auth_code=` + sentinelAuthCode + `"}`
		}, 400, "no state parameter", 0, false},
		{"redirected url with TikTok error", func(s string) string {
			return `{"redirected_url":"http://localhost:8081/oauth/callback?error=access_denied&state=` + s + `"}`
		}, 400, "access_denied", 0, false},
		{"rejected code", func(string) string { return `{"code":"stale"}` }, 502, "code 40110", 0, true},
		{"empty code", func(string) string { return `{"code":""}` }, 400, "no authorization code", 0, true},
		{"not JSON", func(string) string { return `code=x` }, 400, "body must be JSON", 0, false},
		{"unknown field", func(string) string { return `{"auth_code":"x"}` }, 400, "body must be JSON", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			b := h.apiBegin(t, "main")
			r := h.do(t, http.MethodPost, "/api/authorize/"+b.State+"/complete", strings.NewReader(tt.body(b.State)))
			if r.status != tt.status || !strings.Contains(r.body, tt.want) {
				t.Errorf("complete = %d %s, want %d containing %q", r.status, r.body, tt.status, tt.want)
			}
			noSentinels(t, "complete", r.body)
			if n := len(h.tok.authorizeCalls()); n != tt.authorized {
				t.Errorf("%d Authorize calls, want %d", n, tt.authorized)
			}
			// A consumed state is refused ("already been used") or, after a
			// success, reported again ("already completed"); only a live
			// one completes afresh.
			retry := h.callback(t, sentinelAuthCode, b.State)
			if consumed := strings.Contains(retry.body, "already been used") || strings.Contains(retry.body, "already completed"); consumed != tt.consumed {
				t.Errorf("consumed = %v, want %v (retry %d)", consumed, tt.consumed, retry.status)
			}
		})
	}
}

// A code pasted after the callback already finished the state reports the
// callback's outcome instead of a confusing "already used".
func TestAPICompleteAfterCallback(t *testing.T) {
	h := newHarness(t)
	b := h.apiBegin(t, "main")
	if r := h.callback(t, sentinelAuthCode, b.State); r.status != 200 {
		t.Fatalf("callback %d", r.status)
	}
	r := h.do(t, http.MethodPost, "/api/authorize/"+b.State+"/complete", strings.NewReader(`{"code":"`+sentinelAuthCode+`"}`))
	w := decodeJSON[WaitResponse](t, r.body)
	if r.status != 200 || !w.Done || w.Result == nil {
		t.Errorf("complete after callback = %d %s", r.status, r.body)
	}
	if n := len(h.ex.exchangeCalls()); n != 1 {
		t.Errorf("%d exchanges, want 1", n)
	}
}

func TestParseRedirect(t *testing.T) {
	tests := []struct {
		line, code, state, err string
	}{
		{"http://localhost:8081/oauth/callback?auth_code=abc&code=abc&state=s1", "abc", "s1", ""},
		{"  http://localhost:8081/oauth/callback?code=xyz&state=s2  \r", "xyz", "s2", ""},
		{"https://example.com/cb?auth_code=a%2Fb&state=s3", "a/b", "s3", ""},
		{"/oauth/callback?auth_code=abc&state=s4", "abc", "s4", ""},
		{"auth_code=abc&state=s5", "abc", "s5", ""},
		{"abcDEF123_-.", "abcDEF123_-.", "", ""},
		// Whatever looks like a URL or a query must carry the state to check.
		{"?auth_code=abc", "", "", "no state parameter"},
		{"auth_code=abc&code=abc", "", "", "no state parameter"},
		{"http://localhost:8081/oauth/callback?auth_code=abc", "", "", "no state parameter"},
		{"http://localhost:8081/oauth/callback?auth_code=abc&state=", "", "", "no state parameter"},
		{"/oauth/callback?code=abc", "", "", "no state parameter"},
		{"", "", "", "Nothing was pasted"},
		{"two words", "", "", "not a URL or a code"},
		{"http://localhost:8081/oauth/callback?state=s6", "", "", "no authorization code"},
		{"http://localhost:8081/oauth/callback?error=access_denied&error_description=no&state=s7", "", "", "access_denied"},
		{"http://localhost:8081/oauth/callback?auth_code=%zz", "", "", "malformed"},
	}
	for _, tt := range tests {
		code, state, err := ParseRedirect(tt.line)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseRedirect(%q) error %v, want %q", tt.line, err, tt.err)
			}
			continue
		}
		if err != nil || code != tt.code || state != tt.state {
			t.Errorf("ParseRedirect(%q) = %q, %q, %v; want %q, %q", tt.line, code, state, err, tt.code, tt.state)
		}
	}
}
