package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktoksim"
)

// The browser tests drive Debian's headless chromium through the one-time
// setup exactly as an operator does: the /authorize page, the simulator's
// consent page, the callback's success or error page.

const (
	browserCred  = "main"
	browserAppID = "7100000000000000001"
	// browserTimeout bounds everything one browser test does.
	browserTimeout = 60 * time.Second
)

var browserCredYAML = `  - name: ` + browserCred + `
    description: Agency ad accounts
    kind: advertiser
    app_id: "` + browserAppID + `"
    app_secret: browser-e2e-secret`

// newBrowser starts a fresh headless chromium with its own profile and
// returns a tab context bounded by browserTimeout. The browser is stopped
// when the test ends; its output is logged if the test failed.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	execPath, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found in PATH (%v): run `make deps` to install Debian's headless chromium", err)
	}
	out := &syncBuffer{}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctxTimeout(t, browserTimeout),
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.CombinedOutput(out),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output:\n%s", out.String())
		}
	})
	// The first action starts the browser; a sensible desktop width makes
	// the screenshots readable.
	browserDo(t, ctx, "start chromium", chromedp.EmulateViewport(1200, 900))
	return ctx
}

// newBrowserContext opens a tab in a new browser context of ctx's browser:
// its own cookies, like another browser altogether.
func newBrowserContext(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	other, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	browserDo(t, other, "open a new browser context", chromedp.EmulateViewport(1200, 900))
	return other
}

// browserDo runs actions and fails the test, saying what it was doing and
// where the tab was, on error.
func browserDo(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		// The tab's context may be what timed out: ask where it is with a
		// short deadline of its own.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		loc, _ := chromedp.Run(lctx, chromedp.Location())
		cancel()
		t.Fatalf("browser: %s: %v (tab at %q)", what, err, browserRedactQuery(loc))
	}
}

// browserRun runs one action that returns a value, failing the test on error.
func browserRun[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// browserRedactQuery drops a URL's query: a consent or callback URL carries the
// state and the auth code.
func browserRedactQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.RawQuery == "" {
		return raw
	}
	u.RawQuery = "[query redacted]"
	return u.String()
}

func browserText(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return strings.TrimSpace(browserRun(t, ctx, "read "+sel, chromedp.Text(chromedp.CSS(sel))))
}

// browserArtifactDir is $ARTIFACTS_DIR, else e2e/artifacts (gitignored).
func browserArtifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = "artifacts"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// browserScreenshot writes the whole document, cropped to its content, as
// a PNG artifact and logs its path.
func browserScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := browserRun(t, ctx, "screenshot "+name, chromedp.Screenshot(chromedp.CSS("html")))
	path := filepath.Join(browserArtifactDir(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// browserNoSecrets fails the test if the tab's rendered HTML holds any
// secret: those the harness knows (config secrets, client tokens, codes it
// minted), every token and code the simulator s ever issued, and the auth
// code of the URL the tab is at (the callback's). page names the page.
func browserNoSecrets(t *testing.T, ctx context.Context, s *sim, page string) {
	t.Helper()
	html := browserRun(t, ctx, "read the "+page+" HTML", chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	loc := browserRun(t, ctx, "read the "+page+" URL", chromedp.Location())
	secrets := knownSecrets()
	if u, err := url.Parse(loc); err == nil {
		secrets = append(secrets, u.Query().Get("auth_code"), u.Query().Get("code"))
	}
	iss := s.issued(t)
	secrets = append(secrets, iss.AccessTokens...)
	secrets = append(secrets, iss.RefreshTokens...)
	secrets = append(secrets, iss.AuthCodes...)
	for _, sec := range secrets {
		if sec != "" && strings.Contains(html, sec) {
			t.Errorf("the %s shows a secret (%.6s…)", page, sec)
		}
	}
}

// browserOpenSetupPage loads <admin>/authorize, waits for the credential's
// card and checks the page shows no secret.
func browserOpenSetupPage(t *testing.T, ctx context.Context, px *proxy, s *sim) {
	t.Helper()
	browserDo(t, ctx, "open the setup page",
		chromedp.Navigate(px.AdminURL+"/authorize"),
		chromedp.WaitVisible(chromedp.ID("credential-"+browserCred)),
	)
	browserNoSecrets(t, ctx, s, "setup page")
}

// startFlowInBrowser clicks the credential's Authorize button on the setup
// page and waits for the simulator's consent page; it returns that page's URL.
func startFlowInBrowser(t *testing.T, ctx context.Context, px *proxy, s *sim) string {
	t.Helper()
	browserOpenSetupPage(t, ctx, px, s)
	browserDo(t, ctx, "click Authorize and reach the consent page",
		chromedp.Click(chromedp.ID("authorize-"+browserCred)),
		chromedp.WaitVisible(chromedp.ID("authorize")),
	)
	consent := browserRun(t, ctx, "read the consent URL", chromedp.Location())
	if !strings.HasPrefix(consent, s.URL+"/portal/auth?") {
		t.Fatalf("Authorize led to %q, want the simulator's consent page %s/portal/auth", browserRedactQuery(consent), s.URL)
	}
	return consent
}

// consentInBrowser clicks the consent page's Authorize button and waits for
// the callback's page, which must show no secret, not even the auth code
// it came with: it returns true on the success page, false on the error
// page.
func consentInBrowser(t *testing.T, ctx context.Context, s *sim) bool {
	t.Helper()
	browserDo(t, ctx, "consent and reach the callback page",
		chromedp.Click(chromedp.ID("authorize")),
		chromedp.WaitVisible(chromedp.CSS("#granted-advertisers, #error")),
	)
	isError := browserRun(t, ctx, "look for #error", chromedp.Evaluate[bool](`document.getElementById("error") !== null`))
	page := "callback's success page"
	if isError {
		page = "callback's error page"
	}
	browserNoSecrets(t, ctx, s, page)
	return !isError
}

// browserGrantedAdvertisers reads the advertiser ids of the success page.
func browserGrantedAdvertisers(t *testing.T, ctx context.Context) []string {
	t.Helper()
	ids := browserRun(t, ctx, "read the granted advertisers", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#granted-advertisers .advertiser-id"), e => e.textContent.trim())`))
	slices.Sort(ids)
	return ids
}

// authorizeInBrowser runs the whole flow from the setup page and checks it
// lands on the success page; it returns the granted advertiser ids.
func authorizeInBrowser(t *testing.T, ctx context.Context, px *proxy, s *sim) []string {
	t.Helper()
	startFlowInBrowser(t, ctx, px, s)
	if !consentInBrowser(t, ctx, s) {
		t.Fatalf("callback shows an error: %q", browserText(t, ctx, "#error"))
	}
	return browserGrantedAdvertisers(t, ctx)
}

func browserDefaultAdvertiserIDs() []string {
	var ids []string
	for _, a := range tiktoksim.DefaultAdvertisers {
		ids = append(ids, a.ID)
	}
	slices.Sort(ids)
	return ids
}

// browserSimRequest is the part of the simulator's recorded request the tests read.
type browserSimRequest struct {
	Path        string `json:"path"`
	AccessToken string `json:"access_token"`
	TokenKnown  bool   `json:"token_known"`
	AppID       string `json:"app_id"`
	Code        int    `json:"code"`
}

// browserLastSimRequest returns the simulator's newest recorded request to path.
func browserLastSimRequest(t *testing.T, s *sim, path string) browserSimRequest {
	t.Helper()
	status, _, b := httpDo(t, "GET", s.URL+"/sim/requests", nil, nil)
	if status != 200 {
		t.Fatalf("GET /sim/requests: HTTP %d", status)
	}
	var got struct{ Requests []browserSimRequest }
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("GET /sim/requests: %v", err)
	}
	for i := len(got.Requests) - 1; i >= 0; i-- {
		if got.Requests[i].Path == path {
			return got.Requests[i]
		}
	}
	t.Fatalf("the simulator recorded no request to %s", path)
	return browserSimRequest{}
}

// browserSimGrant is the part of the simulator's grant the tests read.
type browserSimGrant struct {
	AppID         string   `json:"app_id"`
	AdvertiserIDs []string `json:"advertiser_ids"`
	AccessToken   string   `json:"access_token"`
}

// browserSimGrants returns the simulator's grants of app, oldest first.
func browserSimGrants(t *testing.T, s *sim, app string) []browserSimGrant {
	t.Helper()
	status, _, b := httpDo(t, "GET", s.URL+"/sim/grants", nil, nil)
	if status != 200 {
		t.Fatalf("GET /sim/grants: HTTP %d", status)
	}
	var got struct{ Grants []browserSimGrant }
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("GET /sim/grants: %v", err)
	}
	var out []browserSimGrant
	for _, g := range got.Grants {
		if g.AppID == app {
			out = append(out, g)
		}
	}
	return out
}

func browserExchangeCalls(t *testing.T, s *sim, app string) int {
	t.Helper()
	status, _, b := httpDo(t, "GET", s.URL+"/sim/stats", nil, nil)
	if status != 200 {
		t.Fatalf("GET /sim/stats: HTTP %d", status)
	}
	var got struct {
		Apps map[string]struct {
			ExchangeCalls int `json:"exchange_calls"`
		}
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("GET /sim/stats: %v", err)
	}
	return got.Apps[app].ExchangeCalls
}

// browserCredentialAuthorized reads "authorized" for the credential from
// /api/credentials.
func browserCredentialAuthorized(t *testing.T, px *proxy) bool {
	t.Helper()
	status, _, b := httpDo(t, "GET", px.AdminURL+"/api/credentials", nil, nil)
	if status != 200 {
		t.Fatalf("GET /api/credentials: HTTP %d: %.300s", status, b)
	}
	var creds []struct {
		Name       string `json:"name"`
		Authorized *bool  `json:"authorized"`
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		t.Fatalf("GET /api/credentials: %v: %.300s", err, b)
	}
	for _, c := range creds {
		if c.Name == browserCred {
			if c.Authorized == nil {
				t.Fatalf("/api/credentials has no \"authorized\" for %s: %.300s", browserCred, b)
			}
			return *c.Authorized
		}
	}
	t.Fatalf("/api/credentials does not list %s: %.300s", browserCred, b)
	return false
}

const browserCampaignPath = "/open_api/v1.3/campaign/get/"

// browserProxyCampaignGet sends a campaign listing for advertiser through the
// proxy, without any token, and checks TikTok's envelope code 0 came back.
func browserProxyCampaignGet(t *testing.T, px *proxy, advertiser string) {
	t.Helper()
	status, _, b := httpDo(t, "GET", px.URL+browserCampaignPath+"?advertiser_id="+advertiser, nil, nil)
	env := decodeEnvelope(t, b)
	if status != 200 || env.Code != 0 {
		t.Fatalf("GET through the proxy: HTTP %d, code %d %q, want 200 and code 0", status, env.Code, env.Message)
	}
}

func TestBrowserSetupFlow(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: browserCredYAML})
	ctx := newBrowser(t)

	browserOpenSetupPage(t, ctx, px, s)
	if got := browserText(t, ctx, "#status-"+browserCred); got != "Not authorized" {
		t.Errorf("status badge before authorizing = %q, want %q", got, "Not authorized")
	}
	if got := browserText(t, ctx, "#authorize-"+browserCred); got != "Authorize" {
		t.Errorf("button before authorizing = %q, want %q", got, "Authorize")
	}
	browserScreenshot(t, ctx, "browser-setup-before.png")

	consent := startFlowInBrowser(t, ctx, px, s)
	u, _ := url.Parse(consent)
	if got, want := u.Query().Get("redirect_uri"), px.AdminURL+"/oauth/callback"; got != want {
		t.Errorf("consent redirect_uri = %q, want %q", got, want)
	}
	if u.Query().Get("app_id") != browserAppID {
		t.Errorf("consent app_id = %q, want %q", u.Query().Get("app_id"), browserAppID)
	}
	browserScreenshot(t, ctx, "browser-consent.png")

	if !consentInBrowser(t, ctx, s) {
		t.Fatalf("callback shows an error: %q", browserText(t, ctx, "#error"))
	}
	ids := browserGrantedAdvertisers(t, ctx)
	if want := browserDefaultAdvertiserIDs(); !slices.Equal(ids, want) {
		t.Fatalf("success page lists advertisers %v, want the simulator's %v", ids, want)
	}
	if scopes := browserText(t, ctx, "#granted-scopes"); scopes == "" {
		t.Error("success page: #granted-scopes is empty")
	}
	if curl := browserText(t, ctx, "#next-curl"); !strings.Contains(curl, px.URL+"/open_api/") {
		t.Errorf("success page: #next-curl = %q, want a call through %s/open_api/", curl, px.URL)
	}
	browserScreenshot(t, ctx, "browser-success.png")

	browserProxyCampaignGet(t, px, ids[0])
	rec := browserLastSimRequest(t, s, browserCampaignPath)
	if !rec.TokenKnown || rec.AppID != browserAppID {
		t.Errorf("TikTok saw token_known=%v app_id=%q, want a known token of app %s", rec.TokenKnown, rec.AppID, browserAppID)
	}

	browserOpenSetupPage(t, ctx, px, s)
	if got := browserText(t, ctx, "#status-"+browserCred); got != "Authorized" {
		t.Errorf("status badge after authorizing = %q, want %q", got, "Authorized")
	}
	if got := browserText(t, ctx, "#authorize-"+browserCred); got != "Re-authorize" {
		t.Errorf("button after authorizing = %q, want %q", got, "Re-authorize")
	}
	card := browserText(t, ctx, "#credential-"+browserCred)
	for _, id := range ids {
		if !strings.Contains(card, id) {
			t.Errorf("setup page card does not list advertiser %s: %q", id, card)
		}
	}
	browserScreenshot(t, ctx, "browser-setup-after.png")

	// The page must stay readable on a phone: nothing wider than the screen.
	browserDo(t, ctx, "emulate a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("credential-"+browserCred)))
	overflow := browserRun(t, ctx, "measure the page width", chromedp.Evaluate[int](
		`document.documentElement.scrollWidth - document.documentElement.clientWidth`))
	if overflow > 0 {
		t.Errorf("setup page is %dpx wider than a 390px phone screen", overflow)
	}
	browserScreenshot(t, ctx, "browser-setup-phone.png")
}

func TestBrowserCrossBrowserStateRefused(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: browserCredYAML})
	ctxA := newBrowser(t)

	consent := startFlowInBrowser(t, ctxA, px, s)
	u, _ := url.Parse(consent)
	if u.Query().Get("state") == "" || u.Query().Get("redirect_uri") == "" {
		t.Fatalf("consent URL lacks state or redirect_uri: %s", browserRedactQuery(consent))
	}

	ctxB := newBrowserContext(t, ctxA)
	steps := []struct {
		name  string
		setup func(t *testing.T)
	}{
		{"browser B has no binding cookie", func(*testing.T) {}},
		{"browser B has its own flow's cookie", func(t *testing.T) { startFlowInBrowser(t, ctxB, px, s) }},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.setup(t)
			browserDo(t, ctxB, "open browser A's consent URL", chromedp.Navigate(consent),
				chromedp.WaitVisible(chromedp.ID("authorize")))
			if consentInBrowser(t, ctxB, s) {
				t.Fatalf("browser B completed browser A's flow: success page with %v", browserGrantedAdvertisers(t, ctxB))
			}
			msg := browserText(t, ctxB, "#error")
			if !strings.Contains(strings.ToLower(msg), "browser") {
				t.Errorf("error page says %q, want it to name another browser as the cause", msg)
			}
			back := browserRun(t, ctxB, "read #back", chromedp.Evaluate[string](`document.getElementById("back").href`))
			if back != px.AdminURL+"/authorize" {
				t.Errorf("#back links to %q, want %s/authorize", back, px.AdminURL)
			}
			if browserCredentialAuthorized(t, px) {
				t.Fatal("the credential is authorized after a cross-browser callback")
			}
			if n := browserExchangeCalls(t, s, browserAppID); n != 0 {
				t.Errorf("the proxy exchanged %d auth codes of a refused callback, want 0", n)
			}
		})
	}
	browserScreenshot(t, ctxB, "browser-cross-browser-error.png")

	// A refused binding does not consume the state: the browser that
	// started the flow can still finish it.
	browserDo(t, ctxA, "reopen the consent page in browser A", chromedp.Navigate(consent),
		chromedp.WaitVisible(chromedp.ID("authorize")))
	if !consentInBrowser(t, ctxA, s) {
		t.Fatalf("browser A could not finish its own flow after B's refused attempts: %q", browserText(t, ctxA, "#error"))
	}
	if !browserCredentialAuthorized(t, px) {
		t.Error("the credential is not authorized after browser A's callback")
	}
}

func TestBrowserReauthorization(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: browserCredYAML})
	ctx := newBrowser(t)

	ids := authorizeInBrowser(t, ctx, px, s)
	if want := browserDefaultAdvertiserIDs(); !slices.Equal(ids, want) {
		t.Fatalf("first authorization granted %v, want %v", ids, want)
	}
	first := browserSimGrants(t, s, browserAppID)
	if len(first) != 1 {
		t.Fatalf("simulator has %d grants after the first authorization, want 1", len(first))
	}
	browserProxyCampaignGet(t, px, ids[0])
	if rec := browserLastSimRequest(t, s, browserCampaignPath); rec.AccessToken != first[0].AccessToken {
		t.Fatalf("before re-authorization the proxy did not use the first grant's token (token_known=%v)", rec.TokenKnown)
	}

	browserOpenSetupPage(t, ctx, px, s)
	if got := browserText(t, ctx, "#authorize-"+browserCred); got != "Re-authorize" {
		t.Errorf("button of an authorized credential = %q, want %q", got, "Re-authorize")
	}
	again := authorizeInBrowser(t, ctx, px, s)
	if want := browserDefaultAdvertiserIDs(); !slices.Equal(again, want) {
		t.Errorf("re-authorization granted %v, want %v", again, want)
	}
	browserScreenshot(t, ctx, "browser-reauth-success.png")

	grants := browserSimGrants(t, s, browserAppID)
	if len(grants) != 2 {
		t.Fatalf("simulator has %d grants after re-authorization, want 2", len(grants))
	}
	newest := grants[len(grants)-1]
	if newest.AccessToken == first[0].AccessToken {
		t.Fatal("the re-authorization's grant has the first grant's access token")
	}

	browserProxyCampaignGet(t, px, ids[0])
	rec := browserLastSimRequest(t, s, browserCampaignPath)
	switch rec.AccessToken {
	case newest.AccessToken:
	case first[0].AccessToken:
		t.Fatal("after re-authorization the proxy still sends the first grant's access token")
	default:
		t.Fatalf("after re-authorization the proxy sent a token of neither grant (token_known=%v)", rec.TokenKnown)
	}
	if !browserCredentialAuthorized(t, px) {
		t.Error("the credential is not authorized after re-authorization")
	}
}

// The demo as its instructions tell a new user: open the printed setup
// page in a browser, click Authorize, approve on the simulator's consent
// page, land on the success page with the advertisers; then the printed
// curl works. No page shows a secret.
func TestBrowserDemo(t *testing.T) {
	d := startDemo(t)
	ctx := newBrowser(t)
	// Registered after the demo started, so it runs while it still serves.
	t.Cleanup(func() { d.s.rememberIssued(t) })
	const cred = "demo"

	browserDo(t, ctx, "open the printed setup page",
		chromedp.Navigate(d.px.AdminURL+"/authorize"),
		chromedp.WaitVisible(chromedp.ID("credential-"+cred)),
	)
	browserNoSecrets(t, ctx, d.s, "demo's setup page")
	browserDo(t, ctx, "click Authorize and reach the consent page",
		chromedp.Click(chromedp.ID("authorize-"+cred)),
		chromedp.WaitVisible(chromedp.ID("authorize")),
	)
	if loc := browserRun(t, ctx, "read the consent URL", chromedp.Location()); !strings.HasPrefix(loc, d.s.URL+"/portal/auth?") {
		t.Fatalf("Authorize led to %q, want the demo simulator's consent page %s/portal/auth", browserRedactQuery(loc), d.s.URL)
	}
	if !consentInBrowser(t, ctx, d.s) {
		t.Fatalf("callback shows an error: %q", browserText(t, ctx, "#error"))
	}
	if ids, want := browserGrantedAdvertisers(t, ctx), browserDefaultAdvertiserIDs(); !slices.Equal(ids, want) {
		t.Fatalf("success page lists advertisers %v, want the simulator's %v", ids, want)
	}
	browserScreenshot(t, ctx, "browser-demo-success.png")

	status, _, b := httpDo(t, "GET", d.curl, nil, nil)
	if env := decodeEnvelope(t, b); status != 200 || env.Code != 0 {
		t.Fatalf("the printed curl after authorizing in the browser: HTTP %d code %d %q", status, env.Code, env.Message)
	}
}
