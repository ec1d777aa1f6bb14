package setup

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestCallbackErrorAllowlist: the callback's error parameter is attacker
// text; only TikTok's error names are shown, anything else is a generic
// refusal (issue 9 finding 7).
func TestCallbackErrorAllowlist(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		value, want string
	}{
		{"server_error", "TikTok reported an error: server_error"},
		{"temporarily_unavailable", "TikTok reported an error: temporarily_unavailable"},
		{"invalid_scope", "TikTok reported an error: invalid_scope"},
		{"Your_account_is_suspended_call_+1_555_0100", "TikTok refused the authorization"},
		{"account suspended: visit evil.example", "TikTok refused the authorization"},
		{"<script>alert(1)</script>", "TikTok refused the authorization"},
		{"ACCESS_DENIED", "TikTok refused the authorization"},
	}
	for _, tt := range tests {
		for _, valid := range []bool{false, true} {
			q := url.Values{"error": {tt.value}, "state": {"bm90LWEtc3RhdGU"}}
			var cookie []string
			if valid {
				state, c := h.begin(t, "main")
				q.Set("state", state)
				cookie = append(cookie, c)
			}
			r := h.follow(t, h.do(t, http.MethodGet, "/oauth/callback?"+q.Encode(), nil, cookie...), cookie...)
			if !strings.Contains(r.body, tt.want) {
				t.Errorf("error=%q (valid state %v): page lacks %q:\n%s", tt.value, valid, tt.want, r.body)
			}
			if tt.want != "TikTok reported an error: "+tt.value {
				for _, s := range []string{"555", "evil.example", "suspended", "script", "ACCESS_DENIED"} {
					if strings.Contains(r.body, s) {
						t.Errorf("error=%q (valid state %v): the page shows %q", tt.value, valid, s)
					}
				}
			}
		}
	}
}
