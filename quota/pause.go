package quota

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
)

// TikTok's rate-limit codes (TIKTOK_API.md): the only signal of a limit,
// sent with HTTP 200 and no Retry-After.
const (
	CodeAppLimit        = 40100 // the app's quota
	CodeEndpointLimit   = 40016 // an endpoint's quota
	CodeAdvertiserLimit = 40133 // an advertiser's QPS
	CodeTooManyRequests = 61000 // too many requests (taken as the app's)
)

// IsLimitCode reports TikTok's rate-limit codes.
func IsLimitCode(code int) bool {
	switch code {
	case CodeAppLimit, CodeEndpointLimit, CodeAdvertiserLimit, CodeTooManyRequests:
		return true
	}
	return false
}

// Scopes of a Pause.
const (
	ScopeApp        = "app"
	ScopeEndpoint   = "endpoint"
	ScopeAdvertiser = "advertiser"
)

// Pause is a budget TikTok's answers stopped.
type Pause struct {
	AppID string
	// Scope is ScopeApp, ScopeEndpoint or ScopeAdvertiser.
	Scope string
	// Target is the endpoint's path or the advertiser's id ("" for the app).
	Target string
	Until  time.Time
	// Reason says which limit: "per-minute limit (TikTok 40100)".
	Reason string
}

// String reads "app 7123 paused until 14:05:00 UTC: per-minute limit (TikTok 40100)".
func (p Pause) String() string {
	who := "app " + p.AppID
	if p.Target != "" {
		who = fmt.Sprintf("%s %s of app %s", p.Scope, p.Target, p.AppID)
	}
	return who + " " + pauseText(p.Until, p.Reason)
}

func pauseText(until time.Time, reason string) string {
	return fmt.Sprintf("paused until %s: %s", until.UTC().Format("15:04:05 UTC"), reason)
}

// The lengths TikTok prescribes after a limit: retry in the next second;
// pause 5 minutes after a per-minute limit; wait until 00:00 UTC after a
// per-day limit.
type severity int

const (
	sevSecond severity = iota
	sevMinute
	sevDay
)

// minutePause is the pause after a per-minute limit.
const minutePause = 5 * time.Minute

// repeatWindow is how soon a second limit escalates to the minute pause.
const repeatWindow = time.Minute

// classify reads the limit's length from TikTok's message. TikTok's
// messages are not documented word for word; they speak of QPS, QPM and
// QPD, or of requests per minute or per day.
func classify(message string) severity {
	m := strings.ToLower(message)
	switch {
	case strings.Contains(m, "day") || strings.Contains(m, "daily") || strings.Contains(m, "qpd"):
		return sevDay
	case strings.Contains(m, "minute") || strings.Contains(m, "qpm"):
		return sevMinute
	}
	return sevSecond
}

// pauseState is what was learnt of one app, endpoint or advertiser.
type pauseState struct {
	Pause
	learned time.Time // when the current pause was set
}

// Observe learns from TikTok's answer to req, a request sent at sent: after
// a rate-limit code (IsLimitCode) the app (40100, 61000), the endpoint
// (40016) or the advertisers (40133) are paused: until the next second; 5
// minutes when the message speaks of minutes or the limit repeats within a
// minute; until 00:00 UTC when it speaks of a day. An answer to a request
// sent before the current pause was learnt repeats nothing: it only
// lengthens the pause when it speaks of a longer limit.
// (A request sent at the very instant the pause was learnt counts as sent
// before it.) Other codes are
// ignored.
func (l *Limiter) Observe(req Request, sent time.Time, code int, message string) {
	app, ok := l.appOf[req.Credential]
	if !ok || !IsLimitCode(code) {
		return
	}
	l.metrics.RateLimitedBy(req.Credential, metrics.SourceTikTok)
	now := l.clock.Now()
	sev := classify(message)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prune(now)
	type target struct {
		scope, id string
		q         *queue
	}
	var targets []target
	switch {
	case code == CodeEndpointLimit && req.Path != "":
		targets = append(targets, target{ScopeEndpoint, req.Path, l.endpointLocked(app, req.Path, true)})
	case code == CodeAdvertiserLimit && len(req.Advertisers) > 0:
		for _, a := range req.Advertisers {
			targets = append(targets, target{ScopeAdvertiser, a, l.advertiserLocked(app, a)})
		}
	default:
		targets = append(targets, target{ScopeApp, "", l.apps[app]})
	}
	for _, t := range targets {
		key := t.scope + " " + app + " " + t.id
		st := l.pauses[key]
		until, reason := pauseFor(st, sev, sent, now, code)
		if until.IsZero() {
			continue
		}
		l.pauses[key] = &pauseState{Pause: Pause{AppID: app, Scope: t.scope, Target: t.id, Until: until, Reason: reason}, learned: now}
		t.q.pauseUntil(until, pauseText(until, reason))
		if p, ok := l.backend.(Pauser); ok && t.q.rate.Interval > 0 {
			p.Pause(t.q.key, until.Sub(now))
		}
		if t.scope == ScopeApp {
			l.metrics.AppPaused(app, until)
			l.clock.AfterFunc(until.Sub(now), func() { l.pauseEnded(key, until) })
		}
	}
}

// pauseFor is the pause a limit of sev calls for given the state st (nil:
// none yet), or zero when it teaches nothing new.
func pauseFor(st *pauseState, sev severity, sent, now time.Time, code int) (time.Time, string) {
	stale := st != nil && !sent.After(st.learned)
	if sev == sevSecond && st != nil && !stale && now.Sub(st.learned) < repeatWindow {
		return now.Add(minutePause), fmt.Sprintf("limits repeated within a minute (TikTok %d)", code)
	}
	var until time.Time
	var reason string
	switch sev {
	case sevDay:
		y, m, d := now.UTC().Date()
		until, reason = time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC), "per-day limit"
	case sevMinute:
		until, reason = now.Add(minutePause), "per-minute limit"
	default:
		until, reason = now.Truncate(time.Second).Add(time.Second), "per-second limit"
	}
	if stale && (sev == sevSecond || !until.After(st.Until)) {
		return time.Time{}, ""
	}
	return until, fmt.Sprintf("%s (TikTok %d)", reason, code)
}

// pauseEnded removes the app's pause gauge unless a later pause replaced
// the one ending at until.
func (l *Limiter) pauseEnded(key string, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.pauses[key]; st != nil && st.Until.Equal(until) {
		l.metrics.AppPaused(st.AppID, time.Time{})
	}
}

// prune forgets pauses that ended and can no longer escalate (l.mu held).
func (l *Limiter) prune(now time.Time) {
	for key, st := range l.pauses {
		if now.After(st.Until) && now.Sub(st.learned) >= repeatWindow {
			delete(l.pauses, key)
		}
	}
}

// Pauses lists the pauses in force, by app, scope and target.
func (l *Limiter) Pauses() []Pause {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Pause
	for _, st := range l.pauses {
		if now.Before(st.Until) {
			out = append(out, st.Pause)
		}
	}
	slices.SortFunc(out, func(a, b Pause) int {
		return cmp.Or(cmp.Compare(a.AppID, b.AppID), cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.Target, b.Target))
	})
	return out
}
