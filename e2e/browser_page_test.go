package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// The operator's view of the setup page in a real browser: screenshots at
// desktop and phone width in light and dark mode, the page refreshing
// itself, and the localhost/127.0.0.1 trap closed.

// browserLook is one way an operator sees a page.
type browserLook struct {
	name          string
	width, height int64
	phone, dark   bool
}

var browserLooks = []browserLook{
	{"desktop-light", 1200, 900, false, false},
	{"desktop-dark", 1200, 900, false, true},
	{"phone-light", 390, 844, true, false},
	{"phone-dark", 390, 844, true, true},
}

// browserLookAt switches the tab to look l: viewport and color scheme.
func browserLookAt(l browserLook) chromedp.Action[chromedp.Void] {
	var opts []chromedp.EmulateViewportOption
	if l.phone {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulatePortrait)
	}
	scheme := "light"
	if l.dark {
		scheme = "dark"
	}
	viewport := chromedp.EmulateViewport(l.width, l.height, opts...)
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := viewport(ctx, t); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	})
}

// browserDocs are the screenshots the README shows: with UPDATE_DOCS=1
// (make screenshots) they are also copied to ../docs.
var browserDocs = map[string]bool{
	"setup-desktop-light.png": true, "setup-desktop-dark.png": true,
	"setup-phone-light.png": true, "setup-phone-dark.png": true,
	"success-desktop-light.png": true, "error-desktop-light.png": true,
}

// browserShootLooks screenshots the current page in every look as
// <page>-<look>.png, checking on each that nothing is wider than the
// screen and that the color scheme took effect. It ends back at
// desktop-light.
func browserShootLooks(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	var lightBG string
	for _, l := range browserLooks {
		browserDo(t, ctx, "switch to "+l.name, browserLookAt(l))
		overflow := browserRun(t, ctx, "measure the page width", chromedp.Evaluate[int](
			`document.documentElement.scrollWidth - document.documentElement.clientWidth`))
		if overflow > 0 {
			t.Errorf("%s (%s) is %dpx wider than the %dpx screen", page, l.name, overflow, l.width)
		}
		bg := browserRun(t, ctx, "read the background", chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
		switch {
		case !l.dark && !l.phone:
			lightBG = bg
		case l.dark && bg == lightBG:
			t.Errorf("%s (%s): background %s is the light one: dark mode not applied", page, l.name, bg)
		}
		name := page + "-" + l.name + ".png"
		browserScreenshot(t, ctx, name)
		if os.Getenv("UPDATE_DOCS") == "1" && browserDocs[name] {
			data, err := os.ReadFile(filepath.Join(browserArtifactDir(t), name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join("..", "docs", name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	browserDo(t, ctx, "back to desktop-light", browserLookAt(browserLooks[0]))
}

// Three credentials as an operator meets them: one just authorized in the
// browser (the default), one TikTok revoked, one never authorized. The
// page leads with what needs action and says each fact once.
func TestBrowserScreenshots(t *testing.T) {
	s := startSim(t)
	creds := browserCredYAML + `
    default: true
  - name: legacy
    description: Old agency app
    app_id: "` + appOther + `"
    app_secret: ` + secretOther + `
  - name: reporting
    description: Reporting only
    app_id: "7100000000000000009"
    app_secret: browser-e2e-reporting-secret
    advertiser_ids: ["7300000000000000001"]`
	px := startProxy(t, s, proxyConfig{Credentials: creds})
	ctx := newBrowser(t)

	// legacy: authorized, then revoked in TikTok; the proxy learns it.
	px.authorize(t, s, "legacy", appOther, advOther)
	s.post(t, "/sim/revoke?app_id="+appOther, nil)
	eventually(t, 20*time.Second, "the revocation to be noticed", func() bool {
		_, h, _ := httpDo(t, "GET", px.URL+"/open_api/v1.3/campaign/get/?advertiser_id="+advOther, nil, nil)
		return h.Get("X-TikTok-Auth-Proxy-Error") == "90004"
	})

	// main: denied once (the error page), then authorized in the browser.
	startFlowInBrowser(t, ctx, px, s)
	browserDo(t, ctx, "deny on the consent page",
		chromedp.Click(chromedp.ID("cancel")),
		chromedp.WaitVisible(chromedp.ID("error")))
	errText := browserText(t, ctx, "main")
	for _, want := range []string{"Authorization failed: " + browserCred, "access_denied", "Try again"} {
		if !strings.Contains(errText, want) {
			t.Errorf("error page lacks %q: %s", want, errText)
		}
	}
	if strings.Contains(errText, "..") {
		t.Errorf("error page has stray punctuation: %s", errText)
	}
	browserNoSecrets(t, ctx, s, "error page")
	browserShootLooks(t, ctx, "error")

	browserDo(t, ctx, "click Try again and reach the consent page",
		chromedp.Click(chromedp.ID("retry")),
		chromedp.WaitVisible(chromedp.ID("authorize")))
	if !consentInBrowser(t, ctx, s) {
		t.Fatalf("callback shows an error: %q", browserText(t, ctx, "#error"))
	}
	loc := browserRun(t, ctx, "read the success URL", chromedp.Location())
	if loc != px.AdminURL+"/authorize/"+browserCred+"/done" {
		t.Errorf("success page at %q, want the clean %s/authorize/%s/done", browserRedactQuery(loc), px.AdminURL, browserCred)
	}
	browserShootLooks(t, ctx, "success")

	browserOpenSetupPage(t, ctx, px, s)
	if got := browserText(t, ctx, "#summary"); got != "3 credentials: 2 need attention" {
		t.Errorf("summary = %q, want %q", got, "3 credentials: 2 need attention")
	}
	order := browserRun(t, ctx, "read the card order", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("section.card"), e => e.id)`))
	if strings.Join(order, ",") != "credential-legacy,credential-reporting,credential-main" {
		t.Errorf("card order %v, want legacy and reporting (needing action) before main", order)
	}
	legacy := browserText(t, ctx, "#credential-legacy")
	for _, want := range []string{"Re-authorization needed", "unusable", "Re-authorize"} {
		if !strings.Contains(legacy, want) {
			t.Errorf("revoked card lacks %q: %s", want, legacy)
		}
	}
	for _, lie := range []string{"expires", "succeeded"} {
		if strings.Contains(legacy, lie) {
			t.Errorf("revoked card shows %q as if usable: %s", lie, legacy)
		}
	}
	mainCard := browserText(t, ctx, "#credential-"+browserCred)
	for _, want := range []string{"Authorized", "default", "Default credential", "from TikTok's listing", "· Reporting", "UTC, in "} {
		if !strings.Contains(mainCard, want) {
			t.Errorf("main card lacks %q: %s", want, mainCard)
		}
	}
	if got := browserText(t, ctx, "#credential-reporting"); !strings.Contains(got, "7300000000000000001 from config") {
		t.Errorf("reporting card does not show its configured advertiser's source: %s", got)
	}
	browserShootLooks(t, ctx, "setup")
}

// The page refreshes itself while open: a grant stored elsewhere shows up
// without a reload (a value set on the page's window survives).
func TestBrowserPageRefreshesItself(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: browserCredYAML})
	ctx := newBrowser(t)
	browserOpenSetupPage(t, ctx, px, s)
	browserRun(t, ctx, "mark the window", chromedp.Evaluate[bool](`window.notReloaded = true`))
	if got := browserText(t, ctx, "#status-"+browserCred); got != "Not authorized" {
		t.Fatalf("badge %q before authorizing", got)
	}

	px.authorize(t, s, browserCred, browserAppID, browserDefaultAdvertiserIDs()[0])

	// Read the badge in one script: the page re-renders in place, so a node
	// chromedp found a moment ago may be gone by the time it reads its text.
	badge := `(document.getElementById("status-` + browserCred + `") || {textContent: ""}).textContent.trim()`
	eventually(t, 30*time.Second, "the open page to show the credential authorized", func() bool {
		return browserRun(t, ctx, "read the badge", chromedp.Evaluate[string](badge)) == "Authorized"
	})
	if !browserRun(t, ctx, "read the mark", chromedp.Evaluate[bool](`window.notReloaded === true`)) {
		t.Error("the page was reloaded instead of refreshed in place")
	}
	if hidden := browserRun(t, ctx, "read #stale", chromedp.Evaluate[bool](`document.getElementById("stale").hidden`)); !hidden {
		t.Error("the stale note shows although the proxy answers")
	}
}

// The localhost/127.0.0.1 trap: with redirect_url on localhost, a flow
// started from http://127.0.0.1:PORT/authorize completes (the browser is
// moved to localhost before the cookie is set), and the page that serve
// prints is on localhost.
func TestBrowserLocalhostTrap(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: browserCredYAML, RedirectHost: "localhost"})
	starts := logLines(t, px.p, "tiktok-auth-proxy serving")
	localAdmin := strings.Replace(px.AdminURL, "127.0.0.1", "localhost", 1)
	if len(starts) != 1 || starts[0]["setup_page"] != localAdmin+"/authorize" {
		t.Errorf("start line setup_page = %v, want %s/authorize", starts, localAdmin)
	}
	ctx := newBrowser(t)
	consent := startFlowInBrowser(t, ctx, px, s)
	if !strings.Contains(consent, "redirect_uri="+strings.ReplaceAll(strings.ReplaceAll(localAdmin, ":", "%3A"), "/", "%2F")) {
		t.Errorf("consent URL %s does not carry the localhost redirect", browserRedactQuery(consent))
	}
	if !consentInBrowser(t, ctx, s) {
		t.Fatalf("a flow started on 127.0.0.1 with a localhost redirect failed: %q", browserText(t, ctx, "#error"))
	}
	if !browserCredentialAuthorized(t, px) {
		t.Error("the credential is not authorized")
	}
}
