package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// TestTunnel: the core as the forward front end uses it. The CONNECT
// authenticates the client; each request of the tunnel, in absolute form
// for an intercepted host and read off a connection (RequestURI set), goes
// to the upstream with the right token, its errors come back as envelope
// responses, and closing a response's body counts and logs it exactly as
// the reverse front end does the same request.
func TestTunnel(t *testing.T) {
	h := newHarness(t, nil, func(c *config.Config, _ *Options) {
		c.Clients = []config.Client{{Name: "ci", Token: "client-token", Credentials: []string{"other"}}}
	})
	core := h.p.Core()
	connect := httptest.NewRequest(http.MethodConnect, "business-api.tiktok.com:443", nil)
	if rt, refusal := core.Tunnel(connect); rt != nil || refusal == nil {
		t.Fatalf("Tunnel without Proxy-Authorization = %v, %v; want a refusal", rt, refusal)
	} else if refusal.StatusCode != http.StatusUnauthorized || refusal.Header.Get(HeaderError) != "90010" {
		t.Errorf("refusal %d %s, want 401 90010", refusal.StatusCode, refusal.Header.Get(HeaderError))
	}
	connect.Header.Set("Proxy-Authorization", "Bearer client-token")
	rt, refusal := core.Tunnel(connect)
	if refusal != nil {
		t.Fatalf("Tunnel refused an authenticated client: %d", refusal.StatusCode)
	}
	inTunnel := func(target string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "https://business-api.tiktok.com"+target, nil)
		r.RequestURI = target
		return r
	}
	tests := []struct {
		name, target string
		status       int
		code         string // X-TikTok-Auth-Proxy-Error
		cred         string
	}{
		{name: "forwarded", target: campaignGet + "?advertiser_id=" + advOther, status: 200, cred: "other"},
		{name: "credential not the client's", target: campaignGet + "?advertiser_id=" + advMain, status: 403, code: "90010", cred: "main"},
		{name: "outside open_api", target: "/portal/auth", status: 404, code: "90009"},
	}
	for _, tc := range tests {
		resp, err := rt.RoundTrip(inTunnel(tc.target))
		if err != nil {
			t.Fatalf("%s: RoundTrip error %v; proxy errors must be responses", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get(HeaderError) != tc.code || resp.Header.Get(HeaderCredential) != tc.cred {
			t.Errorf("%s: %d %q %q, want %d %q %q: %s", tc.name, resp.StatusCode, resp.Header.Get(HeaderError),
				resp.Header.Get(HeaderCredential), tc.status, tc.code, tc.cred, body)
		}
	}
	seen := h.up.requests()
	if len(seen) != 1 || seen[0].Header.Get("Access-Token") != "tok-other" || seen[0].Header.Get("Proxy-Authorization") != "" ||
		seen[0].Host != strings.TrimPrefix(h.up.URL, "http://") || seen[0].Path != campaignGet {
		t.Fatalf("upstream saw %+v, want one request for %s with other's token", seen, campaignGet)
	}

	// The same request through the reverse front end counts the same.
	before := testutil.ToFloat64(h.m.Requests.WithLabelValues("other", "GET", "200"))
	r := localRequest(http.MethodGet, campaignGet+"?advertiser_id="+advOther, nil)
	r.Header.Set("Proxy-Authorization", "Bearer client-token")
	if w := h.do(r); w.Code != http.StatusOK {
		t.Fatalf("reverse: %d %s", w.Code, w.Body)
	}
	if after := testutil.ToFloat64(h.m.Requests.WithLabelValues("other", "GET", "200")); before != 1 || after != 2 {
		t.Errorf("requests_total{other,GET,200}: %v after the tunnelled request, %v after the direct one; want 1 and 2", before, after)
	}
	if lines := h.logLines(t, "request"); len(lines) != 4 {
		t.Errorf("%d request log lines, want 4 (3 tunnelled, 1 direct)", len(lines))
	}
}
