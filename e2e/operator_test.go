package e2e

import (
	"strings"
	"testing"
)

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
