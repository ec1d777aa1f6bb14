package setup

import (
	stdhtml "html"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// pageHarness serves the setup page over four credentials in the states an
// operator meets: revoked by TikTok, working with a failing breaker, never
// authorized, and long-lived and working (the default, with configured
// advertisers).
func pageHarness(t *testing.T) (*harness, response) {
	t.Helper()
	h := newHarness(t, func(o *Options) {
		o.Breaker = func(name string) BreakerInfo {
			if name == "main" {
				return BreakerInfo{State: "open", Until: time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC), LastError: "HTTP 503 from TikTok"}
			}
			return BreakerInfo{State: "closed"}
		}
		o.Credentials = append(o.Credentials,
			Credential{Name: "old", Description: "Revoked one", App: testApp("old")},
			Credential{Name: "agency", Description: "Long-lived", App: testApp("agency"), Default: true,
				AdvertiserIDs: []string{"7099999999999999999", "7011111111111111111"}},
		)
	})
	now := h.clock.Now()
	revoked := "TikTok refused the refresh token (code 40107: refresh token is invalid)"
	h.tok.statuses = map[string]tokens.Status{
		"main": {
			Name: "main", Authorized: true, Refreshable: true,
			Advertisers:      []tokens.Advertiser{{ID: "7012345678901234567", Name: "Acme Shoes"}},
			Scopes:           []string{"4", "100"},
			AccessExpiresAt:  now.Add(24*time.Hour - time.Minute),
			RefreshExpiresAt: now.Add(365 * 24 * time.Hour),
			AuthorizedAt:     now.Add(-time.Hour),
			LastRefresh:      tokens.RefreshResult{At: now.Add(-5 * time.Minute), OK: true},
		},
		// The card: TikTok revoked the grant; the stored expiries
		// still lie 29 minutes and 364 days ahead.
		"old": {
			Name: "old", Authorized: true, Refreshable: true, ReauthRequired: true, ReauthReason: revoked,
			Advertisers:      []tokens.Advertiser{{ID: "7033333333333333333"}},
			AccessExpiresAt:  now.Add(29 * time.Minute),
			RefreshExpiresAt: now.Add(364*24*time.Hour + 23*time.Hour),
			LastRefresh:      tokens.RefreshResult{At: now.Add(-2 * time.Minute), OK: false, Error: revoked},
		},
		"agency": {
			Name: "agency", Authorized: true, Scopes: []string{"1", "999"},
			Advertisers:  []tokens.Advertiser{{ID: "7099999999999999999", Name: "Agency One"}, {ID: "7088888888888888888"}},
			AuthorizedAt: now.Add(-3 * 24 * time.Hour),
		},
	}
	r := h.do(t, "GET", "/authorize", nil)
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	checkHTML(t, r.body)
	return h, r
}

// card returns the HTML of one credential's card.
func card(t *testing.T, page, name string) string {
	t.Helper()
	start := strings.Index(page, `<section class="card`)
	for start >= 0 {
		end := strings.Index(page[start:], "</section>")
		c := page[start : start+end]
		if strings.Contains(c, `id="credential-`+name+`"`) {
			return c
		}
		next := strings.Index(page[start+end:], `<section class="card`)
		if next < 0 {
			break
		}
		start += end + next
	}
	t.Fatalf("no card for %s", name)
	return ""
}

// text strips tags, so assertions read what the operator reads.
func text(page string) string {
	return strings.Join(strings.Fields(stdhtml.UnescapeString(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(page, " "))), " ")
}

// One truth per credential: a revoked grant shows neither token as usable,
// and TikTok's reason appears once.
func TestPageRevokedGrantShowsTokensUnusable(t *testing.T) {
	_, r := pageHarness(t)
	old := text(card(t, r.body, "old"))
	mustContain(t, "revoked card", old, "Re-authorization needed",
		"Refresh token unusable: re-authorize to get a new one",
		"Access token not renewable: unusable at 12:29 UTC at the latest, in 29m")
	for _, lie := range []string{"in 364d", "expires 12:29", "Authorized 12:", "succeeded"} {
		if strings.Contains(old, lie) {
			t.Errorf("revoked card shows %q as if the token worked: %s", lie, old)
		}
	}
	if n := strings.Count(old, "40107"); n != 1 {
		t.Errorf("revoked card shows TikTok's 40107 reason %d times, want once: %s", n, old)
	}
	if !strings.Contains(old, "Last refresh failed 11:58 UTC, 2m ago") {
		t.Errorf("revoked card: last refresh should say when it failed, without repeating the reason: %s", old)
	}
	if !strings.Contains(card(t, r.body, "old"), `class="button" id="authorize-old"`) {
		t.Error("revoked card: Re-authorize is not the primary button")
	}
}

// At a glance: the summary, the cards needing action first, absolute times
// beside relative ones, long-lived named as such, scopes named with their
// ids, the breaker explained, and no green badge on a card never used.
func TestPageAtAGlance(t *testing.T) {
	_, r := pageHarness(t)
	mustContain(t, "page", r.body, `<p class="summary attention" id="summary">4 credentials: 3 need attention</p>`)

	order := regexp.MustCompile(`id="credential-([a-z]+)"`).FindAllStringSubmatch(r.body, -1)
	var names []string
	for _, m := range order {
		names = append(names, m[1])
	}
	if got := strings.Join(names, ","); got != "main,shop,old,agency" {
		// Config order is main, shop, old, agency; all but agency need attention.
		t.Errorf("card order %s, want the ones needing attention first in config order: main,shop,old,agency", got)
	}

	main := text(card(t, r.body, "main"))
	mustContain(t, "main card", main,
		"TikTok failing",
		"TikTok failing: requests are paused until 12:05 UTC (90006); last error: HTTP 503 from TikTok.",
		"Access token expires 2 Mar 11:59 UTC, in 23h 59m",
		"Refresh token expires 1 Mar 2027 12:00 UTC, in 365d 0h",
		"4 · Reporting", "100 · Read Ad Account Information",
		"Last refresh succeeded 11:55 UTC, 5m ago")

	agency := text(card(t, r.body, "agency"))
	mustContain(t, "agency card", agency, "Authorized", "Access token long-lived (no expiry)", "1 · Ad Account Management", "999")
	for _, never := range []string{"never", "Refresh token", "Last refresh"} {
		if strings.Contains(agency, never) {
			t.Errorf("long-lived card shows %q: %s", never, agency)
		}
	}

	shop := card(t, r.body, "shop")
	mustContain(t, "never-authorized card", text(shop), "Not authorized", "fail with 90003 until it is authorized")
	if strings.Contains(shop, "badge ok") || strings.Contains(shop, "breaker") {
		t.Errorf("a credential never used shows a green or breaker badge: %s", shop)
	}
	if !strings.Contains(card(t, r.body, "agency"), `class="button secondary" id="authorize-agency"`) {
		t.Error("a working credential's Re-authorize should be secondary")
	}
}

// Routing visible: where each advertiser comes from, and which credential
// is the default, on the page and in /api/credentials.
func TestPageAndAPIShowRouting(t *testing.T) {
	h, r := pageHarness(t)
	agency := text(card(t, r.body, "agency"))
	mustContain(t, "agency card", agency, "default",
		"Default credential: requests that name no credential and no known advertiser use it",
		"7099999999999999999 · Agency One from config, TikTok's listing",
		"7088888888888888888 from grant",
		"7011111111111111111 from config")
	if strings.Contains(text(card(t, r.body, "main")), "Default credential") {
		t.Error("main is shown as the default credential")
	}

	got := decodeJSON[[]CredentialState](t, h.do(t, "GET", "/api/credentials", nil).body)
	byName := map[string]CredentialState{}
	for _, c := range got {
		byName[c.Name] = c
	}
	ag := byName["agency"]
	if !ag.Default || byName["main"].Default {
		t.Errorf("default: agency %v main %v, want only agency", ag.Default, byName["main"].Default)
	}
	want := []AdvertiserRoute{
		{ID: "7099999999999999999", Name: "Agency One", Sources: []string{SourceConfig, SourceListing}},
		{ID: "7088888888888888888", Sources: []string{SourceGrant}},
		{ID: "7011111111111111111", Sources: []string{SourceConfig}},
	}
	if len(ag.Routes) != len(want) {
		t.Fatalf("agency routes %+v, want %+v", ag.Routes, want)
	}
	for i := range want {
		if ag.Routes[i].ID != want[i].ID || ag.Routes[i].Name != want[i].Name || strings.Join(ag.Routes[i].Sources, ",") != strings.Join(want[i].Sources, ",") {
			t.Errorf("route %d = %+v, want %+v", i, ag.Routes[i], want[i])
		}
	}
	for name, state := range map[string]string{"main": StateTikTokFailing, "shop": StateNotAuthorized, "old": StateReauthRequired, "agency": StateAuthorized} {
		if byName[name].State != state {
			t.Errorf("%s state %q, want %q", name, byName[name].State, state)
		}
	}
	if m := byName["main"]; m.BreakerError != "HTTP 503 from TikTok" || m.BreakerUntil.IsZero() {
		t.Errorf("main breaker %+v", m)
	}
	if s := byName["agency"].NamedScopes; len(s) != 2 || s[0] != (Scope{ID: "1", Name: "Ad Account Management"}) || s[1] != (Scope{ID: "999"}) {
		t.Errorf("agency named scopes %+v", s)
	}
}

// The page refreshes itself: the only script is the inlined refresh script,
// allowed by its hash, and it may fetch this origin only.
func TestPageRefreshScriptAndCSP(t *testing.T) {
	_, r := pageHarness(t)
	csp := r.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "style-src " + cspHash(styleSheet), "script-src " + cspHash(refreshScript), "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, loose := range []string{"unsafe-inline", "unsafe-eval", "*"} {
		if strings.Contains(csp, loose) {
			t.Errorf("CSP %q allows %s", csp, loose)
		}
	}
	if !strings.Contains(r.body, "<style>"+styleSheet+"</style>") || !strings.Contains(r.body, "<script>"+refreshScript+"</script>") {
		t.Errorf("stylesheet or script not inlined verbatim, so its CSP hash would not match")
	}
	if n := strings.Count(r.body, "<script"); n != 1 {
		t.Errorf("%d script elements, want only the refresh script", n)
	}
	mustContain(t, "page", r.body, `id="content" data-refresh-seconds=`)
	for _, line := range strings.Split(r.body, "\n") {
		if (strings.Contains(line, "http://") || strings.Contains(line, "https://")) && !strings.Contains(line, "127.0.0.1:8080") {
			t.Errorf("page references another origin: %s", line)
		}
	}
}

func TestSummaryAndClock(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		views []credView
		want  string
	}{
		{[]credView{{}}, "1 credential: working"},
		{[]credView{{}, {}}, "2 credentials: all working"},
		{[]credView{{Attention: true}}, "1 credential: 1 needs attention"},
		{[]credView{{Attention: true}, {}, {Attention: true}}, "3 credentials: 2 need attention"},
	} {
		if got := summary(tt.views); got != tt.want {
			t.Errorf("summary = %q, want %q", got, tt.want)
		}
	}
	for at, want := range map[time.Time]string{
		now.Add(2 * time.Hour):        "14:00 UTC",
		now.Add(13 * time.Hour):       "2 Mar 01:00 UTC",
		now.Add(400 * 24 * time.Hour): "5 Apr 2027 12:00 UTC",
	} {
		if got := clock(now, at); got != want {
			t.Errorf("clock(%v) = %q, want %q", at, got, want)
		}
	}
	for in, want := range map[string]string{
		"Access was not granted (access_denied): User denied.": "Access was not granted (access_denied): User denied.",
		"TikTok says no..":   "TikTok says no.",
		"TikTok says no. . ": "TikTok says no.",
		"clipped…":           "clipped…",
		"no stop":            "no stop.",
		"(code 40107: Refresh token is invalid.)": "(code 40107: Refresh token is invalid.)",
	} {
		if got := sentence(in); got != want {
			t.Errorf("sentence(%q) = %q, want %q", in, got, want)
		}
	}
}

// A token TikTok rejected is unusable whatever its expiry says; without the
// rejection, a grant whose refresh is gone keeps serving it until then.
func TestAccessLineRejectedIsUnusable(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	base := tokens.Status{Authorized: true, Refreshable: true, AccessExpiresAt: now.Add(29 * time.Minute)}
	for _, tc := range []struct {
		name      string
		rejected  bool
		reauth    bool
		wantText  string
		wantClass string
	}{
		{"rejected, re-authorization needed", true, true, "unusable: TikTok no longer accepts it", "bad"},
		{"rejected, refresh still possible", true, false, "unusable: TikTok no longer accepts it", "bad"},
		{"refresh gone, token not rejected", false, true, "not renewable: unusable at 12:29 UTC at the latest, in 29m", "warn"},
		{"working", false, false, "expires 12:29 UTC, in 29m", ""},
	} {
		s := base
		s.AccessRejected, s.ReauthRequired = tc.rejected, tc.reauth
		if got := accessLine(now, s); got.Text != tc.wantText || got.Class != tc.wantClass {
			t.Errorf("%s: accessLine = %+v, want %q (%q)", tc.name, got, tc.wantText, tc.wantClass)
		}
	}
}
