package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// logLines returns the JSON log lines of p whose msg is msg.
func logLines(t *testing.T, p *proc, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(p.out.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// The start line says what the proxy talks to and where its tokens are,
// whether they are encrypted, and each credential's state; the setup page
// it names is on the redirect URL's origin. One authorization is one log
// line.
func TestStartLineAndOneLinePerAuthorization(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials})
	px.authorize(t, s, "main", appMain, advMain1)
	if n := len(logLines(t, px.p, "credential authorized")); n != 1 {
		t.Errorf("%d \"credential authorized\" lines for one authorization, want 1", n)
	}
	for _, line := range strings.Split(px.p.out.String(), "\n") {
		if strings.Contains(line, "authorized") && strings.Contains(line, "setup:") {
			t.Errorf("the setup layer logs the authorization too: %s", line)
		}
	}

	// Restarted with a grant stored: the start line shows both states.
	if err := px.p.stop(t); err != nil {
		t.Fatal(err)
	}
	px.run(t)
	starts := logLines(t, px.p, "tiktok-auth-proxy serving")
	if len(starts) != 1 {
		t.Fatalf("%d start lines, want 1:\n%s", len(starts), px.p.out.String())
	}
	start := starts[0]
	for k, want := range map[string]any{
		"upstream":   s.URL,
		"store":      "file:" + filepath.Join(px.Dir, "tokens.json"),
		"encryption": false,
		"setup_page": px.AdminURL + "/authorize",
	} {
		if start[k] != want {
			t.Errorf("start line %s = %v, want %v", k, start[k], want)
		}
	}
	creds, _ := start["credentials"].(map[string]any)
	if creds["main"] != "authorized" || creds["other"] != "not_authorized" {
		t.Errorf("start line credentials = %v, want main authorized and other not_authorized", start["credentials"])
	}
}

// The access log line carries what TikTok support asks for (X-Tt-Logid and
// TikTok's request_id, beside the proxy's own request id), how the
// credential was picked, and the duration in seconds.
func TestAccessLogForTikTokSupport(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials})
	px.authorize(t, s, "main", appMain, advMain1)
	status, h, b := httpDo(t, "GET", px.URL+campaignGet+"?advertiser_id="+advMain1, nil, nil)
	env := decodeEnvelope(t, b)
	if status != 200 || env.Code != 0 || env.RequestID == "" || h.Get("X-Tt-Logid") == "" {
		t.Fatalf("HTTP %d, envelope %+v, X-Tt-Logid %q: want a success carrying TikTok's ids", status, env, h.Get("X-Tt-Logid"))
	}
	var line map[string]any
	eventually(t, 10*time.Second, "the request's log line", func() bool {
		for _, l := range logLines(t, px.p, "request") {
			if l["path"] == campaignGet {
				line = l
			}
		}
		return line != nil
	})
	for k, want := range map[string]any{
		"request_id":          h.Get("X-TikTok-Auth-Proxy-Request-Id"),
		"tt_logid":            h.Get("X-Tt-Logid"),
		"upstream_request_id": env.RequestID,
		"credential":          "main",
		"selected_by":         "advertiser",
		"level":               "INFO",
	} {
		if line[k] != want {
			t.Errorf("log %s = %#v, want %#v", k, line[k], want)
		}
	}
	if ids, _ := line["advertiser_ids"].([]any); len(ids) != 1 || ids[0] != advMain1 {
		t.Errorf("log advertiser_ids = %#v, want [%s]", line["advertiser_ids"], advMain1)
	}
	if d, ok := line["duration_seconds"].(float64); !ok || d <= 0 || d > 60 {
		t.Errorf("log duration_seconds = %#v, want seconds", line["duration_seconds"])
	}
	if _, ok := line["client"]; ok {
		t.Errorf("log has a client without clients configured: %v", line)
	}
}

// Every per-credential series whose labels are known exists from start-up,
// before any request or refresh, so rate(), absent() and alerts work on a
// proxy that has done nothing yet.
func TestMetricsExistBeforeAnyEvent(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials})
	_, _, b := httpDo(t, "GET", px.AdminURL+"/metrics", nil, nil)
	body := string(b)
	for _, cred := range []string{"main", "other"} {
		for _, want := range []string{
			`tiktok_auth_proxy_token_refreshes_total{credential="` + cred + `",result="success"} 0`,
			`tiktok_auth_proxy_token_refreshes_total{credential="` + cred + `",result="failure"} 0`,
			`tiktok_auth_proxy_token_refresh_duration_seconds_count{credential="` + cred + `"} 0`,
			`tiktok_auth_proxy_request_duration_seconds_count{credential="` + cred + `"} 0`,
			`tiktok_auth_proxy_credential_authorized{credential="` + cred + `"} 0`,
			`tiktok_auth_proxy_credential_reauthorization_required{credential="` + cred + `"} 0`,
			`tiktok_auth_proxy_circuit_breaker_state{credential="` + cred + `"} 0`,
		} {
			if !strings.Contains(body, want+"\n") {
				t.Errorf("/metrics at start-up lacks %s", want)
			}
		}
	}
}
