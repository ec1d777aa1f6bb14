package tokens

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

const (
	// pendingRetryMax caps the backoff of storing a grant the store refused.
	pendingRetryMax = 10 * time.Second
	// flushRetryMin and flushRetryMax bound the backoff of Flush's retries.
	flushRetryMin = 100 * time.Millisecond
	flushRetryMax = time.Second
)

// pendingGrant is a refresh response whose storing failed. TikTok may
// already have invalidated the old refresh token, so the next attempt
// stores this grant rather than asking TikTok again.
type pendingGrant struct {
	grant *tiktok.Grant
	at    time.Time
	from  string     // the refresh token it was obtained with
	lease *heldLease // the refresh lease it was obtained under; nil without a Leaser
	err   error      // why the store refused it, most recently; guarded by Source.mu
}

// storePending stores p, the grant TikTok issued for the refresh token
// p.from. The new refresh token is durable before the new access token is
// handed out: a crash from then on loses nothing. Until it is stored, p is
// held in memory, grant_unpersisted is 1 and Ready fails; the refresh loop
// retries it (fail caps the backoff at pendingRetryMax), and Flush at
// shutdown. It returns the stored record, or nil when the stored record no
// longer holds p.from (another writer superseded it; p is dropped).
func (s *Source) storePending(ctx context.Context, p *pendingGrant) (*Record, error) {
	s.mu.Lock()
	if s.pending != p {
		// Stored or dropped by a concurrent call (a flight and Flush).
		s.mu.Unlock()
		return nil, nil
	}
	s.mu.Unlock()
	stored, err := s.commit(ctx, func(latest *Record) (*Record, error) {
		if latest == nil || latest.RefreshToken != p.from || latest.ReauthRequired {
			return nil, errSuperseded
		}
		return s.applyGrant(latest, p.grant, p.at), nil
	})
	if err != nil && !errors.Is(err, errSuperseded) {
		s.mu.Lock()
		first := p.err == nil
		p.err = err
		if s.pending == p {
			s.m.metrics.SetGrantUnpersisted(s.cred.Name, true)
		}
		s.mu.Unlock()
		if first {
			s.m.log.Error("TikTok issued a new grant but the store refused it: held in memory and retried; it is lost if the process stops first",
				"credential", s.cred.Name, "error", err.Error())
		}
		return nil, fmt.Errorf("tokens: storing the refreshed token: %w", err)
	}
	s.mu.Lock()
	var lk *heldLease
	if s.pending == p {
		lk = s.dropPendingLocked()
	}
	if err == nil {
		s.failures, s.lastErr, s.nextAttempt = 0, nil, time.Time{}
	}
	recovered := p.err != nil
	s.mu.Unlock()
	lk.release()
	if errors.Is(err, errSuperseded) {
		return nil, nil
	}
	if recovered {
		s.m.log.Info("the held grant is stored now", "credential", s.cred.Name)
	}
	return stored, nil
}

// keptLease is the refresh lease kept with the unstored grant, unless it
// was lost: then it is released for the attempt to acquire a new one. nil
// when there is none to use.
func (s *Source) keptLease() *heldLease {
	s.mu.Lock()
	var h *heldLease
	if s.pending != nil {
		h = s.pending.lease
	}
	if h == nil || !h.lost() {
		s.mu.Unlock()
		return h
	}
	s.pending.lease = nil
	s.mu.Unlock()
	h.release()
	return nil
}

// dropStalePending forgets the unstored grant, releasing its lease, once
// the stored record no longer holds the refresh token it was obtained
// with: another process stored a grant or a mark since, and the CAS would
// refuse it anyway.
func (s *Source) dropStalePending(latest *Record) {
	s.mu.Lock()
	p := s.pending
	if p == nil || (latest != nil && latest.RefreshToken == p.from && !latest.ReauthRequired) {
		s.mu.Unlock()
		return
	}
	lk := s.dropPendingLocked()
	s.mu.Unlock()
	lk.release()
}

// dropPendingLocked forgets the unstored grant and returns its lease for
// the caller to release once s.mu is unlocked. s.mu must be held.
func (s *Source) dropPendingLocked() *heldLease {
	p := s.pending
	s.pending = nil
	if p == nil {
		return nil
	}
	s.m.metrics.SetGrantUnpersisted(s.cred.Name, false)
	return p.lease
}

// Ready reports whether the store is reachable and holds every grant:
// while a grant TikTok issued lives only in memory (the store refused it),
// the process must not be taken for healthy, since stopping it loses the
// grant.
func (m *Manager) Ready(ctx context.Context) error {
	var errs []error
	if err := m.store.Ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("tokens: store not ready: %w", err))
	}
	return errors.Join(append(errs, m.unpersistedError("held in memory, the store refused it"))...)
}

// Unpersisted names, in config order, the credentials whose newest grant
// TikTok issued is held only in memory because the store refused it.
func (m *Manager) Unpersisted() []string {
	var names []string
	for _, s := range m.sources {
		s.mu.Lock()
		if s.pending != nil {
			names = append(names, s.cred.Name)
		}
		s.mu.Unlock()
	}
	return names
}

// unpersistedError is nil when every grant is stored, else one error per
// credential whose grant is not, saying what, with the store's latest
// refusal.
func (m *Manager) unpersistedError(what string) error {
	var errs []error
	for _, s := range m.sources {
		s.mu.Lock()
		if p := s.pending; p != nil {
			errs = append(errs, fmt.Errorf("tokens: the grant of credential %q is %s: %w", s.cred.Name, what, cmp.Or(p.err, errNotStoredYet)))
		}
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Flush stores every grant held only in memory, retrying with backoff
// until each is stored or ctx ends. It returns nil when none is left, else
// an error naming each credential whose grant would be lost: serve's
// shutdown calls it before Close and exits 1 on its error. Call it before
// Close, which drops held grants.
func (m *Manager) Flush(ctx context.Context) error {
	delay := flushRetryMin
	for {
		for _, s := range m.sources {
			s.mu.Lock()
			p := s.pending
			s.mu.Unlock()
			if p != nil {
				_, _ = s.storePending(ctx, p)
			}
		}
		if len(m.Unpersisted()) == 0 {
			return nil
		}
		t := time.NewTimer(delay/2 + m.spread(delay/2))
		select {
		case <-ctx.Done():
			t.Stop()
			return m.unpersistedError("lost: the store refused it until shutdown; authorize the credential again")
		case <-t.C:
		}
		delay = min(2*delay, flushRetryMax)
	}
}
