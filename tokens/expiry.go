package tokens

import (
	"time"
)

// expirySkew: a token this close to its expiry is treated as expired,
// since it could lapse on its way to TikTok.
const expirySkew = 10 * time.Second

// usable reports whether r's access token can still be sent to TikTok.
func usable(r *Record, now time.Time) bool {
	return r.AccessToken != "" && (r.AccessExpiresAt.IsZero() || now.Add(skew(r)).Before(r.AccessExpiresAt))
}

// skew is expirySkew, capped at a quarter of the token's lifetime when the
// time it was issued is known: a token that lives only seconds (a simulator
// with a short access TTL) is otherwise expired the moment it arrives, and
// every refresh "fails" though TikTok answered.
func skew(r *Record) time.Duration {
	if issued := issuedAt(r); !issued.IsZero() {
		if life := r.AccessExpiresAt.Sub(issued); life > 0 && life/4 < expirySkew {
			return life / 4
		}
	}
	return expirySkew
}

// issuedAt is when rec's access token was obtained, as far as is known.
func issuedAt(rec *Record) time.Time {
	if rec.LastRefresh.OK && rec.LastRefresh.At.After(rec.AuthorizedAt) {
		return rec.LastRefresh.At
	}
	return rec.AuthorizedAt
}

// effectiveBefore is RefreshBefore, capped at half the token's lifetime
// when the time it was issued is known.
func (m *Manager) effectiveBefore(rec *Record) time.Duration {
	issued := rec.AuthorizedAt
	if rec.LastRefresh.OK && rec.LastRefresh.At.After(issued) {
		issued = rec.LastRefresh.At
	}
	before := m.refreshBefore
	if !issued.IsZero() {
		if life := rec.AccessExpiresAt.Sub(issued); life > 0 && before > life/2 {
			before = life / 2
		}
	}
	return before
}

// nextRefreshIn is how long until the next background refresh; ok is false
// when none is due (not authorized, long-lived, re-authorization needed).
func (s *Source) nextRefreshIn() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.rec
	if rec == nil || rec.ReauthRequired || !rec.Refreshable() {
		return 0, false
	}
	var at time.Time
	if s.lastErr != nil {
		at = s.nextAttempt
	} else {
		before := s.m.effectiveBefore(rec)
		at = rec.AccessExpiresAt.Add(-before - time.Duration(float64(before)*s.jitter))
	}
	return max(at.Sub(s.m.now()), 0), true
}

// pickJitter is the fraction of RefreshBefore, up to a tenth, by which a
// record is refreshed earlier still.
func (m *Manager) pickJitter() float64 {
	return m.fraction() / 10
}
