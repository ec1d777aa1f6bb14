package tokens

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

// flight is one refresh shared by every caller that needs it.
type flight struct {
	done chan struct{}
	rec  *Record
	err  error
}

// startFlightLocked returns the refresh in progress or starts one. s.mu
// must be held.
func (s *Source) startFlightLocked() *flight {
	if s.flight != nil {
		return s.flight
	}
	f := &flight{done: make(chan struct{})}
	if !s.m.track() {
		f.err = errClosed
		close(f.done)
		return f
	}
	s.flight = f
	go func() {
		defer s.m.wg.Done()
		rec, err := s.refresh()
		s.mu.Lock()
		s.flight = nil
		s.mu.Unlock()
		f.rec, f.err = rec, err
		close(f.done)
	}()
	return f
}

// refreshLoop refreshes the token ahead of its expiry and retries failed
// refreshes when their backoff is due, until ctx ends.
func (s *Source) refreshLoop(ctx context.Context) {
	// Changes made before Start are in the first schedule already.
	select {
	case <-s.wake:
	default:
	}
	for {
		var due <-chan time.Time
		if d, ok := s.nextRefreshIn(); ok {
			due = s.m.after(d)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-due:
			s.mu.Lock()
			f := s.startFlightLocked()
			s.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return
			}
			// The schedule is recomputed next anyway; a wake-up sent during
			// the refresh would only recompute it twice.
			select {
			case <-s.wake:
			default:
			}
		}
	}
}

// refresh renews the current access token. It runs only inside a flight,
// so at most one refresh per credential is in progress in this process.
func (s *Source) refresh() (*Record, error) {
	ctx, cancel := context.WithTimeout(s.m.ctx, refreshTimeout)
	defer cancel()
	name := s.cred.Name
	cur := s.current()
	if cur == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotAuthorized, name)
	}
	used := cur.AccessToken
	var held *heldLease // nil without a Leaser

	// Another replica (or Authorize) may have renewed the token already.
	latest, settled, err := s.reread(ctx, used)
	if err != nil || settled {
		return latest, err
	}
	if s.m.leaser != nil {
		held, err = s.holdLease(ctx, used)
		if err != nil {
			return nil, err
		}
		defer s.releaseUnlessKept(held)
		// Read under the lease: its generation fences the write, since the
		// store's compare-and-swap refuses it once anyone stored since.
		if latest, settled, err = s.reread(ctx, used); err != nil || settled {
			return latest, err
		}
	}
	cur = latest
	now := s.m.now()
	if !cur.RefreshExpiresAt.IsZero() && !now.Before(cur.RefreshExpiresAt) {
		return nil, s.markReauth(ctx, used, fmt.Sprintf("the refresh token expired at %s", cur.RefreshExpiresAt.UTC().Format(time.RFC3339)), s.wasRejected(used))
	}

	s.mu.Lock()
	p := s.pending
	if p != nil && p.from == cur.RefreshToken {
		// Kept, or taken again after the kept one was lost (keptLease).
		p.lease = held
	}
	s.mu.Unlock()
	if p == nil || p.from != cur.RefreshToken {
		if held.lost() {
			// Another process may hold the lease now: spending the refresh
			// token here too would end the grant.
			return nil, s.elsewhere(used)
		}
		callCtx, endCall := held.guard(ctx)
		start := time.Now()
		g, err := s.m.api.Refresh(callCtx, s.cred.App, cur.RefreshToken)
		endCall()
		s.m.metrics.Refresh(name, err == nil && g != nil && g.AccessToken != "", time.Since(start))
		var apiErr *tiktok.APIError
		switch {
		case err != nil && held.lost() && ctx.Err() == nil:
			// The lease was lost: the call was cancelled before it was sent,
			// or a new holder refreshed meanwhile (TikTok then refuses the
			// spent refresh token, which must not mark the grant). The
			// holder stores the result.
			return nil, s.elsewhere(used)
		case errors.As(err, &apiErr) && (apiErr.Code == tiktok.CodeRefreshTokenExpired || apiErr.Code == tiktok.CodeRefreshTokenInvalid):
			return nil, s.markReauth(ctx, used, fmt.Sprintf("TikTok refused the refresh token (code %d: %s)", apiErr.Code, apiErr.Message), s.wasRejected(used))
		case err != nil:
			return nil, s.fail(ctx, used, err)
		case g == nil || g.AccessToken == "":
			return nil, s.fail(ctx, used, errors.New("tokens: refresh response without an access token"))
		}
		s.m.logDropped(name, g)
		p = &pendingGrant{grant: g, at: s.m.now(), from: cur.RefreshToken, lease: held}
		s.mu.Lock()
		s.pending = p
		s.mu.Unlock()
	}

	stored, err := s.storePending(ctx, p)
	if err != nil {
		return nil, s.fail(ctx, used, err)
	}
	if stored == nil {
		// Superseded: another writer stored a newer grant or a mark.
		return s.current(), nil
	}
	s.m.log.Info("token refreshed", "credential", name,
		"access_expires_at", stored.AccessExpiresAt, "refresh_token_rotated", p.grant.RefreshToken != "" && p.grant.RefreshToken != p.from)
	return stored, nil
}

// reread reads the stored record for a refresh of the access token used.
// settled is true when that refresh is no longer needed: the record is
// gone, marked for re-authorization, or holds another access token; latest
// is then the answer.
func (s *Source) reread(ctx context.Context, used string) (latest *Record, settled bool, err error) {
	latest, err = s.reload(ctx)
	if err != nil {
		return nil, true, s.fail(ctx, used, err)
	}
	s.dropStalePending(latest)
	return latest, latest == nil || latest.AccessToken != used || latest.ReauthRequired, nil
}

// applyGrant is latest with the refreshed tokens of g, obtained at at.
func (s *Source) applyGrant(latest *Record, g *tiktok.Grant, at time.Time) *Record {
	r := latest.Clone()
	r.AccessToken = g.AccessToken
	r.AccessExpiresAt = time.Time{}
	if g.ExpiresIn > 0 {
		r.AccessExpiresAt = at.Add(g.ExpiresIn)
	}
	if g.RefreshToken != "" && g.RefreshToken != r.RefreshToken {
		r.RefreshToken = g.RefreshToken
		r.RefreshExpiresAt = time.Time{} // a new token's expiry is unknown unless given
	}
	if g.RefreshExpiresIn > 0 {
		r.RefreshExpiresAt = at.Add(g.RefreshExpiresIn)
	}
	if len(g.Scopes) > 0 {
		r.Scopes = slices.Clone(g.Scopes)
	}
	if g.OpenID != "" {
		r.OpenID = g.OpenID
	}
	r.Advertisers = mergeAdvertisers(r.Advertisers, append(AdvertiserIDs(r.Advertisers), g.AdvertiserIDs...))
	r.LastRefresh = RefreshResult{At: at, OK: true}
	r.ReauthRequired, r.ReauthReason, r.AccessRejected = false, "", false
	return r
}
