package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// A burst of 2,000 requests arrives just as the only token has expired and
// its refresh is under way at a slow TikTok, at a proxy whose `ulimit -n`
// (1024) is smaller than the burst: every request waits for that one
// refresh and for a file descriptor, and succeeds; none is failed, none
// carries the old token, the breaker stays closed.
func TestBurstAtTokenExpiry(t *testing.T) {
	t.Parallel()
	const burst, fdLimit = 2000, 1024
	// The token is refreshed 1ms before it expires (refresh_before), which
	// is past the point where the proxy stops serving it (a quarter of its
	// life before expiry): once TikTok holds that refresh, the token is
	// expired as far as the proxy is concerned. The new token lives 12s,
	// longer than the burst, so its refresh is the only one.
	s := startSim(t)
	s.post(t, "/sim/config", map[string]string{"access_ttl": "12s"})
	s.post(t, "/sim/fault", map[string]any{"scope": "token", "path_prefix": refreshPath, "latency": "2s", "count": 1})
	px := writeProxyConfig(t, s, proxyConfig{Credentials: twoCredentials, Extra: "tokens:\n  refresh_before: 1ms\n"})
	px.fdLimit = fdLimit
	px.run(t)
	px.authorize(t, s, "main", appMain, advMain1)
	old := s.issued(t).AccessTokens

	eventually(t, 30*time.Second, "the background refresh to be held at TikTok", func() bool {
		var in struct{ Requests []simRequest }
		status, _, b := httpDo(t, "GET", s.URL+"/sim/inflight", nil, nil)
		if status != 200 || json.Unmarshal(b, &in) != nil {
			return false
		}
		for _, r := range in.Requests {
			if r.Path == refreshPath {
				return true
			}
		}
		return false
	})

	// Each request on its own connection, as a burst from many scripts,
	// closed after its answer.
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	api := px.URL + campaignGet + "?advertiser_id=" + advMain1
	type answer struct {
		status   int
		proxyErr string
		code     int
		err      error
	}
	answers := make([]answer, burst)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range answers {
		wg.Go(func() {
			<-start
			resp, err := client.Get(api)
			if err != nil {
				answers[i].err = err
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers[i] = answer{status: resp.StatusCode, proxyErr: resp.Header.Get("X-TikTok-Auth-Proxy-Error"), err: err}
			if err == nil && resp.StatusCode == 200 {
				answers[i].code = decodeEnvelope(t, b).Code
			}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(began)

	failed := 0
	for i, a := range answers {
		if a.err != nil || a.status != 200 || a.code != 0 {
			if failed++; failed <= 5 {
				t.Errorf("request %d: HTTP %d, proxy error %q, code %d, %v", i, a.status, a.proxyErr, a.code, a.err)
			}
		}
	}
	st := s.stats(t, appMain)
	t.Logf("%d requests at token expiry in %v: %d failed; %d refresh call(s)", burst, took.Round(time.Millisecond), failed, st.RefreshCalls)
	if failed > 0 {
		t.Errorf("%d of %d requests failed", failed, burst)
	}
	if st.RefreshCalls != 1 || st.RefreshFailures != 0 {
		t.Errorf("TikTok saw %d refresh calls (%d failed), want exactly one for the whole burst", st.RefreshCalls, st.RefreshFailures)
	}
	if v, ok := metricValue(t, px, `tiktok_auth_proxy_circuit_breaker_state{credential="main"}`); !ok || v != 0 {
		t.Errorf("circuit_breaker_state = %v (present %v) after the burst, want 0 (closed)", v, ok)
	}
	for _, r := range s.recordedTo(t, campaignGet) {
		for _, tok := range old {
			if r.AccessToken == tok {
				t.Fatalf("a request reached TikTok with the expired token (answered %d)", r.Code)
			}
		}
	}
}
