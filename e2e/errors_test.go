package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wantProxyError checks one proxy error: HTTP status, the
// X-TikTok-Auth-Proxy-Error header, TikTok's envelope with the code and a
// request id, and Retry-After when due.
func wantProxyError(t *testing.T, status int, h http.Header, body []byte, wantStatus, wantCode int, wantRetryAfter bool) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("HTTP %d, want %d: %s", status, wantStatus, body)
	}
	if got := h.Get("X-TikTok-Auth-Proxy-Error"); got != strconv.Itoa(wantCode) {
		t.Errorf("X-TikTok-Auth-Proxy-Error = %q, want %d", got, wantCode)
	}
	env := decodeEnvelope(t, body)
	if env.Code != wantCode || env.Message == "" || env.RequestID == "" {
		t.Errorf("envelope = %+v, want code %d with a message and request id", env, wantCode)
	}
	ra := h.Get("Retry-After")
	if wantRetryAfter {
		if n, err := strconv.Atoi(ra); err != nil || n < 1 {
			t.Errorf("Retry-After = %q, want whole seconds >= 1", ra)
		}
	} else if ra != "" {
		t.Errorf("Retry-After = %q on a %d", ra, wantCode)
	}
}

const unusedCredential = `  - name: unused
    app_id: "7000000000000000003"
    app_secret: e2e-app-secret-unused-77aa
`

func TestProxyErrorCodes(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{
		Credentials: twoCredentials + unusedCredential,
		Timeout:     "2s",
		Extra:       "routing:\n  max_inspect_bytes: 2048\nbreaker:\n  consecutive_failures: 100\n",
	})
	px.authorize(t, s, "main", appMain, advMain1, advMain2)
	px.authorize(t, s, "other", appOther, advOther)
	api := px.URL + "/open_api/v1.3"
	jsonCT := http.Header{"Content-Type": {"application/json"}}

	tests := []struct {
		name       string
		method     string
		url        string
		header     http.Header
		body       string
		fault      map[string]any
		wantStatus int
		wantCode   int
	}{
		{name: "90001 advertisers of two credentials", method: "GET",
			url:        api + "/advertiser/info/?advertiser_ids=" + url.QueryEscape(`["`+advMain1+`","`+advOther+`"]`),
			wantStatus: 400, wantCode: 90001},
		{name: "90002 unknown credential header", method: "GET", url: api + "/campaign/get/",
			header: http.Header{"X-Tiktok-Credential": {"nope"}}, wantStatus: 400, wantCode: 90002},
		{name: "90003 never authorized", method: "GET", url: api + "/campaign/get/",
			header: http.Header{"X-Tiktok-Credential": {"unused"}}, wantStatus: 503, wantCode: 90003},
		{name: "90007 TikTok unreachable", method: "GET", url: api + "/campaign/get/?advertiser_id=" + advMain1,
			fault: map[string]any{"reset": true, "path_prefix": campaignGet}, wantStatus: 502, wantCode: 90007},
		{name: "90007 TikTok timed out", method: "GET", url: api + "/campaign/get/?advertiser_id=" + advMain1,
			fault: map[string]any{"latency": "5s", "count": 1, "path_prefix": campaignGet}, wantStatus: 504, wantCode: 90007},
		{name: "90008 JSON body over max_inspect_bytes", method: "POST", url: api + "/campaign/create/",
			header: jsonCT, body: `{"campaign_name":"` + strings.Repeat("x", 4096) + `","advertiser_id":"` + advOther + `"}`,
			wantStatus: 413, wantCode: 90008},
		{name: "90009 path outside /open_api/", method: "GET", url: px.URL + "/portal/auth?app_id=1",
			wantStatus: 404, wantCode: 90009},
		{name: "90011 malformed JSON body", method: "POST", url: api + "/campaign/create/",
			header: jsonCT, body: `{"advertiser_id": "` + advOther + `",`, wantStatus: 400, wantCode: 90011},
		{name: "90011 malformed advertiser_ids", method: "GET", url: api + "/advertiser/info/?advertiser_ids=" + url.QueryEscape(`["7100`),
			wantStatus: 400, wantCode: 90011},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fault != nil {
				s.post(t, "/sim/fault", tt.fault)
				t.Cleanup(func() { httpDo(t, "DELETE", s.URL+"/sim/fault", nil, nil) })
			}
			var body *strings.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			var status int
			var h http.Header
			var b []byte
			if body != nil {
				status, h, b = httpDo(t, tt.method, tt.url, tt.header, body)
			} else {
				status, h, b = httpDo(t, tt.method, tt.url, tt.header, nil)
			}
			wantProxyError(t, status, h, b, tt.wantStatus, tt.wantCode, false)
		})
	}

	// 90004: TikTok revokes the grant; the proxy learns it from TikTok's
	// 40105 and a failed refresh, and says so instead of passing errors on.
	t.Run("90004 revoked grant needs re-authorization", func(t *testing.T) {
		s.post(t, "/sim/revoke?app_id="+appOther, nil)
		var status int
		var h http.Header
		var b []byte
		for i := 0; i < 5; i++ {
			status, h, b = httpDo(t, "GET", api+"/campaign/get/?advertiser_id="+advOther, nil, nil)
			if h.Get("X-TikTok-Auth-Proxy-Error") != "" {
				break
			}
		}
		wantProxyError(t, status, h, b, 503, 90004, false)
		if !strings.Contains(string(b), "/authorize") {
			t.Errorf("90004 message does not say where to re-authorize: %s", b)
		}
		_, _, js := httpDo(t, "GET", px.AdminURL+"/api/credentials", nil, nil)
		if !strings.Contains(string(js), `"reauthorization_required":true`) {
			t.Errorf("/api/credentials does not show re-authorization required: %s", js)
		}
		// A successful re-authorization clears it.
		px.authorize(t, s, "other", appOther, advOther)
		status, _, b = httpDo(t, "GET", api+"/campaign/get/?advertiser_id="+advOther, nil, nil)
		if status != 200 || decodeEnvelope(t, b).Code != 0 {
			t.Errorf("after re-authorization: HTTP %d %s", status, b)
		}
	})
}

// 90005: the access token expired while TikTok's token endpoint is down;
// service returns within seconds of the endpoint coming back.
func TestExpiredTokenWhileTokenEndpointDown(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	s.post(t, "/sim/config", map[string]string{"access_ttl": "14s"})
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials, Extra: "tokens:\n  refresh_before: 1s\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	s.post(t, "/sim/fault", map[string]any{"scope": "token", "http_status": 503})
	api := px.URL + "/open_api/v1.3/campaign/get/?advertiser_id=" + advMain1

	var status int
	var h http.Header
	var b []byte
	eventually(t, 20*time.Second, "the expired token to give 90005", func() bool {
		status, h, b = httpDo(t, "GET", api, nil, nil)
		return h.Get("X-TikTok-Auth-Proxy-Error") == "90005"
	})
	wantProxyError(t, status, h, b, 503, 90005, true)

	httpDo(t, "DELETE", s.URL+"/sim/fault", nil, nil)
	recovered := time.Now()
	eventually(t, 20*time.Second, "service to return after the token endpoint came back", func() bool {
		status, _, b = httpDo(t, "GET", api, nil, nil)
		return status == 200 && decodeEnvelope(t, b).Code == 0
	})
	t.Logf("service returned %v after the token endpoint came back", time.Since(recovered).Round(100*time.Millisecond))
}

// 90006 and recovery: the breaker opens after the configured failures,
// answers fast while open, and closes again after open_timeout.
func TestCircuitBreaker(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials,
		Extra: "breaker:\n  consecutive_failures: 3\n  open_timeout: 2s\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	api := px.URL + "/open_api/v1.3/campaign/get/?advertiser_id=" + advMain1
	// 4xxxx codes are the script's business: they never trip the breaker.
	s.post(t, "/sim/fault", map[string]any{"code": 40002, "count": 5, "path_prefix": campaignGet})
	for i := 0; i < 5; i++ {
		status, h, b := httpDo(t, "GET", api, nil, nil)
		if status != 200 || h.Get("X-TikTok-Auth-Proxy-Error") != "" || decodeEnvelope(t, b).Code != 40002 {
			t.Fatalf("4xxxx %d: want TikTok's 40002 passed through, got HTTP %d %s", i, status, b)
		}
	}
	s.post(t, "/sim/fault", map[string]any{"code": 50002, "path_prefix": campaignGet})
	for i := 0; i < 3; i++ {
		status, h, b := httpDo(t, "GET", api, nil, nil)
		if status != 200 || h.Get("X-TikTok-Auth-Proxy-Error") != "" || decodeEnvelope(t, b).Code != 50002 {
			t.Fatalf("failure %d: want TikTok's 50002 passed through, got HTTP %d %s", i, status, b)
		}
	}
	before := s.stats(t, appMain).APICalls
	status, h, b := httpDo(t, "GET", api, nil, nil)
	wantProxyError(t, status, h, b, 503, 90006, true)
	if after := s.stats(t, appMain).APICalls; after != before {
		t.Errorf("an open breaker still sent %d request(s) to TikTok", after-before)
	}
	_, _, m := httpDo(t, "GET", px.AdminURL+"/metrics", nil, nil)
	if !strings.Contains(string(m), `tiktok_auth_proxy_circuit_breaker_state{credential="main"} 2`) {
		t.Errorf("circuit_breaker_state gauge not 2 (open) for main")
	}
	// The setup page and /api/credentials say why, and until when.
	_, _, b = httpDo(t, "GET", px.AdminURL+"/api/credentials", nil, nil)
	var creds []struct {
		Name         string    `json:"name"`
		BreakerState string    `json:"breaker_state"`
		BreakerUntil time.Time `json:"breaker_until"`
		BreakerError string    `json:"breaker_error"`
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		t.Fatal(err)
	}
	for _, c := range creds {
		// open_timeout may have passed already on a loaded machine.
		if c.Name == "main" && (!strings.HasPrefix(c.BreakerError, "TikTok code 50002: ") || (c.BreakerState == "open") == c.BreakerUntil.IsZero()) {
			t.Errorf("/api/credentials main: %+v, want breaker_error TikTok code 50002 with its message and breaker_until while open", c)
		}
	}
	if _, _, page := httpDo(t, "GET", px.AdminURL+"/authorize", nil, nil); !strings.Contains(string(page), "TikTok failing") ||
		!strings.Contains(string(page), "last error: TikTok code 50002") {
		t.Errorf("the setup page does not explain the breaker:\n%s", page)
	}
	// Another credential is not affected.
	_, h, b = httpDo(t, "GET", px.URL+"/open_api/v1.3/bc/get/", http.Header{"X-Tiktok-Credential": {"other"}}, nil)
	if h.Get("X-TikTok-Auth-Proxy-Error") == "90006" {
		t.Errorf("the other credential's breaker opened too: %s", b)
	}

	httpDo(t, "DELETE", s.URL+"/sim/fault", nil, nil)
	eventually(t, 15*time.Second, "the breaker to close after open_timeout", func() bool {
		status, _, b = httpDo(t, "GET", api, nil, nil)
		return status == 200 && decodeEnvelope(t, b).Code == 0
	})
	_, _, m = httpDo(t, "GET", px.AdminURL+"/metrics", nil, nil)
	if !strings.Contains(string(m), `tiktok_auth_proxy_circuit_breaker_state{credential="main"} 0`) {
		t.Errorf("circuit_breaker_state gauge not back to 0 (closed)")
	}
}

// 90012: a credential's own rate_limit, exceeded beyond the bounded wait.
func TestCredentialRateLimit(t *testing.T) {
	s := startSim(t)
	creds := strings.Replace(twoCredentials, "    default: true\n", "    default: true\n    rate_limit: {qps: 0.2, burst: 1}\n", 1)
	px := startProxy(t, s, proxyConfig{Credentials: creds, Extra: "rate_limits:\n  max_wait: 1s\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	api := px.URL + "/open_api/v1.3/campaign/get/?advertiser_id=" + advMain1
	status, _, b := httpDo(t, "GET", api, nil, nil)
	if status != 200 {
		t.Fatalf("first request within the burst: HTTP %d %s", status, b)
	}
	status, h, b := httpDo(t, "GET", api, nil, nil)
	wantProxyError(t, status, h, b, 429, 90012, true)
}

// 90010 and 90001 without a default: inbound client authentication.
func TestClientAuthentication(t *testing.T) {
	s := startSim(t)
	creds := strings.Replace(twoCredentials, "    default: true\n", "", 1)
	px := startProxy(t, s, proxyConfig{Credentials: creds, Extra: `clients:
  - name: etl
    token: e2e-client-token-etl-1f0e
    credentials: [main]
  - name: ops
    token: e2e-client-token-ops-8d3c
    credentials: [main, other]
`})
	px.authorize(t, s, "main", appMain, advMain1)
	px.authorize(t, s, "other", appOther, advOther)
	api := px.URL + "/open_api/v1.3"
	bearer := func(tok string) http.Header { return http.Header{"Proxy-Authorization": {"Bearer " + tok}} }

	status, h, b := httpDo(t, "GET", api+"/campaign/get/?advertiser_id="+advMain1, nil, nil)
	wantProxyError(t, status, h, b, 401, 90010, false)
	status, h, b = httpDo(t, "GET", api+"/campaign/get/?advertiser_id="+advMain1, bearer("wrong"), nil)
	wantProxyError(t, status, h, b, 401, 90010, false)
	status, h, b = httpDo(t, "GET", api+"/campaign/get/?advertiser_id="+advOther, bearer("e2e-client-token-etl-1f0e"), nil)
	wantProxyError(t, status, h, b, 403, 90010, false)
	status, h, b = httpDo(t, "GET", api+"/campaign/get/?advertiser_id=7999999999999999999", bearer("e2e-client-token-ops-8d3c"), nil)
	wantProxyError(t, status, h, b, 400, 90001, false)

	status, _, b = httpDo(t, "GET", api+"/campaign/get/?advertiser_id="+advMain1, bearer("e2e-client-token-etl-1f0e"), nil)
	if status != 200 || decodeEnvelope(t, b).Code != 0 {
		t.Fatalf("allowed client: HTTP %d %s", status, b)
	}
	basic := http.Header{}
	req, _ := http.NewRequest("GET", "http://x", nil)
	req.SetBasicAuth("ops", "e2e-client-token-ops-8d3c")
	basic.Set("Proxy-Authorization", req.Header.Get("Authorization"))
	status, _, b = httpDo(t, "GET", api+"/campaign/get/?advertiser_id="+advOther, basic, nil)
	if status != 200 || decodeEnvelope(t, b).Code != 0 {
		t.Fatalf("Basic client auth: HTTP %d %s", status, b)
	}
	if r := s.lastRequest(t); fmt.Sprint(r.AdvertiserIDs) != fmt.Sprint([]string{advOther}) || r.AppID != appOther {
		t.Errorf("TikTok saw %+v", r)
	}
}

// 90009 for a request for another host: a client using the proxy as an
// HTTP proxy (absolute-form request line) for some other site is refused,
// and nothing reaches TikTok; the proxy is never an open relay.
func TestRequestForAnotherHostRefused(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials})
	px.authorize(t, s, "main", appMain, advMain1)
	proxyURL, err := url.Parse(px.URL)
	if err != nil {
		t.Fatal(err)
	}
	// The transport writes "GET http://other.example/... HTTP/1.1" to the
	// loopback proxy; other.example is never resolved or dialled.
	viaProxy := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	t.Cleanup(viaProxy.CloseIdleConnections)
	before := len(s.recordedTo(t, campaignGet))

	resp, err := viaProxy.Get("http://other.example" + campaignGet + "?advertiser_id=" + advMain1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	wantProxyError(t, resp.StatusCode, resp.Header, b, 421, 90009, false)
	if after := len(s.recordedTo(t, campaignGet)); after != before {
		t.Errorf("a request for other.example reached TikTok (%d requests recorded)", after-before)
	}
	// The same call in origin form is served, so the refusal is about
	// the host and not a broken credential.
	status, _, b := httpDo(t, "GET", px.URL+campaignGet+"?advertiser_id="+advMain1, nil, nil)
	if status != 200 || decodeEnvelope(t, b).Code != 0 {
		t.Fatalf("origin-form request: HTTP %d %s", status, b)
	}
}
