package setup

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// The setup page says each fact about a credential once, and never shows a
// token the proxy can no longer use as if it worked.

// credView is one credential's card; every field is display-ready.
type credView struct {
	Name, Description, Kind string
	Default                 bool
	// Attention is set when the operator has something to do or to know.
	Attention              bool
	Badge, BadgeClass      string
	Alert, AlertClass      string
	Advertisers            []advView
	Scopes                 []Scope
	Access, Refresh        tokenLine
	LastRefresh            string
	LastRefreshFailed      bool
	AuthorizedAt           string
	ButtonText             string
	ButtonPrimary, HasRows bool
}

// tokenLine is one token's row; an empty Text hides the row.
type tokenLine struct {
	Text  string
	Class string // "" normal, "bad" unusable, "warn" soon unusable
}

type advView struct {
	ID, Name, Sources string
}

// sourceText is how the page names an advertiser's source.
var sourceText = map[string]string{
	SourceConfig:  "config",
	SourceGrant:   "grant",
	SourceListing: "TikTok's listing",
}

// newCredView builds the card of cs at now.
func newCredView(now time.Time, cs CredentialState) credView {
	s := cs.Status
	v := credView{
		Name: cs.Name, Description: cs.Description, Kind: cs.Kind, Default: cs.Default,
		Scopes: cs.NamedScopes, HasRows: s.Authorized,
	}
	for _, r := range cs.Routes {
		src := make([]string, len(r.Sources))
		for i, x := range r.Sources {
			src[i] = sourceText[x]
		}
		v.Advertisers = append(v.Advertisers, advView{ID: r.ID, Name: r.Name, Sources: strings.Join(src, ", ")})
	}
	switch cs.State {
	case StateReauthRequired:
		v.Badge, v.BadgeClass = "Re-authorization needed", "bad"
		v.Alert, v.AlertClass = "TikTok no longer accepts this grant", "bad"
		if s.ReauthReason != "" {
			v.Alert += ": " + s.ReauthReason
		}
		v.Alert = sentence(v.Alert) + " Requests using it fail until it is re-authorized."
	case StateNotAuthorized:
		v.Badge, v.BadgeClass = "Not authorized", "warn"
		v.Alert, v.AlertClass = "Requests using this credential fail with 90003 until it is authorized.", "warn"
	case StateTikTokFailing:
		v.Badge, v.BadgeClass = "TikTok failing", "bad"
		v.Alert, v.AlertClass = breakerText(now, cs), "bad"
	case StateRefreshFailing:
		v.Badge, v.BadgeClass = "Refresh failing", "warn"
	default:
		v.Badge, v.BadgeClass = "Authorized", "ok"
	}
	v.Attention = cs.State != StateAuthorized
	v.Access, v.Refresh = accessLine(now, s), refreshLine(now, s)
	if s.Authorized && (s.Refreshable || !s.LastRefresh.At.IsZero()) {
		v.LastRefresh, v.LastRefreshFailed = lastRefresh(now, s)
	}
	if !s.AuthorizedAt.IsZero() {
		v.AuthorizedAt = when(now, s.AuthorizedAt)
	}
	v.ButtonText, v.ButtonPrimary = "Authorize", true
	if s.Authorized {
		v.ButtonText, v.ButtonPrimary = "Re-authorize", v.Attention
	}
	return v
}

// breakerText explains an open breaker: TikTok failed repeatedly, so the
// proxy answers 90006 at once instead of waiting on TikTok.
func breakerText(now time.Time, cs CredentialState) string {
	msg := "TikTok failing: requests are paused (90006)"
	if !cs.BreakerUntil.IsZero() && cs.BreakerUntil.After(now) {
		msg = "TikTok failing: requests are paused until " + clock(now, cs.BreakerUntil) + " (90006)"
	}
	if cs.BreakerState == "half-open" {
		msg = "TikTok failing: the proxy is letting a few requests through to see whether TikTok recovered"
	}
	if cs.BreakerError != "" {
		msg += "; last error: " + cs.BreakerError
	}
	return sentence(msg)
}

// accessLine is the access token's row: when it expires, or why the proxy
// can no longer use it.
func accessLine(now time.Time, s tokens.Status) tokenLine {
	switch {
	case !s.Authorized:
		return tokenLine{}
	case s.AccessRejected || (s.ReauthRequired && (s.AccessExpiresAt.IsZero() || !s.AccessExpiresAt.After(now))):
		return tokenLine{Text: "unusable: TikTok no longer accepts it", Class: "bad"}
	case s.ReauthRequired:
		// The proxy keeps serving a still-valid access token whose refresh
		// token is gone, unless TikTok rejected it: either way it is over
		// at its expiry, and cannot be renewed.
		return tokenLine{Text: "not renewable: unusable at " + clock(now, s.AccessExpiresAt) + " at the latest, " + until(now, s.AccessExpiresAt), Class: "warn"}
	case s.AccessExpiresAt.IsZero():
		return tokenLine{Text: "long-lived (no expiry)"}
	case !s.AccessExpiresAt.After(now):
		return tokenLine{Text: "expired " + clock(now, s.AccessExpiresAt) + ", " + ago(now, s.AccessExpiresAt) + "; renewed on the next request", Class: "warn"}
	}
	return tokenLine{Text: "expires " + clock(now, s.AccessExpiresAt) + ", " + until(now, s.AccessExpiresAt)}
}

// refreshLine is the refresh token's row; a grant without one has no row,
// since its access token's row already says it is long-lived.
func refreshLine(now time.Time, s tokens.Status) tokenLine {
	switch {
	case !s.Authorized || !s.Refreshable:
		return tokenLine{}
	case s.ReauthRequired:
		return tokenLine{Text: "unusable: re-authorize to get a new one", Class: "bad"}
	case s.RefreshExpiresAt.IsZero():
		return tokenLine{Text: "no expiry given by TikTok"}
	case !s.RefreshExpiresAt.After(now):
		return tokenLine{Text: "expired " + clock(now, s.RefreshExpiresAt) + ", " + ago(now, s.RefreshExpiresAt), Class: "bad"}
	case s.RefreshExpiresAt.Sub(now) < 14*24*time.Hour:
		return tokenLine{Text: "expires " + clock(now, s.RefreshExpiresAt) + ", " + until(now, s.RefreshExpiresAt) + ": re-authorize before then", Class: "warn"}
	}
	return tokenLine{Text: "expires " + clock(now, s.RefreshExpiresAt) + ", " + until(now, s.RefreshExpiresAt)}
}

// lastRefresh is the last refresh's row. A failure whose error is the
// re-authorization reason does not repeat it: the alert already says it.
func lastRefresh(now time.Time, s tokens.Status) (text string, failed bool) {
	r := s.LastRefresh
	switch {
	case r.At.IsZero():
		return "none yet", false
	case r.OK:
		return "succeeded " + when(now, r.At), false
	}
	msg := when(now, r.At)
	if r.Error != "" && r.Error != s.ReauthReason {
		msg += ": " + r.Error
	}
	return msg, true
}

// sortViews puts the cards needing attention first, keeping config order
// otherwise.
func sortViews(views []credView) {
	slices.SortStableFunc(views, func(a, b credView) int {
		return cmp.Compare(b2i(b.Attention), b2i(a.Attention))
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// summary is the line above the cards: "3 credentials: 1 needs attention".
func summary(views []credView) string {
	n, attention := len(views), 0
	for _, v := range views {
		if v.Attention {
			attention++
		}
	}
	noun := "credentials"
	if n == 1 {
		noun = "credential"
	}
	switch {
	case attention == 0 && n == 1:
		return "1 credential: working"
	case attention == 0:
		return fmt.Sprintf("%d %s: all working", n, noun)
	case attention == 1:
		return fmt.Sprintf("%d %s: 1 needs attention", n, noun)
	}
	return fmt.Sprintf("%d %s: %d need attention", n, noun, attention)
}

// sentence ends msg with exactly one full stop, whatever TikTok's or a
// caller's text already ended with.
func sentence(msg string) string {
	msg = strings.TrimRight(strings.TrimSpace(msg), ". ")
	for _, end := range []string{"…", "?", "!", ".)", ".”"} {
		if strings.HasSuffix(msg, end) {
			return msg
		}
	}
	return msg + "."
}

// clock is t as a wall-clock time in UTC, with the date when it is not
// today: "14:05 UTC", "3 Mar 14:05 UTC", "3 Mar 2027 14:05 UTC".
func clock(now, t time.Time) string {
	t, now = t.UTC(), now.UTC()
	switch {
	case t.YearDay() == now.YearDay() && t.Year() == now.Year():
		return t.Format("15:04 UTC")
	case t.Year() == now.Year():
		return t.Format("2 Jan 15:04 UTC")
	}
	return t.Format("2 Jan 2006 15:04 UTC")
}

// when is a past moment, absolute and relative: "14:05 UTC, 5m ago".
func when(now, t time.Time) string {
	return clock(now, t) + ", " + ago(now, t)
}

// until says when t comes: "in 23h 59m", or "5m ago" once past.
func until(now, t time.Time) string {
	d := t.Sub(now)
	if d <= 0 {
		return ago(now, t)
	}
	if d < time.Minute {
		return "in less than a minute"
	}
	return "in " + span(d)
}

// ago says how long ago t was: "5m ago".
func ago(now, t time.Time) string {
	d := now.Sub(t)
	if d < time.Minute {
		return "just now"
	}
	return span(d) + " ago"
}

// span renders d (at least a minute) to the minute: "364d 23h", "47h 59m",
// "5m". Days start at 48h so a daily token reads "24h 0m".
func span(d time.Duration) string {
	const day = 24 * time.Hour
	days, rest := d/day, d%day
	hours, mins := rest/time.Hour, rest%time.Hour/time.Minute
	if days < 2 {
		days, hours = 0, d/time.Hour
	}
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	}
	return fmt.Sprintf("%dm", mins)
}
