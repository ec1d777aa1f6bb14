package e2e

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"testing"
	"time"
)

const (
	appTT    = "7000000000000000003"
	secretTT = "e2e-client-secret-tt-4e7a"
)

// A tiktok_account credential beside an advertiser one, each with its own
// OAuth endpoints: the setup flow goes through the simulator's tiktok_account
// consent page and tt_user token endpoint, and a script picking the
// credential by header reaches TikTok with that grant's token.
func TestTikTokAccountCredential(t *testing.T) {
	s := startSim(t)
	creds := twoCredentials + fmt.Sprintf(`  - name: tt
    kind: tiktok_account
    app_id: "%s"
    app_secret: %s
    oauth: { authorize_url: "%s/v2/auth/authorize/" }
`, appTT, secretTT, s.URL)
	px := startProxy(t, s, proxyConfig{Credentials: creds})

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: plainClient.Transport,
		CheckRedirect: plainClient.CheckRedirect}
	resp, err := browser.Get(px.AdminURL + "/authorize/tt")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	consent, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("/authorize/tt: HTTP %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := consent.Scheme + "://" + consent.Host + consent.Path; got != s.URL+"/v2/auth/authorize/" {
		t.Fatalf("consent page %s, want the credential's own authorize_url", got)
	}
	if q := consent.Query(); q.Get("client_key") != appTT || q.Get("response_type") != "code" {
		t.Fatalf("consent URL %s lacks client_key or response_type=code", consent)
	}
	callback := approveConsent(t, consent, consent.Query(), px.AdminURL)
	resp, err = browser.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/authorize/tt/done" {
		t.Fatalf("callback: HTTP %d to %q, want 303 to /authorize/tt/done", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, err = browser.Get(px.AdminURL + "/authorize/tt/done"); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("outcome page: HTTP %d", resp.StatusCode)
	}
	s.rememberIssued(t)
	if n := len(s.recordedTo(t, "/open_api/v1.3/tt_user/oauth2/token/")); n != 1 {
		t.Fatalf("%d exchanges at the tt_user token endpoint, want 1", n)
	}

	grantToken := ""
	for _, g := range s.grants(t) {
		if g.AppID == appTT {
			grantToken = g.AccessToken
		}
	}
	if grantToken == "" {
		t.Fatal("the simulator holds no grant of the tiktok_account app")
	}
	status, h, b := httpDo(t, "GET", px.URL+"/open_api/v1.3/business/get/", http.Header{"X-TikTok-Credential": {"tt"}}, nil)
	if status != 200 || decodeEnvelope(t, b).Code != 0 || h.Get("X-TikTok-Auth-Proxy-Credential") != "tt" {
		t.Fatalf("call with the tiktok_account credential: HTTP %d %s %s", status, h.Get("X-TikTok-Auth-Proxy-Credential"), b)
	}
	if last := s.recordedTo(t, "/open_api/v1.3/business/get/"); len(last) != 1 || last[0].AccessToken != grantToken {
		t.Fatalf("TikTok saw %+v, want one call with the tiktok_account grant's token", last)
	}
}
