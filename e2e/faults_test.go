package e2e

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// faultTTL is the access token life in the token endpoint fault tests:
// short, so a token outlives the endpoint's failure within seconds.
const faultTTL = 6 * time.Second

// TestTokenEndpointFaults breaks TikTok's token endpoint in each way it can
// fail (down, resetting, hanging past upstream.timeout, answering garbage or
// a truncated envelope) while a short-lived token is in use: the proxy
// serves while the token is valid, then answers 90005 with Retry-After
// (never "re-authorization required": the grant is intact), for longer than
// a token's whole life when the endpoint stays down, and recovers by itself
// once the endpoint answers again.
func TestTokenEndpointFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault map[string]any
		// down is how long the fault stays from its start: past the
		// token's expiry, or two whole token lives.
		down time.Duration
	}{
		{"down (HTTP 503) longer than a token's life", map[string]any{"http_status": 503}, 2 * faultTTL},
		{"connection reset", map[string]any{"reset": true}, faultTTL},
		// A request whose upstream.timeout passes while it waits on the
		// hanging refresh is 90005 too: its token expired and the refresh
		// failed it; TikTok never saw the request itself.
		{"hangs past upstream.timeout", map[string]any{"latency": "30s"}, 2 * faultTTL},
		{"garbage answer", map[string]any{"body": "<html><body>Please log in</body></html>"}, faultTTL},
		{"truncated answer", map[string]any{"body": `{"code":0,"message":"OK","data":{"access_token":"act.`}, faultTTL},
		{"system error code", map[string]any{"code": 50000}, faultTTL},
		// The redirect's target is set per run: a listener that must never
		// receive the secret and refresh token a followed 307 would re-post.
		{"redirect to another host", map[string]any{"redirect": ""}, faultTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSim(t)
			s.post(t, "/sim/config", map[string]string{"access_ttl": faultTTL.String()})
			px := startProxy(t, s, proxyConfig{Credentials: twoCredentials, Timeout: "2s", Extra: "tokens:\n  refresh_before: 1s\n"})
			px.authorize(t, s, "main", appMain, advMain1)
			fault := map[string]any{"scope": "token"}
			for k, v := range tt.fault {
				fault[k] = v
			}
			var stolen atomic.Int64
			if _, ok := fault["redirect"]; ok {
				catcher := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					stolen.Add(1)
				}))
				defer catcher.Close()
				fault["redirect"] = catcher.URL + "/collect"
			}
			s.post(t, "/sim/fault", fault)
			began := time.Now()
			api := px.URL + campaignGet + "?advertiser_id=" + advMain1

			// While the token is valid, scripts are served.
			status, h, b := httpDo(t, "GET", api, nil, nil)
			if status != 200 || decodeEnvelope(t, b).Code != 0 {
				t.Fatalf("with a valid token and the token endpoint failing: HTTP %d %s %.200s", status, h.Get("X-TikTok-Auth-Proxy-Error"), b)
			}
			served := 0
			eventually(t, faultTTL+15*time.Second, "the expired token to give 90005", func() bool {
				status, h, b = httpDo(t, "GET", api, nil, nil)
				if status == 200 && decodeEnvelope(t, b).Code == 0 {
					served++
					return false
				}
				return true
			})
			refused := func() {
				t.Helper()
				wantProxyError(t, status, h, b, 503, 90005, true)
			}
			refused()
			t.Logf("served %d more requests with the valid token, then refused after %v", served, time.Since(began).Round(100*time.Millisecond))

			// Down for as long as the case says: refused each time, never
			// a lost grant.
			answers := 0
			for time.Since(began) < tt.down {
				status, h, b = httpDo(t, "GET", api, nil, nil)
				refused()
				answers++
				if t.Failed() {
					return
				}
				time.Sleep(200 * time.Millisecond) // pacing a bounded loop, not waiting for a state
			}
			if authorized, reauth := credentialHealth(t, px, "main"); !authorized || reauth {
				t.Fatalf("while the token endpoint fails: authorized %v, re-authorization required %v", authorized, reauth)
			}

			httpDo(t, "DELETE", s.URL+"/sim/fault", nil, nil)
			back := time.Now()
			eventually(t, 25*time.Second, "service to return by itself", func() bool {
				status, _, b = httpDo(t, "GET", api, nil, nil)
				return status == 200 && decodeEnvelope(t, b).Code == 0
			})
			t.Logf("%d refusals over %v; service returned %v after the endpoint did",
				answers, tt.down, time.Since(back).Round(100*time.Millisecond))
			if authorized, reauth := credentialHealth(t, px, "main"); !authorized || reauth {
				t.Errorf("after recovery: authorized %v, re-authorization required %v", authorized, reauth)
			}
			if n := stolen.Load(); n != 0 {
				t.Errorf("the redirect's target received %d request(s): the refresh followed it", n)
			}
		})
	}
}

// TestOddTokenAnswersKeepTheGrant: TikTok's token answers change shape
// (expires_in 2.0, open_id a number, advertiser_ids a string, scope an
// object) while 2 s tokens rotate: every answer's tokens are kept, so the
// proxy goes on refreshing and serving without re-authorization, and says
// in its log which fields it left out (issue 9 finding 5).
func TestOddTokenAnswersKeepTheGrant(t *testing.T) {
	s := startSim(t)
	s.post(t, "/sim/config", map[string]any{"access_ttl": "2s"})
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials, Extra: "tokens:\n  refresh_before: 1s\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	s.post(t, "/sim/config", map[string]any{"odd_token_fields": true})
	before := len(s.issued(t).RefreshTokens)
	api := px.URL + campaignGet + "?advertiser_id=" + advMain1
	eventually(t, 30*time.Second, "three refreshes with odd answers", func() bool {
		status, _, b := httpDo(t, "GET", api, nil, nil)
		if status != 200 || decodeEnvelope(t, b).Code != 0 {
			t.Fatalf("while token answers are odd: HTTP %d %.200s", status, b)
		}
		return len(s.issued(t).RefreshTokens) >= before+3
	})
	if _, reauth := credentialHealth(t, px, "main"); reauth {
		t.Fatal("re-authorization required after odd token answers")
	}
	if stored, issued := storedRefreshToken(t, px), s.issued(t).RefreshTokens; !slices.Contains(issued[len(issued)-2:], stored) {
		t.Error("the stored refresh token is not one of TikTok's latest: an odd answer's token was dropped")
	}
	if !strings.Contains(px.p.out.String(), "advertiser_ids") {
		t.Error("the log does not name the advertiser_ids field left out of the odd answers")
	}
}

// TestSIGTERMWithSlowRequestsInFlight: SIGTERM while 100 slow requests are
// at TikTok: every one of them completes with TikTok's answer and serve
// exits 0.
func TestSIGTERMWithSlowRequestsInFlight(t *testing.T) {
	const n = 100
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials})
	px.authorize(t, s, "main", appMain, advMain1)
	s.post(t, "/sim/fault", map[string]any{"latency": "3s", "path_prefix": campaignGet})

	results := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i] = getAnswer(px.URL + campaignGet + "?advertiser_id=" + advMain1)
		})
	}
	eventually(t, 20*time.Second, "100 requests to be in flight at TikTok", func() bool {
		inflight := 0
		for _, r := range s.inflight(t) {
			if r.Path == campaignGet {
				inflight++
			}
		}
		return inflight == n
	})
	if err := px.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	completed := 0
	for i, r := range results {
		if r.err != nil || r.status != 200 || r.code != 0 {
			t.Errorf("request %d: HTTP %d code %d err %v; want TikTok's answer", i, r.status, r.code, r.err)
			continue
		}
		completed++
	}
	px.p.wantExit0(t, 30*time.Second, "SIGTERM")
	t.Logf("SIGTERM with %d slow requests in flight: %d completed", n, completed)
}
