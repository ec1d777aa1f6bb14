package tokens

import (
	"context"
	"errors"
	"time"
)

// Backoff bounds. Once the token expired, retries come at least every
// expiredRetryMax, so service returns within seconds of TikTok.
const (
	backoffMin      = time.Second
	backoffMax      = 5 * time.Minute
	expiredRetryMax = 10 * time.Second
	// maxErrorLen bounds the refresh error kept in the record.
	maxErrorLen = 300
)

func (s *Source) inBackoff(now time.Time) bool {
	return s.lastErr != nil && now.Before(s.nextAttempt)
}

func (s *Source) refreshErrorLocked(now time.Time) error {
	retry := s.nextAttempt.Sub(now)
	if retry < 0 {
		retry = 0
	}
	err := s.lastErr
	if err == nil {
		err = errors.New("no usable token after refresh")
	}
	return &RefreshError{Credential: s.cred.Name, RetryAfter: retry, Err: err}
}

// fail records a failed refresh of the token used and schedules the next
// attempt. It returns err for the flight's callers.
func (s *Source) fail(ctx context.Context, used string, err error) error {
	name := s.cred.Name
	now := s.m.now()
	s.mu.Lock()
	if s.rec == nil || s.rec.AccessToken != used {
		// The grant changed meanwhile (Authorize); its schedule is fresh.
		s.mu.Unlock()
		return err
	}
	s.failures++
	delay := s.m.backoff(s.failures)
	if exp := s.rec.AccessExpiresAt; !exp.IsZero() {
		left := exp.Sub(now) - skew(s.rec)
		switch {
		case left <= 0:
			// Capped, still jittered, so replicas and credentials do not
			// retry TikTok's token endpoint in lockstep.
			delay = min(delay, expiredRetryMax/2+s.m.spread(expiredRetryMax/2))
		case delay > left:
			// Try again as the token lapses rather than leave a gap.
			delay = left
		}
	}
	if s.pending != nil {
		// A grant lives only in memory: storing it again asks nothing of
		// TikTok, and every moment it waits is one a crash would lose it.
		delay = min(delay, pendingRetryMax/2+s.m.spread(pendingRetryMax/2))
	}
	s.nextAttempt = now.Add(delay)
	s.lastErr = err
	failures := s.failures
	expires := s.rec.AccessExpiresAt
	s.mu.Unlock()
	s.poke()
	s.m.log.Warn("token refresh failed", "credential", name, "error", err.Error(),
		"attempt", failures, "retry_in", delay.String(), "access_expires_at", expires)

	msg := err.Error()
	if len(msg) > maxErrorLen {
		msg = msg[:maxErrorLen]
	}
	_, cerr := s.commit(ctx, func(latest *Record) (*Record, error) {
		if latest == nil || latest.AccessToken != used {
			return nil, errSuperseded
		}
		r := latest.Clone()
		r.LastRefresh = RefreshResult{At: now, OK: false, Error: msg}
		return r, nil
	})
	if cerr != nil && !errors.Is(cerr, errSuperseded) {
		s.m.log.Warn("storing the refresh failure failed", "credential", name, "error", cerr.Error())
	}
	return err
}

// elsewhere schedules a re-read shortly instead of a refresh: another
// replica holds the refresh lease and stores its result. Nothing is
// persisted and no failure counted, so waiting replicas do not churn the
// shared record the lease holder must write.
func (s *Source) elsewhere(used string) error {
	s.mu.Lock()
	if s.rec != nil && s.rec.AccessToken == used {
		s.nextAttempt = s.m.now().Add(time.Second/2 + s.m.spread(time.Second))
		s.lastErr = errRefreshedElsewhere
	}
	s.mu.Unlock()
	s.poke()
	return errRefreshedElsewhere
}

// backoff is the jittered delay after n consecutive failures: 1s, 2s, 4s …
// up to 5m, each drawn from its upper half so callers do not synchronise.
func (m *Manager) backoff(n int) time.Duration {
	d := backoffMax
	if n < 20 {
		d = min(backoffMin<<(n-1), backoffMax)
	}
	return d/2 + m.spread(d/2)
}

// spread is a random duration in [0, d), drawn from Options.Rand.
func (m *Manager) spread(d time.Duration) time.Duration {
	return time.Duration(m.fraction() * float64(d))
}

// fraction is Options.Rand, clamped so a test's Rand returning 1 (or
// beyond) cannot push a delay past its range.
func (m *Manager) fraction() float64 {
	return min(max(m.rand(), 0), 1)
}
