package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

const campaignGet = "/open_api/v1.3/campaign/get/"

func TestProxyErrors(t *testing.T) {
	clients := func(c *config.Config, _ *Options) {
		c.Clients = []config.Client{
			{Name: "ci", Token: "client-secret-1", Credentials: []string{"main"}},
			{Name: "ops", Token: "client-secret-2", Credentials: []string{"main", "other"}},
		}
	}
	tests := []struct {
		name       string
		edit       func(*config.Config, *Options)
		tokErr     error
		header     map[string]string
		code       int
		status     int
		retryAfter string
		message    string // substring of the message
		cred       string // X-TikTok-Auth-Proxy-Credential, "" before a credential is picked
	}{
		{name: "not authorized", tokErr: tokens.ErrNotAuthorized, code: 90003, status: 503, message: "open http://127.0.0.1:8081/authorize", cred: "main"},
		{name: "reauth", tokErr: fmt.Errorf("wrapped: %w", tokens.ErrReauthRequired), code: 90004, status: 503, message: "re-authorize", cred: "main"},
		{name: "refresh failed", tokErr: &tokens.RefreshError{Credential: "main", RetryAfter: 2500 * time.Millisecond, Err: errors.New("boom")},
			code: 90005, status: 503, retryAfter: "3", cred: "main"},
		{name: "client missing", edit: clients, code: 90010, status: 401},
		{name: "client wrong", edit: clients, header: map[string]string{"Proxy-Authorization": "Bearer nope"}, code: 90010, status: 401},
		{name: "client malformed", edit: clients, header: map[string]string{"Proxy-Authorization": "Token x"}, code: 90010, status: 401},
		{name: "client not allowed", edit: clients, header: map[string]string{"Proxy-Authorization": "Bearer client-secret-1", "X-TikTok-Credential": "other"},
			code: 90010, status: 403, message: `client "ci" may not use credential "other"`, cred: "other"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, tc.edit)
			if tc.tokErr != nil {
				h.tok.errs["main"] = tc.tokErr
			}
			r := httptest.NewRequest(http.MethodGet, campaignGet, nil)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			w := h.do(r)
			e := checkProxyError(t, w, tc.code, tc.status)
			if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
			}
			if !strings.Contains(e.Message, tc.message) {
				t.Errorf("message %q does not contain %q", e.Message, tc.message)
			}
			if got := w.Header().Get(HeaderCredential); got != tc.cred {
				t.Errorf("%s = %q, want %q", HeaderCredential, got, tc.cred)
			}
			if n := len(h.up.requests()); n != 0 {
				t.Errorf("upstream got %d requests", n)
			}
		})
	}
}

func TestClientsAllowed(t *testing.T) {
	h := newHarness(t, nil, func(c *config.Config, _ *Options) {
		c.Listen = "0.0.0.0:8080"
		c.Clients = []config.Client{{Name: "ops", Token: "client-secret-2", Credentials: []string{"main", "other"}}}
	})
	for _, auth := range []string{"Bearer client-secret-2", "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:client-secret-2"))} {
		r := httptest.NewRequest(http.MethodGet, campaignGet, nil)
		r.Header.Set("Proxy-Authorization", auth)
		if w := h.do(r); w.Code != http.StatusOK {
			t.Errorf("%s: status %d: %s", strings.Fields(auth)[0], w.Code, w.Body)
		}
	}
	for _, s := range h.up.requests() {
		if s.Header.Get("Proxy-Authorization") != "" {
			t.Errorf("Proxy-Authorization forwarded to TikTok")
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*config.Config)
		wantErr string
	}{
		{name: "loopback without clients"},
		{name: "localhost", edit: func(c *config.Config) { c.Listen = "localhost:8080" }},
		{name: "all interfaces", edit: func(c *config.Config) { c.Listen = "0.0.0.0:8080" }, wantErr: "not a loopback"},
		{name: "empty host", edit: func(c *config.Config) { c.Listen = ":8080" }, wantErr: "not a loopback"},
		{name: "non-loopback with clients", edit: func(c *config.Config) {
			c.Listen = "10.0.0.1:8080"
			c.Clients = []config.Client{{Name: "a", Token: "t", Credentials: []string{"main"}}}
		}},
		{name: "relative base URL", edit: func(c *config.Config) { c.Upstream.BaseURL = "business-api.tiktok.com" }, wantErr: "not an absolute"},
		{name: "two defaults", edit: func(c *config.Config) { c.Credentials[1].Default = true }, wantErr: "both default"},
		{name: "rate limit without burst", edit: func(c *config.Config) { c.Credentials[0].RateLimit = config.RateLimit{QPS: 2} }, wantErr: "rate_limit.burst"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig("https://business-api.tiktok.com")
			if tc.edit != nil {
				tc.edit(c)
			}
			_, err := New(Options{Config: c, Tokens: newFakeTokens()})
			if tc.wantErr == "" && err != nil {
				t.Fatalf("New: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("New error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestHeadersToUpstream(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Up-Hop")
		w.Header().Set("X-Up-Hop", "1")
		w.Header().Set("X-Tt-Logid", "log1")
		writeEnvelope(w, 0)
	}, nil)
	r := httptest.NewRequest(http.MethodGet, campaignGet+"?advertiser_id="+advMain, nil)
	r.RemoteAddr = "192.0.2.7:5555"
	r.Header.Set("Access-Token", "client-own-token")
	r.Header.Set("Connection", "X-Hop")
	r.Header.Set("X-Hop", "1")
	r.Header.Set("X-Forwarded-For", "198.51.100.1")
	r.Header.Set("Proxy-Authorization", "Bearer x")
	r.Header.Set("X-TikTok-Credential", "main")
	r.Header.Set("Business-SDK", "1")
	w := h.do(r)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	seen := h.up.requests()[0]
	if got := seen.Header.Values("Access-Token"); len(got) != 1 || got[0] != "tok-main" {
		t.Errorf("Access-Token = %q, want only the proxy's", got)
	}
	for _, k := range []string{"X-Hop", "X-Forwarded-For", "Forwarded", "Proxy-Authorization", "X-TikTok-Credential"} {
		if v := seen.Header.Get(k); v != "" {
			t.Errorf("upstream got %s: %q", k, v)
		}
	}
	if seen.Header.Get("Business-SDK") != "1" || seen.RawQuery != "advertiser_id="+advMain {
		t.Errorf("ordinary header or query lost: %v %q", seen.Header, seen.RawQuery)
	}
	if want := strings.TrimPrefix(h.up.URL, "http://"); seen.Host != want {
		t.Errorf("Host = %q, want %q", seen.Host, want)
	}
	if w.Header().Get("X-Up-Hop") != "" || w.Header().Get("X-Tt-Logid") != "log1" {
		t.Errorf("response headers: %v", w.Header())
	}
}

func TestGzipPassthrough(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = io.WriteString(zw, `{"code":40001,"message":"no permission","data":{}}`)
	_ = zw.Close()
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "gzip" {
			t.Errorf("Accept-Encoding = %q", r.Header.Get("Accept-Encoding"))
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(gz.Bytes())
	}, nil)
	srv := httptest.NewServer(h.p)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+campaignGet, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(got, gz.Bytes()) || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("body changed: %q (Content-Encoding %q)", got, resp.Header.Get("Content-Encoding"))
	}
	if v := testutil.ToFloat64(h.m.UpstreamAPIErrors.WithLabelValues("main", "40001")); v != 1 {
		t.Errorf("upstream_api_errors_total{40001} = %v, want 1 (code peeked through gzip)", v)
	}
}

func TestStreaming(t *testing.T) {
	for _, ct := range []string{"text/csv", "application/json"} {
		t.Run(ct, func(t *testing.T) {
			release := make(chan struct{})
			h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ct)
				_, _ = io.WriteString(w, `{"code":0,"data":{"rows":[`)
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, `1]}}`)
			}, nil)
			resp, _ := h.serveGet(t, 10*time.Second)
			first := make([]byte, len(`{"code":0,"data":{"rows":[`))
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatalf("first chunk did not arrive before the upstream finished: %v", err)
			}
			close(release)
			rest, _ := io.ReadAll(resp.Body)
			if got := string(first) + string(rest); got != `{"code":0,"data":{"rows":[1]}}` {
				t.Errorf("body = %q", got)
			}
		})
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	arrived, cancelled := make(chan struct{}, 8), make(chan struct{}, 8)
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
		cancelled <- struct{}{}
	}, nil)
	srv := httptest.NewServer(h.p)
	defer srv.Close()
	// More hang-ups than the breaker's threshold: none may count as a failure.
	for i := range h.config.Breaker.ConsecutiveFailures + 1 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+campaignGet, nil)
		errc := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		waitFor(t, arrived, "request %d to reach upstream", i)
		cancel()
		waitFor(t, cancelled, "upstream to see request %d cancelled", i)
		<-errc
	}
	if got := h.p.core.breakers["main"].cb.State().String(); got != "closed" {
		t.Errorf("breaker %s after client hang-ups, want closed", got)
	}
}

func waitFor(t *testing.T, c <-chan struct{}, format string, args ...any) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for "+format, args...)
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("unreachable 502", func(t *testing.T) {
		h := newHarness(t, nil, nil)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		h.p.core.target.Host = addr
		w := h.do(httptest.NewRequest(http.MethodGet, campaignGet+"?secret=SENTINELSECRET", nil))
		e := checkProxyError(t, w, 90007, 502)
		checkCredential(t, w, "main")
		if strings.Contains(e.Message, "SENTINEL") || strings.Contains(h.logs.String(), "SENTINEL") {
			t.Errorf("query leaked: %q / logs", e.Message)
		}
	})
	t.Run("timeout 504", func(t *testing.T) {
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			func(c *config.Config, _ *Options) { c.Upstream.Timeout = 50 * time.Millisecond })
		w := h.do(httptest.NewRequest(http.MethodGet, campaignGet+"?advertiser_id="+advOther, nil))
		checkProxyError(t, w, 90007, 504)
		checkCredential(t, w, "other")
	})
}

func TestRetryAfterRejectedToken(t *testing.T) {
	tests := []struct {
		name       string
		code       int
		rotate     bool
		body       string
		ct         string
		cred       string // X-TikTok-Credential, when set
		path       string // default /open_api/v1.3/campaign/create/
		query      string
		wantCalls  int
		wantCode   string
		wantToken  string
		wantReject int
	}{
		{name: "40105 healed", code: 40105, rotate: true, body: `{"advertiser_id":"` + advMain + `"}`, ct: "application/json",
			wantCalls: 2, wantCode: `"code":0`, wantToken: "tok-new", wantReject: 1},
		{name: "40102 healed without body", code: 40102, rotate: true, wantCalls: 2, wantCode: `"code":0`, wantToken: "tok-new", wantReject: 1},
		{name: "not refreshable", code: 40105, rotate: false, wantCalls: 1, wantCode: `"code":40105`, wantToken: "tok-main", wantReject: 1},
		{name: "body not replayable", code: 40105, rotate: true, body: "--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\nxx\r\n--B--\r\n",
			ct: "multipart/form-data; boundary=B", cred: "main", wantCalls: 1, wantCode: `"code":40105`, wantToken: "tok-main", wantReject: 0},
		{name: "query secret", code: 40105, rotate: true, query: "?app_id=1&secret=x", wantCalls: 1, wantCode: `"code":40105`, wantToken: "tok-main"},
		{name: "query app_id upper case", code: 40102, rotate: true, query: "?APP_ID=1", wantCalls: 1, wantCode: `"code":40102`, wantToken: "tok-main"},
		{name: "JSON body secret", code: 40105, rotate: true, body: `{"advertiser_id":"` + advMain + `","secr\u0065t":"x"}`, ct: "application/json",
			wantCalls: 1, wantCode: `"code":40105`, wantToken: "tok-main"},
		{name: "JSON body app_id with header", code: 40105, rotate: true, body: `{"app_id":"1"}`, ct: "application/json", cred: "main",
			wantCalls: 1, wantCode: `"code":40105`, wantToken: "tok-main"},
		{name: "advertiser listing", code: 40105, rotate: true, path: "/open_api/v1.3/oauth2/advertiser/get/", wantCalls: 1, wantCode: `"code":40105`, wantToken: "tok-main"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Access-Token") == "tok-new" {
					writeEnvelope(w, 0)
					return
				}
				writeEnvelope(w, tc.code)
			}, nil)
			if tc.rotate {
				h.tok.rotate["main"] = "tok-new"
			}
			method, body := http.MethodGet, io.Reader(nil)
			if tc.body != "" {
				method, body = http.MethodPost, strings.NewReader(tc.body)
			}
			target := "/open_api/v1.3/campaign/create/"
			if tc.path != "" {
				target = tc.path
			}
			r := httptest.NewRequest(method, target+tc.query, body)
			if tc.ct != "" {
				r.Header.Set("Content-Type", tc.ct)
			}
			if tc.cred != "" {
				r.Header.Set("X-TikTok-Credential", tc.cred)
			}
			w := h.do(r)
			if w.Code != 200 || !strings.Contains(w.Body.String(), tc.wantCode) {
				t.Errorf("response %d %s, want %s", w.Code, w.Body, tc.wantCode)
			}
			seen := h.up.requests()
			if len(seen) != tc.wantCalls {
				t.Fatalf("upstream calls = %d, want %d", len(seen), tc.wantCalls)
			}
			last := seen[len(seen)-1]
			if last.Header.Get("Access-Token") != tc.wantToken || string(last.Body) != tc.body {
				t.Errorf("last call token %q body %q", last.Header.Get("Access-Token"), last.Body)
			}
			if got := h.tok.rejections(); len(got) != tc.wantReject || (tc.wantReject > 0 && got[0] != "main/tok-main/"+itoa(tc.code)) {
				t.Errorf("Rejected calls = %q", got)
			}
		})
	}
}

// TestBreaker: what counts as TikTok failing, over real connections. The
// breaker's timing (half-open, probes, recovery) is TestBreakerHalfOpen's,
// on a fake clock; here open_timeout is long enough never to end.
func TestBreaker(t *testing.T) {
	failures := []struct {
		name    string
		handler http.HandlerFunc
		// lastError is what the setup page is told opened the breaker.
		lastError string
	}{
		{"http 500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, "^HTTP 500 from TikTok$"},
		{"code 50000", func(w http.ResponseWriter, r *http.Request) { writeEnvelope(w, 50000) }, "^TikTok code 50000: m$"},
		{"code 51003", func(w http.ResponseWriter, r *http.Request) { writeEnvelope(w, 51003) }, "^TikTok code 51003: m$"},
		{"code 60001", func(w http.ResponseWriter, r *http.Request) { writeEnvelope(w, 60001) }, "^TikTok code 60001: m$"},
		{"connection dropped", func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		}, "^TikTok could not be reached: .*EOF"},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			h := newHarness(t, f.handler, func(c *config.Config, _ *Options) { c.Breaker.OpenTimeout = time.Hour })
			get := func() *httptest.ResponseRecorder {
				return h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil))
			}
			if b := h.p.Breaker("main"); b != (BreakerStatus{State: "closed"}) {
				t.Errorf("Breaker before any failure = %+v, want closed and nothing else", b)
			}
			var first time.Time
			for i := range h.config.Breaker.ConsecutiveFailures {
				if i == h.config.Breaker.ConsecutiveFailures-1 {
					first = time.Now()
				}
				if e := get().Header().Get(HeaderError); e != "" && e != "90007" {
					t.Fatalf("failure answered with proxy error %s", e)
				}
			}
			b := h.p.Breaker("main")
			if b.State != "open" || !regexp.MustCompile(f.lastError).MatchString(b.LastError) {
				t.Errorf("Breaker = %+v, want open with last error matching %s", b, f.lastError)
			}
			if b.Until.Before(first.Add(time.Hour)) || b.Until.After(time.Now().Add(time.Hour)) {
				t.Errorf("Breaker.Until = %v, want open_timeout (1h) after it opened, between %v and %v", b.Until, first.Add(time.Hour), time.Now().Add(time.Hour))
			}
			if strings.Contains(b.LastError, "SENTINEL") || strings.Contains(b.LastError, "tok-main") {
				t.Errorf("Breaker.LastError holds a secret: %q", b.LastError)
			}
			if g := testutil.ToFloat64(h.m.BreakerState.WithLabelValues("main")); g != 2 {
				t.Errorf("circuit_breaker_state = %v, want 2", g)
			}
			calls := len(h.up.requests())
			w := get()
			checkProxyError(t, w, 90006, 503)
			checkCredential(t, w, "main")
			if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 3600 {
				t.Errorf("Retry-After = %q, want the rest of the hour's open_timeout", w.Header().Get("Retry-After"))
			}
			if len(h.up.requests()) != calls {
				t.Errorf("upstream called while open")
			}
			other := h.do(httptest.NewRequest(http.MethodGet, campaignGet+"?advertiser_id="+advOther, nil))
			if other.Header().Get(HeaderError) == "90006" {
				t.Errorf("breaker of main stopped credential other: %d %s", other.Code, other.Body)
			}
			if len(h.logLines(t, "circuit breaker state changed")) != 1 {
				t.Errorf("breaker opening not logged once")
			}
		})
	}
}

// scrapeBreaker reads circuit_breaker_state{credential} the way Prometheus
// does, through the registry.
func (h *harness) scrapeBreaker(t *testing.T, cred string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tiktok_auth_proxy_circuit_breaker_state" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "credential" && l.GetValue() == cred {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no circuit_breaker_state for %s", cred)
	return 0
}

// TestBreakerHalfOpen runs on synctest's fake clock, which gobreaker's
// time.Now, the gauge's re-check timer and the request deadlines all
// follow, so open_timeout and upstream.timeout pass exactly when the test
// sleeps through them, however slow the machine. An idle open breaker
// reads half-open (1) once open_timeout has passed, with no request to move
// it; half-open lets one probe through and a failing probe reopens it; a
// probe whose status and envelope are fine closes it at once, though its
// report is still streaming, and that report stalling until
// upstream.timeout is still a failure.
func TestBreakerHalfOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu     sync.Mutex
			calls  int
			answer func(r *http.Request) *http.Response
		)
		h := newMemHarness(t, func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			calls++
			a := answer
			mu.Unlock()
			return a(r), nil
		}, nil)
		tiktok := func(a func(r *http.Request) *http.Response) {
			mu.Lock()
			defer mu.Unlock()
			answer = a
		}
		called := func() int {
			mu.Lock()
			defer mu.Unlock()
			return calls
		}
		status := func(code int) func(r *http.Request) *http.Response {
			return func(r *http.Request) *http.Response {
				return jsonResponse(r, code, strings.NewReader(`{"code":0,"message":"m","data":{}}`))
			}
		}
		get := func() *httptest.ResponseRecorder { return h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil)) }
		refused := func(when string) {
			t.Helper()
			n := called()
			w := get()
			if w.Code != http.StatusServiceUnavailable || w.Header().Get(HeaderError) != "90006" {
				t.Errorf("%s: %d %s, want 90006", when, w.Code, w.Body)
			}
			if called() != n {
				t.Errorf("%s: the request reached TikTok", when)
			}
		}
		gauge := func(when string, want float64) {
			t.Helper()
			synctest.Wait()
			if g := h.scrapeBreaker(t, "main"); g != want {
				t.Errorf("%s: circuit_breaker_state = %v, want %v", when, g, want)
			}
		}
		open := h.config.Breaker.OpenTimeout

		tiktok(status(http.StatusInternalServerError))
		for range h.config.Breaker.ConsecutiveFailures {
			get()
		}
		gauge("tripped", 2)
		breakerIs := func(when string, want BreakerStatus) {
			t.Helper()
			if got := h.p.Breaker("main"); got != want {
				t.Errorf("%s: Breaker = %+v, want %+v", when, got, want)
			}
		}
		breakerIs("tripped", BreakerStatus{State: "open", Until: time.Now().Add(open), LastError: "HTTP 500 from TikTok"})
		refused("open")
		if w := get(); w.Header().Get("Retry-After") != "30" {
			t.Errorf("Retry-After = %q, want 30 (open_timeout, none of it passed)", w.Header().Get("Retry-After"))
		}
		time.Sleep(open - time.Millisecond)
		gauge("just before open_timeout", 2)
		time.Sleep(2 * time.Millisecond)
		gauge("idle past open_timeout", 1)
		breakerIs("idle past open_timeout", BreakerStatus{State: "half-open", LastError: "HTTP 500 from TikTok"})

		// A failing probe.
		release := make(chan struct{})
		tiktok(func(r *http.Request) *http.Response {
			<-release
			return status(http.StatusInternalServerError)(r)
		})
		probe := make(chan *httptest.ResponseRecorder, 1)
		go func() { probe <- get() }()
		synctest.Wait()
		if called() == 0 {
			t.Fatal("the probe did not reach TikTok")
		}
		gauge("probe out", 1)
		refused("while the probe is out")
		close(release)
		if w := <-probe; w.Code != http.StatusInternalServerError {
			t.Errorf("probe answered %d, want TikTok's 500", w.Code)
		}
		gauge("after a failed probe", 2)
		breakerIs("after a failed probe", BreakerStatus{State: "open", Until: time.Now().Add(open), LastError: "HTTP 500 from TikTok"})
		refused("reopened")
		if w := get(); w.Header().Get("Retry-After") != "30" {
			t.Errorf("Retry-After = %q after reopening, want 30", w.Header().Get("Retry-After"))
		}

		// A healthy probe with a long report, which TikTok then stalls.
		time.Sleep(open + time.Millisecond)
		gauge("idle past open_timeout again", 1)
		const first = `{"code":0,"data":{"rows":[`
		tiktok(func(r *http.Request) *http.Response {
			return jsonResponse(r, http.StatusOK, io.MultiReader(strings.NewReader(first), stalled{r.Context()}))
		})
		go func() { probe <- get() }()
		gauge("probe's report streaming", 0)
		tiktok(status(http.StatusOK))
		if w := get(); w.Code != http.StatusOK || w.Header().Get(HeaderError) != "" {
			t.Errorf("request beside the probe's report: %d %s, want TikTok's answer", w.Code, w.Body)
		}
		time.Sleep(h.p.core.timeout)
		if w := <-probe; w.Body.String() != first {
			t.Errorf("probe's client got %q, want the report's start", w.Body)
		}
		var statuses []any
		for _, l := range h.logLines(t, "request") {
			statuses = append(statuses, l["status"])
		}
		if last := statuses[len(statuses)-1]; last != 504.0 {
			t.Errorf("logged statuses %v, want the stalled probe last, as 504", statuses)
		}
		if c := h.p.core.breakers["main"].cb.Counts(); c.TotalFailures != 1 || c.ConsecutiveFailures != 1 {
			t.Errorf("breaker counts %+v after the probe's report stalled, want its one failure", c)
		}
		gauge("after the stall", 0)
	})
}

// TestTimeoutIsBreakerFailure: timeouts count as TikTok's failures, not
// as clients hanging up, though a request's body is read under a read
// deadline that ends at upstream.timeout too; and each client's keep-alive
// connection survives its timeout and serves its next request. The three
// kinds of request run at once, each on its own connection, so the test
// waits for upstream.timeout once.
func TestTimeoutIsBreakerFailure(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
		func(c *config.Config, _ *Options) {
			c.Upstream.Timeout = slowTimeout
			c.Breaker.ConsecutiveFailures = 3
		})
	srv := httptest.NewUnstartedServer(h.p)
	var mu sync.Mutex
	conns := 0
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	reqs := []func() *http.Request{
		func() *http.Request { r, _ := http.NewRequest(http.MethodGet, srv.URL+campaignGet, nil); return r },
		func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, srv.URL+"/open_api/v1.3/campaign/create/", strings.NewReader(`{"advertiser_id":"`+advMain+`"}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		},
		func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, srv.URL+"/open_api/v1.3/file/video/ad/upload/", strings.NewReader(strings.Repeat("v", 5000)))
			r.Header.Set("Content-Type", "application/octet-stream")
			r.Header.Set("X-TikTok-Credential", "main")
			return r
		},
	}
	do := func(c *http.Client, r *http.Request) (int, string, string) {
		resp, err := c.Do(r)
		if err != nil {
			return 0, "", err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get(HeaderError), string(body)
	}
	clients := make([]*http.Client, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		tr := &http.Transport{MaxConnsPerHost: 1}
		defer tr.CloseIdleConnections()
		clients[i] = &http.Client{Transport: tr}
		wg.Go(func() {
			if status, code, body := do(clients[i], req()); status != http.StatusGatewayTimeout || code != "90007" {
				t.Errorf("timeout %d: %d %s %s, want 504 / 90007", i, status, code, body)
			}
		})
	}
	wg.Wait()
	calls := len(h.up.requests())
	for i, c := range clients {
		if status, code, body := do(c, reqs[0]()); status != http.StatusServiceUnavailable || code != "90006" {
			t.Errorf("client %d after %d timeouts: %d %s %s, want the breaker open (90006)", i, len(reqs), status, code, body)
		}
	}
	if n := len(h.up.requests()); n != calls {
		t.Errorf("TikTok called while the breaker is open")
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != len(clients) {
		t.Errorf("%d connections for %d clients: a timeout closed a keep-alive connection", conns, len(clients))
	}
}

func TestBreakerIgnoresClientErrors(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { writeEnvelope(w, 40002) }, nil)
	for i := range 3 * h.config.Breaker.ConsecutiveFailures {
		w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil))
		if w.Header().Get(HeaderError) != "" || !strings.Contains(w.Body.String(), `"code":40002`) {
			t.Fatalf("request %d: %d %s", i, w.Code, w.Body)
		}
	}
	if v := testutil.ToFloat64(h.m.UpstreamAPIErrors.WithLabelValues("main", "40002")); v != float64(3*h.config.Breaker.ConsecutiveFailures) {
		t.Errorf("upstream_api_errors_total{40002} = %v", v)
	}
}

// TestEnvelopeOnlyFromJSON: a page or file that merely starts like an
// envelope is not one, so it is neither counted nor a breaker failure.
func TestEnvelopeOnlyFromJSON(t *testing.T) {
	for _, ct := range []string{"text/html; charset=utf-8", "text/plain"} {
		t.Run(ct, func(t *testing.T) {
			h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ct)
				_, _ = io.WriteString(w, `{"code":50000,"message":"looks like TikTok"}`)
			}, nil)
			for i := range h.config.Breaker.ConsecutiveFailures + 1 {
				if w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil)); w.Code != http.StatusOK {
					t.Fatalf("request %d: %d %s", i, w.Code, w.Body)
				}
			}
			if n := testutil.CollectAndCount(h.m.UpstreamAPIErrors); n != 0 {
				t.Errorf("upstream_api_errors_total has %d series, want none", n)
			}
			if got := h.p.Breaker("main").State; got != "closed" {
				t.Errorf("breaker %s, want closed", got)
			}
			if strings.Contains(h.logs.String(), `"tiktok_code"`) {
				t.Errorf("a code was logged for a %s body", ct)
			}
		})
	}
}

// TestPartialSuccess: 20001 is an envelope code other than 0, so it is
// counted, but TikTok did its work and the breaker never hears a failure.
func TestPartialSuccess(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { writeEnvelope(w, 20001) }, nil)
	n := h.config.Breaker.ConsecutiveFailures + 1
	for range n {
		if w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil)); w.Code != http.StatusOK || w.Header().Get(HeaderError) != "" {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	if v := testutil.ToFloat64(h.m.UpstreamAPIErrors.WithLabelValues("main", "20001")); v != float64(n) {
		t.Errorf("upstream_api_errors_total{20001} = %v, want %d", v, n)
	}
	if got := h.p.Breaker("main").State; got != "closed" {
		t.Errorf("breaker %s after partial successes, want closed", got)
	}
}

func TestRateLimit(t *testing.T) {
	h := newHarness(t, nil, func(c *config.Config, o *Options) {
		c.Credentials[0].RateLimit = config.RateLimit{QPS: 0.5, Burst: 1}
		c.RateLimits.MaxWait = time.Second
	})
	if w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil)); w.Code != 200 {
		t.Fatalf("first request: %d", w.Code)
	}
	w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil))
	e := checkProxyError(t, w, 90012, 429)
	checkCredential(t, w, "main")
	// The turn comes 1/(0.5 × 95 %) = 2.1 s later: the proxy paces at 95 %
	// of a budget (quota's pacing).
	if w.Header().Get("Retry-After") != "3" {
		t.Errorf("Retry-After = %q, want 3", w.Header().Get("Retry-After"))
	}
	if !strings.Contains(e.Message, "app app-main at 0.5 requests/s") || !strings.Contains(e.Message, "rate_limits.max_wait") {
		t.Errorf("message %q does not name the budget and max_wait", e.Message)
	}
	if v := testutil.ToFloat64(h.m.RateLimited.WithLabelValues("main", "proxy")); v != 1 {
		t.Errorf("rate_limited_total{main,proxy} = %v, want 1", v)
	}
	if w := h.do(httptest.NewRequest(http.MethodGet, campaignGet+"?advertiser_id="+advOther, nil)); w.Code != 200 {
		t.Errorf("credential of another app: %d", w.Code)
	}
	if n := len(h.up.requests()); n != 2 {
		t.Errorf("upstream calls = %d, want 2", n)
	}
}

// TestRateLimitBurstFromConfig checks the proxy uses the burst config.Load
// fills in (qps rounded up), not a default of its own.
func TestRateLimitBurstFromConfig(t *testing.T) {
	up := newUpstream(t, nil)
	cfg, err := config.Parse([]byte(`upstream:
  base_url: `+up.URL+`
rate_limits: {max_wait: 1ms}
credentials:
  - name: main
    app_id: "1"
    app_secret: s
    rate_limit: {qps: 1.5}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{Config: cfg, Tokens: newFakeTokens()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, localRequest(http.MethodGet, campaignGet, nil))
		if w.Code != http.StatusOK {
			t.Fatalf("request %d within burst 2: %d %s", i, w.Code, w.Body)
		}
	}
	w := httptest.NewRecorder()
	p.ServeHTTP(w, localRequest(http.MethodGet, campaignGet, nil))
	checkProxyError(t, w, 90012, 429)
}

// TestRateLimitWaits: a request whose turn comes within max_wait waits for
// it and is forwarded. On synctest's fake clock the turn is exact: the
// second request at 10 requests/s (burst 1) waits 1/(10 × 95 %) s after
// the first, and both waits are recorded, the first as 0.
func TestRateLimitWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var sent []time.Time
		h := newMemHarness(t, func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			sent = append(sent, time.Now())
			mu.Unlock()
			return jsonResponse(r, 200, strings.NewReader(`{"code":0}`)), nil
		}, func(c *config.Config, o *Options) {
			c.Credentials[0].RateLimit = config.RateLimit{QPS: 10, Burst: 1}
		})
		for i := range 2 {
			if w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil)); w.Code != http.StatusOK || w.Header().Get(HeaderError) != "" {
				t.Fatalf("request %d: %d %s", i, w.Code, w.Body)
			}
		}
		qps := 10.0 // the limiter paces at 95 % of it
		turn := time.Duration(float64(time.Second) / (qps * 0.95))
		mu.Lock()
		defer mu.Unlock()
		if len(sent) != 2 {
			t.Fatalf("upstream calls = %d, want 2", len(sent))
		}
		if gap := sent[1].Sub(sent[0]); gap != turn {
			t.Errorf("the second request reached TikTok %v after the first, want its turn %v", gap, turn)
		}
		var m dto.Metric
		if err := h.m.RateLimitWait.WithLabelValues("main").(prometheus.Metric).Write(&m); err != nil {
			t.Fatal(err)
		}
		hist := m.GetHistogram()
		if n, sum := hist.GetSampleCount(), hist.GetSampleSum(); n != 2 || math.Abs(sum-turn.Seconds()) > 1e-6 {
			t.Errorf("rate_limit_wait_seconds recorded %d waits summing %gs, want 2 summing %gs", n, sum, turn.Seconds())
		}
	})
}

// TikTok's rate-limit answers are counted per code and logged with the
// advertisers; each pauses its scope until the next second, which the
// following request waits out (TestTikTokLimitRetried covers retries).
func TestTikTokRateLimitCodes(t *testing.T) {
	codes := []int{40100, 40016, 40133}
	i := 0
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		writeEnvelope(w, codes[i%len(codes)])
		i++
	}, func(c *config.Config, _ *Options) { c.Retry.Attempts = 1 })
	for range codes {
		h.do(httptest.NewRequest(http.MethodGet, campaignGet+"?advertiser_id="+advOther, nil))
	}
	for _, c := range codes {
		if v := testutil.ToFloat64(h.m.UpstreamAPIErrors.WithLabelValues("other", itoa(c))); v != 1 {
			t.Errorf("upstream_api_errors_total{other,%d} = %v, want 1", c, v)
		}
	}
	logs := h.logs.String()
	if strings.Count(logs, `"msg":"TikTok rate limit hit"`) != 3 || !strings.Contains(logs, `"advertiser_ids":["`+advOther+`"]`) {
		t.Errorf("rate-limit warnings missing advertiser: %s", logs)
	}
}

func TestMetricsAndLogs(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.tok.tokens["main"] = "tok-SENTINEL-ACCESS"
	r := httptest.NewRequest(http.MethodGet, campaignGet+"?advertiser_id="+advMain+"&secret=SENTINEL-QUERY", nil)
	r.Header.Set("Access-Token", "SENTINEL-CLIENT")
	first := h.do(r)
	requestLine := h.logLines(t, "request")
	h.do(httptest.NewRequest(http.MethodGet, "/nope", nil))
	h.do(httptest.NewRequest("BREW", campaignGet, nil))
	for _, c := range []struct {
		cred, method, status string
		want                 float64
	}{
		{"main", "GET", "200", 1},
		{"none", "GET", "404", 1},
		{"none", "OTHER", "405", 1},
	} {
		if v := testutil.ToFloat64(h.m.Requests.WithLabelValues(c.cred, c.method, c.status)); v != c.want {
			t.Errorf("requests_total{%s,%s,%s} = %v, want %v", c.cred, c.method, c.status, v, c.want)
		}
	}
	if n := testutil.CollectAndCount(h.m.RequestDuration); n != 2 {
		t.Errorf("request_duration_seconds series = %d, want 2 (main, none)", n)
	}
	logs := h.logs.String()
	if strings.Contains(logs, "SENTINEL") {
		t.Errorf("a secret reached the logs: %s", logs)
	}
	if len(requestLine) != 1 {
		t.Fatalf("request log lines after one request = %d", len(requestLine))
	}
	line := requestLine[0]
	want := map[string]any{"level": "INFO", "credential": "main", "method": "GET", "path": campaignGet,
		"status": 200.0, "tiktok_code": 0.0, "request_id": first.Header().Get(HeaderRequestID)}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("log %s = %#v, want %#v", k, line[k], v)
		}
	}
	if d, ok := line["duration"].(float64); !ok || d < 0 {
		t.Errorf("log duration = %#v, want a number", line["duration"])
	}
	if len(first.Header().Get(HeaderRequestID)) != 32 {
		t.Errorf("response request id %q", first.Header().Get(HeaderRequestID))
	}
	if !strings.Contains(logs, `"proxy_error":90009`) {
		t.Errorf("proxy error not logged: %s", logs)
	}
}

// TestAdvertiserListSigned: the proxy signs /oauth2/advertiser/get/ with the
// selected credential's app, replacing what the client sent, and the signed
// query reaches no log line, not even when TikTok cannot be reached.
func TestAdvertiserListSigned(t *testing.T) {
	const listing = "/open_api/v1.3/oauth2/advertiser/get/"
	h := newHarness(t, nil, nil)
	r := httptest.NewRequest(http.MethodGet, listing+"?app_id=evil&secret=evil&SECRET=x&page=2", nil)
	r.Header.Set("X-TikTok-Credential", "other")
	if w := h.do(r); w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	seen := h.up.requests()
	if len(seen) != 1 {
		t.Fatalf("upstream requests = %d", len(seen))
	}
	q, _ := url.ParseQuery(seen[0].RawQuery)
	want := url.Values{"app_id": {"app-other"}, "secret": {"SENTINEL-APP-SECRET-other"}, "SECRET": {"x"}, "page": {"2"}}
	if fmt.Sprint(q) != fmt.Sprint(want) {
		t.Errorf("upstream query = %v, want %v", q, want)
	}
	if got := seen[0].Header.Get("Access-Token"); got != "tok-other" {
		t.Errorf("Access-Token = %q", got)
	}

	down := newHarness(t, nil, nil)
	down.up.Close()
	if w := down.do(httptest.NewRequest(http.MethodGet, listing, nil)); w.Code != http.StatusBadGateway {
		t.Errorf("with TikTok down: status %d, want 502", w.Code)
	}
	for _, logs := range []string{h.logs.String(), down.logs.String()} {
		if strings.Contains(logs, "SENTINEL") || !strings.Contains(logs, `"path":"`+listing+`"`) {
			t.Errorf("logs show the secret or lack the path: %s", logs)
		}
	}
}

// hangingTokens is a token store whose refresh hangs: Token waits until the
// request's context ends, then answers as tokens.Manager does, a
// *tokens.RefreshError wrapping the context's end (plain: the context
// error alone, as any other wait would).
type hangingTokens struct {
	*fakeTokens
	plain bool
}

func (h hangingTokens) Token(ctx context.Context, cred string) (string, error) {
	<-ctx.Done()
	if h.plain {
		return "", ctx.Err()
	}
	return "", &tokens.RefreshError{Credential: cred, RetryAfter: time.Second, Err: ctx.Err()}
}

// TestRefreshHangsPastTimeout: a request whose token expired and whose
// wait for the refresh ends at upstream.timeout (TikTok's token endpoint
// hangs) is 90005 with Retry-After, as SPEC says of an expired token whose
// refresh failed, not 90007: TikTok never saw the request. A wait that
// ends without a refresh failure is still TikTok timing out (90007), and
// nothing reaches TikTok either way.
func TestRefreshHangsPastTimeout(t *testing.T) {
	for _, tc := range []struct {
		name               string
		plain              bool
		code, status       int
		retryAfter, reason string
	}{
		{name: "refresh", code: 90005, status: 503, retryAfter: "1", reason: "refreshing it failed"},
		{name: "other wait", plain: true, code: 90007, status: 504, reason: "did not answer within upstream.timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				calls := 0
				h := newMemHarness(t, func(r *http.Request) (*http.Response, error) {
					calls++
					return jsonResponse(r, 200, strings.NewReader(`{"code":0}`)), nil
				}, func(c *config.Config, o *Options) {
					c.Upstream.Timeout = 2 * time.Second
					o.Tokens = hangingTokens{fakeTokens: newFakeTokens(), plain: tc.plain}
				})
				w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil))
				e := checkProxyError(t, w, tc.code, tc.status)
				if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
				}
				if !strings.Contains(e.Message, tc.reason) {
					t.Errorf("message %q, want it to say %q", e.Message, tc.reason)
				}
				if calls != 0 {
					t.Errorf("TikTok got %d requests", calls)
				}
			})
		})
	}
}
