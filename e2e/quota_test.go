package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/redistest"
)

// A third app, for tests that need a budget no other test step paused.
const (
	appThird    = "7000000000000000003"
	advThird    = "7300000000000000001"
	secretThird = "e2e-app-secret-third-4e7a"
)

var threeCredentials = twoCredentials + fmt.Sprintf(`  - name: third
    app_id: "%s"
    app_secret: %s
`, appThird, secretThird)

// simSeconds is the simulator's per-second counter of an app's API calls.
func (s *sim) seconds(t *testing.T, appID string) map[int64]int {
	t.Helper()
	status, _, b := httpDo(t, "GET", s.URL+"/sim/persecond?app_id="+appID, nil, nil)
	var out struct {
		Seconds []struct {
			Unix  int64 `json:"unix"`
			Calls int   `json:"calls"`
		} `json:"seconds"`
	}
	if err := json.Unmarshal(b, &out); status != 200 || err != nil {
		t.Fatalf("sim persecond: HTTP %d %v: %.200s", status, err, b)
	}
	m := map[int64]int{}
	for _, s := range out.Seconds {
		m[s.Unix] = s.Calls
	}
	return m
}

// percentile is the p-th percentile (0-100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p/100))]
}

// startBasicQuota waits for the proxy's own advertiser listing of main's
// new grant (the token manager's calls are outside the budget), then makes
// the simulator answer 40100 beyond 10 calls of the app in a second, like
// TikTok on the Basic tier, and starts its per-second count afresh.
func startBasicQuota(t *testing.T, s *sim) {
	t.Helper()
	eventually(t, 10*time.Second, "the grant's advertiser listing", func() bool {
		for _, r := range s.requests(t) {
			if r.Path == "/open_api/v1.3/oauth2/advertiser/get/" && r.AppID == appMain {
				return true
			}
		}
		return false
	})
	s.post(t, "/sim/quota", map[string]any{"scope": "app", "app_id": appMain, "limit": 10, "window": "second"})
	httpDo(t, "DELETE", s.URL+"/sim/persecond", nil, nil)
}

// scriptCall is one call of a script in a closed loop.
type scriptCall struct {
	took         time.Duration
	status, code int
	proxyErr     string
}

// runScripts runs one script per proxy URL, each calling campaign/get/ of
// main's advertiser as fast as it is answered, for run (at most 2000 calls
// each). It fails the test for every call not answered with TikTok's 0;
// how many calls the budget let through is a figure to print, not a pass
// or fail (the machine is shared).
func runScripts(t *testing.T, run time.Duration, proxyURLs ...string) (calls []scriptCall, took []time.Duration, elapsed time.Duration) {
	t.Helper()
	const maxCalls = 2000
	var mu sync.Mutex
	var wg sync.WaitGroup
	began := time.Now()
	for _, u := range proxyURLs {
		wg.Go(func() {
			for n := 0; n < maxCalls && time.Since(began) < run; n++ {
				start := time.Now()
				status, h, b := httpDo(t, "GET", u+campaignGet+"?advertiser_id="+advMain1, nil, nil)
				c := scriptCall{took: time.Since(start), status: status, proxyErr: h.Get("X-TikTok-Auth-Proxy-Error")}
				if status == 200 && c.proxyErr == "" {
					c.code = decodeEnvelope(t, b).Code
				}
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed = time.Since(began)
	for i, c := range calls {
		if c.status != 200 || c.proxyErr != "" || c.code != 0 {
			t.Errorf("call %d: HTTP %d, proxy error %q, TikTok code %d; want every call answered 0", i, c.status, c.proxyErr, c.code)
		}
		took = append(took, c.took)
	}
	slices.Sort(took)
	return calls, took, elapsed
}

// checkSeconds fails the test for every second in which the simulator saw
// more than 10 calls of main's app, and returns the busiest second and the
// mean over the seconds with calls.
func checkSeconds(t *testing.T, s *sim) (busiest int, mean float64) {
	t.Helper()
	seconds := s.seconds(t, appMain)
	total := 0
	for sec, n := range seconds {
		total += n
		busiest = max(busiest, n)
		if n > 10 {
			t.Errorf("the simulator saw %d calls of the Basic-tier app in second %s", n, time.Unix(sec, 0).UTC().Format(time.TimeOnly))
		}
	}
	return busiest, float64(total) / float64(max(len(seconds), 1))
}

// Issue 12's acceptance: an app on the Basic tier (10 QPS), three scripts
// calling through one proxy as fast as they are answered for 20 s. No 40100
// reaches a script, every call completes, and TikTok (the simulator, which
// answers 40100 beyond 10 calls in a second, like TikTok) never sees more
// than 10 calls in a second.
func TestQuotaBasicTierThreeScripts(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials, Extra: "rate_limits:\n  tier: basic\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	startBasicQuota(t, s)

	calls, took, elapsed := runScripts(t, 20*time.Second, px.URL, px.URL, px.URL)
	busiest, mean := checkSeconds(t, s)
	retries, _ := metricValue(t, px, `tiktok_auth_proxy_upstream_retries_total{code="40100",credential="main"}`)
	limited, _ := metricValue(t, px, `tiktok_auth_proxy_rate_limited_total{credential="main",source="tiktok"}`)
	if limited != 0 {
		t.Errorf("TikTok answered %v rate limits", limited)
	}
	waitSum, _ := metricValue(t, px, `tiktok_auth_proxy_rate_limit_wait_seconds_sum{credential="main"}`)
	waitCount, _ := metricValue(t, px, `tiktok_auth_proxy_rate_limit_wait_seconds_count{credential="main"}`)
	summarize("quota: 3 scripts on a Basic-tier app for %v: %d calls answered (%.1f/s; unpaced, the fastest call took %v, so the scripts would ask ~%d/s), simulator busiest second %d, mean %.1f/s; call latency p50 %v p99 %v; proxy wait mean %.0f ms; retries %v; TikTok limits %v",
		elapsed.Round(time.Second), len(calls), float64(len(calls))/elapsed.Seconds(), took[0].Round(100*time.Microsecond), 3*unpacedRate(took), busiest,
		mean, percentile(took, 50).Round(time.Millisecond), percentile(took, 99).Round(time.Millisecond), 1000*waitSum/max(waitCount, 1), retries, limited)
}

// unpacedRate is how many calls a second one script would make if it never
// waited for a turn: the inverse of the fastest call, a lower bound.
func unpacedRate(sorted []time.Duration) int {
	if len(sorted) == 0 || sorted[0] <= 0 {
		return 0
	}
	return int(time.Second / sorted[0])
}

// A read TikTok answered 40100 is retried in the next second and the
// script sees only the final 0; a write answered 40100 is passed on
// unchanged after one call, unless the script sent X-TikTok-Retry: writes.
func TestQuotaRetriesReadsNotWrites(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: threeCredentials})
	px.authorize(t, s, "main", appMain, advMain1)
	px.authorize(t, s, "other", appOther, advOther)
	px.authorize(t, s, "third", appThird, advThird)
	limit := map[string]any{"code": 40100, "count": 1, "message": "Too many requests. Please retry in some time."}
	count := func(path string) int {
		n := 0
		for _, r := range s.requests(t) {
			if r.Path == path {
				n++
			}
		}
		return n
	}

	// A read: retried once, counted.
	fault := map[string]any{"path_prefix": campaignGet}
	for k, v := range limit {
		fault[k] = v
	}
	s.post(t, "/sim/fault", fault)
	status, h, b := httpDo(t, "GET", px.URL+campaignGet+"?advertiser_id="+advMain1, nil, nil)
	if status != 200 || h.Get("X-TikTok-Auth-Proxy-Error") != "" || decodeEnvelope(t, b).Code != 0 {
		t.Fatalf("GET answered 40100 then 0: HTTP %d %s, want 0", status, b)
	}
	if n := count(campaignGet); n != 2 {
		t.Errorf("the GET reached TikTok %d times, want 2", n)
	}
	if v, _ := metricValue(t, px, `tiktok_auth_proxy_upstream_retries_total{code="40100",credential="main"}`); v != 1 {
		t.Errorf("upstream_retries_total{40100,main} = %v, want 1", v)
	}

	// A write, on another app (the read's 40100 paused main's): never retried.
	create := "/open_api/v1.3/campaign/create/"
	post := func(advertiser string, header http.Header) (int, http.Header, []byte) {
		if header == nil {
			header = http.Header{}
		}
		header.Set("Content-Type", "application/json")
		return httpDo(t, "POST", px.URL+create, header, strings.NewReader(`{"advertiser_id":"`+advertiser+`","campaign_name":"spring"}`))
	}
	fault = map[string]any{"path_prefix": create}
	for k, v := range limit {
		fault[k] = v
	}
	s.post(t, "/sim/fault", fault)
	status, h, b = post(advOther, nil)
	if env := decodeEnvelope(t, b); status != 200 || h.Get("X-TikTok-Auth-Proxy-Error") != "" || env.Code != 40100 || env.Message != limit["message"] {
		t.Fatalf("POST answered 40100: HTTP %d %s, want TikTok's 40100 unchanged", status, b)
	}
	if n := count(create); n != 1 {
		t.Errorf("the POST reached TikTok %d times, want exactly once", n)
	}

	// A write the script allows to be retried, on a third app.
	s.post(t, "/sim/fault", fault)
	status, _, b = post(advThird, http.Header{"X-Tiktok-Retry": {"writes"}})
	if status != 200 || decodeEnvelope(t, b).Code != 0 {
		t.Fatalf("POST with X-TikTok-Retry: writes: HTTP %d %s, want 0 after a retry", status, b)
	}
	var creates []simRequest
	for _, r := range s.requests(t) {
		if r.Path == create {
			creates = append(creates, r)
		}
	}
	if len(creates) != 3 {
		t.Errorf("campaign/create reached TikTok %d times in all, want 3 (1 + 2)", len(creates))
	}
	if v, _ := metricValue(t, px, `tiktok_auth_proxy_upstream_retries_total{code="40100",credential="third"}`); v != 1 {
		t.Errorf("upstream_retries_total{40100,third} = %v, want 1", v)
	}
}

// Three replicas on one real Redis, the Basic tier: one script per replica
// for 10 s, each calling as fast as it is answered. The replicas spend from
// one budget in Redis, so the simulator never counts more than 10 calls of
// the app in a second, and every call is answered 0.
func TestQuotaSharedByReplicas(t *testing.T) {
	rd := redistest.Start(t, redistest.Options{})
	s := startSim(t)
	var replicas []*proxy
	var urls []string
	for range 3 {
		px := startProxy(t, s, proxyConfig{Credentials: twoCredentials, Store: redisStoreConfig(rd.Addr),
			Extra: "rate_limits:\n  tier: basic\n"})
		replicas = append(replicas, px)
		urls = append(urls, px.URL)
	}
	replicas[0].authorize(t, s, "main", appMain, advMain1)
	for i, px := range replicas {
		eventually(t, 20*time.Second, fmt.Sprintf("replica %d to serve the shared grant", i), func() bool {
			return getOnce(px.URL+campaignGet+"?advertiser_id="+advMain1) == nil
		})
	}
	startBasicQuota(t, s)

	calls, took, elapsed := runScripts(t, 10*time.Second, urls...)
	busiest, mean := checkSeconds(t, s)
	var limited float64
	for _, px := range replicas {
		v, _ := metricValue(t, px, `tiktok_auth_proxy_rate_limited_total{credential="main",source="tiktok"}`)
		limited += v
	}
	if limited != 0 {
		t.Errorf("TikTok answered %v rate limits", limited)
	}
	summarize("quota: 3 replicas on one Redis, one script each, Basic tier, %v: %d calls answered (%.1f/s), simulator busiest second %d, mean %.1f/s; call latency p50 %v p99 %v; TikTok limits %v",
		elapsed.Round(time.Second), len(calls), float64(len(calls))/elapsed.Seconds(), busiest, mean,
		percentile(took, 50).Round(time.Millisecond), percentile(took, 99).Round(time.Millisecond), limited)
}
