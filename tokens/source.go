package tokens

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

const (
	// maxCommitTries bounds the compare-and-swap retries of one change.
	maxCommitTries = 5
	// recheckEvery: a credential that cannot serve re-reads the store at
	// most this often, to notice a grant another process stored.
	recheckEvery = time.Second
	// recheckTimeout bounds that re-read: /authorize and /api/credentials
	// re-read every such credential, and must answer while the store hangs.
	recheckTimeout = 2 * time.Second
)

// Source is one credential's token source. It implements
// oauth2.TokenSource; it is safe for concurrent use.
type Source struct {
	m    *Manager
	cred Credential

	mu          sync.Mutex
	rec         *Record       // nil: not authorized
	jitter      float64       // fraction of RefreshBefore, up to 0.1, by which this record is refreshed earlier
	failures    int           // consecutive failed refreshes
	nextAttempt time.Time     // no refresh before this after a failure
	lastErr     error         // the latest refresh failure, shared with callers during backoff
	pending     *pendingGrant // a grant TikTok issued that is not yet stored
	flight      *flight       // the refresh in progress, joined by every caller
	validation  *validation   // the check of a rejected long-lived token in progress
	checked     string        // the long-lived token checked most recently
	checkedAt   time.Time     // when that check ended
	rejections  []time.Time   // rejections of current refreshable tokens within rejectWindow
	rejected    string        // the access token TikTok refused most recently
	lastRecheck time.Time     // when recheckStore last read the store
	wake        chan struct{} // tells the refresh loop the schedule changed
	changed     chan struct{} // tells the change loop the stored record changed

	// waiting counts Token and Rejected calls blocked on a refresh or a
	// validation in flight, so tests can prove concurrent callers really
	// share one.
	waiting atomic.Int64
}

// Token implements oauth2.TokenSource. TikTok expects the token in the
// Access-Token header, not as a Bearer Authorization header, so use
// AccessToken of the result rather than oauth2.Transport.
func (s *Source) Token() (*oauth2.Token, error) {
	tok, err := s.accessToken(context.Background())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	var exp time.Time
	if s.rec != nil && s.rec.AccessToken == tok {
		exp = s.rec.AccessExpiresAt
	}
	s.mu.Unlock()
	return &oauth2.Token{AccessToken: tok, Expiry: exp}, nil
}

func (s *Source) accessToken(ctx context.Context) (string, error) {
	return s.serve(ctx, true)
}

// serve is accessToken; mayRecheck allows one re-read of the store when
// the credential cannot serve, so the call that adopts a newer record
// serves it without recursing further.
func (s *Source) serve(ctx context.Context, mayRecheck bool) (string, error) {
	s.mu.Lock()
	rec := s.rec
	now := s.m.now()
	switch {
	case rec == nil:
		s.mu.Unlock()
		if mayRecheck && s.recheckStore(ctx) {
			return s.serve(ctx, false)
		}
		return "", fmt.Errorf("%w: %q", ErrNotAuthorized, s.cred.Name)
	case usable(rec, now) && !rec.AccessRejected:
		// With ReauthRequired too, this is a grant whose refresh token is
		// gone (expired, revoked, or spent by a refresh whose answer a crash
		// lost) while TikTok still accepts the access token: scripts keep
		// working until it expires, and /authorize, status and the gauge ask
		// for re-authorization meanwhile.
		s.mu.Unlock()
		return rec.AccessToken, nil
	case rec.ReauthRequired:
		s.mu.Unlock()
		if mayRecheck && s.recheckStore(ctx) {
			return s.serve(ctx, false)
		}
		return "", &ReauthError{Credential: s.cred.Name, Reason: rec.ReauthReason}
	case !rec.Refreshable():
		s.mu.Unlock()
		return "", s.markReauth(ctx, rec.AccessToken, "the access token expired and there is no refresh token", false)
	case s.inBackoff(now):
		err := s.refreshErrorLocked(now)
		s.mu.Unlock()
		return "", err
	}
	f := s.startFlightLocked()
	s.mu.Unlock()
	if !s.await(ctx, f.done) {
		// For this caller the refresh of its expired token failed: it
		// did not end in time (TikTok's token endpoint hangs). The
		// refresh goes on for the next caller, so it may ask again soon.
		return "", &RefreshError{Credential: s.cred.Name, RetryAfter: time.Second,
			Err: fmt.Errorf("tokens: waiting for the refresh of %q: %w", s.cred.Name, ctx.Err())}
	}
	if f.err != nil {
		var re *ReauthError
		if errors.As(f.err, &re) {
			return "", re
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return "", s.refreshErrorLocked(s.m.now())
	}
	if f.rec == nil || f.rec.ReauthRequired || !usable(f.rec, s.m.now()) {
		// Another writer replaced the record while we refreshed; ask again
		// once, without starting a second refresh.
		s.mu.Lock()
		defer s.mu.Unlock()
		rec := s.rec
		switch {
		case rec == nil:
			return "", fmt.Errorf("%w: %q", ErrNotAuthorized, s.cred.Name)
		case usable(rec, s.m.now()) && !rec.AccessRejected:
			return rec.AccessToken, nil
		case rec.ReauthRequired:
			return "", &ReauthError{Credential: s.cred.Name, Reason: rec.ReauthReason}
		}
		return "", s.refreshErrorLocked(s.m.now())
	}
	return f.rec.AccessToken, nil
}

// recheckStore re-reads the store for a credential that cannot serve
// (never authorized, or needing re-authorization): another process, such as
// the authorize command, may have stored a new grant since. At most one
// read per recheckEvery per credential, so a script retrying in a loop does
// not turn into store traffic; for a credential that can serve it returns
// at once without reading. It reports whether a newer record was adopted.
// The read takes at most recheckTimeout.
func (s *Source) recheckStore(ctx context.Context) bool {
	s.mu.Lock()
	now := s.m.now()
	if (s.rec != nil && !s.rec.ReauthRequired) || (!s.lastRecheck.IsZero() && now.Before(s.lastRecheck.Add(recheckEvery))) {
		s.mu.Unlock()
		return false
	}
	s.lastRecheck = now
	var gen uint64
	if s.rec != nil {
		gen = s.rec.Generation
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, recheckTimeout)
	defer cancel()
	rec, err := s.reload(ctx)
	if err != nil {
		s.m.log.Debug("re-reading the store failed", "credential", s.cred.Name, "error", err.Error())
		return false
	}
	if rec == nil || rec.Generation <= gen {
		return false
	}
	s.m.log.Info("adopted a grant another process stored", "credential", s.cred.Name)
	return true
}

// await waits for done, a refresh or a check in flight, unless ctx ends
// first (false); the wait counts in waiting meanwhile.
func (s *Source) await(ctx context.Context, done <-chan struct{}) bool {
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// commit applies mutate to the newest stored record and stores the result
// with a compare-and-swap, re-reading and re-applying on conflict, so a
// change never overwrites a newer record it has not seen. mutate may return
// errSuperseded or errUnchanged to store nothing.
func (s *Source) commit(ctx context.Context, mutate func(latest *Record) (*Record, error)) (*Record, error) {
	cur := s.current()
	for range maxCommitTries {
		next, err := mutate(cur)
		if err != nil {
			return nil, err
		}
		var expect uint64
		if cur != nil {
			expect = cur.Generation
		}
		next.Credential = s.cred.Name
		err = s.m.store.Put(ctx, next, expect)
		if err == nil {
			s.adopt(next)
			return next.Clone(), nil
		}
		if !errors.Is(err, ErrConflict) {
			s.m.metrics.StoreWriteFailed()
			return nil, err
		}
		if cur, err = s.reload(ctx); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("tokens: credential %q changed %d times while being stored: %w", s.cred.Name, maxCommitTries, ErrConflict)
}

// reload reads the stored record, adopts it and returns it (nil: none).
func (s *Source) reload(ctx context.Context) (*Record, error) {
	rec, err := s.m.store.Get(ctx, s.cred.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		rec = nil
	case err != nil:
		return nil, fmt.Errorf("tokens: reading credential %q: %w", s.cred.Name, err)
	}
	s.adopt(rec)
	return rec.Clone(), nil
}

// adopt makes rec the in-memory record when it is newer. A nil rec means
// the store holds none.
func (s *Source) adopt(rec *Record) {
	s.mu.Lock()
	old := s.rec
	switch {
	case rec == nil && old == nil:
		s.mu.Unlock()
		return
	case rec != nil && old != nil && rec.Generation <= old.Generation:
		s.mu.Unlock()
		return
	}
	s.rec = rec.Clone()
	if rec == nil || old == nil || !rec.AuthorizedAt.Equal(old.AuthorizedAt) {
		// A new grant (authorized here or by another process) answers for
		// none of the old one's rejections.
		s.rejections = nil
	}
	reschedule := rec == nil || old == nil || rec.AccessToken != old.AccessToken ||
		rec.ReauthRequired != old.ReauthRequired || !rec.AccessExpiresAt.Equal(old.AccessExpiresAt)
	if reschedule {
		s.failures, s.lastErr, s.nextAttempt = 0, nil, time.Time{}
		s.jitter = s.m.pickJitter()
	}
	// Reported under s.mu: a reader that sees the new record then sees its
	// gauges, and a concurrent adopt of a newer record cannot report first
	// and be overwritten by this older one.
	s.reportState(rec)
	s.mu.Unlock()
	s.m.reindex()
	if reschedule {
		s.poke()
	}
}

func (s *Source) current() *Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.Clone()
}

// reportState sets the credential's gauges from rec. Callers hold s.mu
// once the Manager is shared, so the gauges follow s.rec in order.
func (s *Source) reportState(rec *Record) {
	if rec == nil {
		s.m.metrics.CredentialState(s.cred.Name, false, false, time.Time{}, time.Time{})
		return
	}
	s.m.metrics.CredentialState(s.cred.Name, rec.AccessToken != "", rec.ReauthRequired, rec.AccessExpiresAt, rec.RefreshExpiresAt)
}

// poke wakes the refresh loop so it recomputes its schedule.
func (s *Source) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
