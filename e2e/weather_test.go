package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// metricValue reads one sample from the admin listener's /metrics.
func metricValue(t *testing.T, px *proxy, series string) (float64, bool) {
	t.Helper()
	_, _, b := httpDo(t, "GET", px.AdminURL+"/metrics", nil, nil)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindSubmatch(b)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

// A burst of 40105 answers (TikTok invalidated the access token) is healed
// by exactly one refresh, and every request of the burst is retried once
// and succeeds.
func TestTokenRejectionBurstHealedByOneRefresh(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials})
	px.authorize(t, s, "main", appMain, advMain1)
	api := px.URL + "/open_api/v1.3/campaign/get/?advertiser_id=" + advMain1
	if status, _, b := httpDo(t, "GET", api, nil, nil); status != 200 {
		t.Fatalf("HTTP %d %s", status, b)
	}
	// TikTok invalidates the access token the proxy holds (the grant and the
	// tokens a refresh issues stay good).
	var held string
	for _, g := range s.grants(t) {
		if g.AppID == appMain {
			held = g.AccessToken
		}
	}
	before := s.stats(t, appMain).RefreshCalls
	const burst = 8
	s.post(t, "/sim/fault", map[string]any{"code": 40105, "access_token": held, "path_prefix": campaignGet})

	var wg sync.WaitGroup
	errs := make(chan string, burst)
	for i := 0; i < burst; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", api, nil)
			resp, err := plainClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer resp.Body.Close()
			var env envelope
			if err := jsonDecode(resp.Body, &env); err != nil || resp.StatusCode != 200 || env.Code != 0 {
				errs <- fmt.Sprintf("HTTP %d code %d %v", resp.StatusCode, env.Code, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("a request of the 40105 burst failed: %s", e)
	}
	if got := s.stats(t, appMain).RefreshCalls - before; got != 1 {
		t.Errorf("the burst caused %d refreshes, want exactly 1", got)
	}
	rejected := 0
	for _, r := range s.requests(t) {
		if r.Code == 40105 {
			rejected++
		}
	}
	if rejected == 0 {
		t.Error("no request met TikTok's 40105: the test tested nothing")
	}
	t.Logf("%d of %d concurrent requests met 40105; all were retried after one refresh", rejected, burst)
	if v, _ := metricValue(t, px, `tiktok_auth_proxy_credential_reauthorization_required{credential="main"}`); v != 0 {
		t.Errorf("a healed burst marked the credential for re-authorization")
	}
}

// A rate-limit storm from TikTok (HTTP 200, code 40100): the first answers
// pass through unchanged, then the app is paused as TikTok prescribes (the
// next second, 5 minutes once limits repeat within a minute) and requests
// get 90012 instead of burning more calls; every answer is counted per
// code and logged with the advertiser, the pause is on /metrics and the
// setup page, the breaker never trips; every SPEC metric is on /metrics.
func TestRateLimitStormCountedAndMetricsExported(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials, Extra: "breaker:\n  consecutive_failures: 2\nretry:\n  attempts: 1\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	px.authorize(t, s, "other", appOther, advOther)
	const storm = 12
	s.post(t, "/sim/fault", map[string]any{"code": 40100, "count": storm, "message": "Too many requests", "path_prefix": campaignGet})
	passed, refused := 0, 0
	for i := 0; i < storm; i++ {
		status, h, b := httpDo(t, "GET", px.URL+"/open_api/v1.3/campaign/get/?advertiser_id="+advOther, nil, nil)
		switch {
		case status == 200 && h.Get("X-TikTok-Auth-Proxy-Error") == "" && decodeEnvelope(t, b).Code == 40100:
			passed++
		case status == 429 && h.Get("X-TikTok-Auth-Proxy-Error") == "90012" && h.Get("Retry-After") != "":
			refused++
		default:
			t.Fatalf("request %d: want TikTok's 40100 passed through or 90012, got HTTP %d %s", i, status, b)
		}
	}
	// The first limit pauses until the next second, which the second
	// request waits out; its 40100 repeats within a minute: 5 minutes.
	if passed != 2 || refused != storm-2 {
		t.Errorf("%d answers passed through and %d refused, want 2 and %d", passed, refused, storm-2)
	}
	if v, _ := metricValue(t, px, `tiktok_auth_proxy_upstream_api_errors_total{code="40100",credential="other"}`); v != float64(passed) {
		t.Errorf("upstream_api_errors_total{code=40100,credential=other} = %v, want %d", v, passed)
	}
	if v, _ := metricValue(t, px, `tiktok_auth_proxy_requests_total{credential="other",method="GET",status="200"}`); v != float64(passed) {
		t.Errorf("requests_total{other,GET,200} = %v, want %d", v, passed)
	}
	if v, _ := metricValue(t, px, `tiktok_auth_proxy_rate_limited_total{credential="other",source="proxy"}`); v != float64(refused) {
		t.Errorf("rate_limited_total{other,proxy} = %v, want %d", v, refused)
	}
	if v, ok := metricValue(t, px, `tiktok_auth_proxy_app_pause_until_timestamp_seconds{app_id="`+appOther+`"}`); !ok || v < float64(time.Now().Add(4*time.Minute).Unix()) {
		t.Errorf("app_pause_until_timestamp_seconds{%s} = %v (present %v), want about 5 minutes ahead", appOther, v, ok)
	}
	if v, _ := metricValue(t, px, `tiktok_auth_proxy_circuit_breaker_state{credential="other"}`); v != 0 {
		t.Errorf("circuit_breaker_state{other} = %v: rate limits tripped the breaker", v)
	}
	// The main app's budget is its own (the faults left unspent cleared).
	httpDo(t, "DELETE", s.URL+"/sim/fault", nil, nil)
	status, _, b := httpDo(t, "GET", px.URL+"/open_api/v1.3/campaign/get/?advertiser_id="+advMain1, nil, nil)
	if status != 200 || decodeEnvelope(t, b).Code != 0 {
		t.Fatalf("the main app during the other's pause: HTTP %d %s", status, b)
	}
	_, _, page := httpDo(t, "GET", px.AdminURL+"/authorize", nil, nil)
	if !strings.Contains(string(page), "app "+appOther+" paused until") {
		t.Errorf("the setup page does not show the pause")
	}
	logs := px.p.out.String()
	if n := strings.Count(logs, "40100"); n < passed || !strings.Contains(logs, advOther) {
		t.Errorf("rate-limit answers not logged with the advertiser (%d mentions of 40100)", n)
	}

	_, _, m := httpDo(t, "GET", px.AdminURL+"/metrics", nil, nil)
	// token_refreshes_total and token_refresh_duration_seconds appear once a
	// refresh happened: TestBackgroundRefreshAcrossExpiries checks them.
	for _, name := range []string{"requests_total", "request_duration_seconds_bucket", "upstream_api_errors_total",
		"access_token_expiry_timestamp_seconds", "refresh_token_expiry_timestamp_seconds", "credential_authorized",
		"credential_reauthorization_required", "circuit_breaker_state", "build_info", "rate_limit_wait_seconds_bucket",
		"rate_limited_total", "app_pause_until_timestamp_seconds"} {
		if !strings.Contains(string(m), "tiktok_auth_proxy_"+name) {
			t.Errorf("/metrics lacks tiktok_auth_proxy_%s", name)
		}
	}
	for _, want := range []string{"go_goroutines", "process_resident_memory_bytes", `tiktok_auth_proxy_credential_authorized{credential="main"} 1`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
