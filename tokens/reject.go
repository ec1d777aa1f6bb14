package tokens

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

const (
	// A token rejected within freshWindow of being issued after an earlier
	// rejection (the refresh that answered it did not help), or the
	// maxRejections-th rejection of current tokens within rejectWindow, is
	// not refreshed again but checked, like a token that cannot be
	// refreshed: refreshing on every rejection would let any caller rotate
	// the grant at will. A single rejection, even of a just-authorized
	// token, is refreshed once.
	freshWindow   = time.Minute
	rejectWindow  = 10 * time.Minute
	maxRejections = 3
	// A rejection is marked only when the credential's own advertiser
	// listing refuses the token too (or its refresh token is refused): a
	// 40105 can come from a caller's crafted request or a glitch, and
	// neither may end a grant TikTok accepts. Rejections arriving during a
	// check, or within checkGrace after one ended, are answered by it:
	// requests sent before the check can return their refusal after it
	// passed. Later rejections start another check, so at most one runs per
	// checkGrace.
	checkGrace = 5 * time.Second
)

// validation is one check of a rejected long-lived token, shared by every
// rejection of that token while it runs.
type validation struct {
	done  chan struct{}
	token string
}

// Rejected reports that TikTok answered code (40105 or 40102) to a request
// made with token. For a refreshable credential whose current token is still
// token, it forces one refresh (shared with concurrent callers) and reports
// retry=true when a different token is now available; a refresh TikTok
// refuses (40103, 40107) marks re-authorization required. A token that
// cannot be refreshed, or whose refresh did not help (rejected again within
// a minute of being issued, or a third rejection within ten minutes), is
// checked at once with the advertiser listing instead (one check shared by
// concurrent callers, at most one per five seconds): it is marked only when
// TikTok refuses that check too; a check TikTok accepts shows the rejection
// was a glitch or a caller's own request. A rejection never marks by itself.
func (m *Manager) Rejected(ctx context.Context, name, token string, code int) (retry bool) {
	if code != tiktok.CodeTokenInvalid && code != tiktok.CodeTokenExpired {
		return false
	}
	s, ok := m.byName[name]
	if !ok {
		return false
	}
	return s.rejectedBy(ctx, token, code)
}

// tokenRefused reports whether a TikTok code says the access token itself
// is not accepted.
func tokenRefused(code int) bool {
	switch code {
	case tiktok.CodeTokenInvalid, tiktok.CodeTokenExpired, tiktok.CodeTokenEmpty:
		return true
	}
	return false
}

// rejectedBy is Rejected for this credential.
func (s *Source) rejectedBy(ctx context.Context, token string, code int) (retry bool) {
	m := s.m
	s.mu.Lock()
	rec := s.rec
	now := m.now()
	if rec == nil {
		s.mu.Unlock()
		return false
	}
	if rec.ReauthRequired {
		if rec.AccessToken == token && !rec.AccessRejected {
			// The access token served after the refresh token was lost is
			// refused: it stops being served once the check confirms it, so
			// a caller's crafted request cannot end it early.
			return s.checkRejectedLocked(ctx, token, code, now)
		}
		s.mu.Unlock()
		return false
	}
	if rec.AccessToken != token {
		// Already replaced, typically by the forced refresh of a concurrent
		// rejection.
		s.mu.Unlock()
		return usable(rec, now)
	}
	if !rec.Refreshable() {
		return s.checkRejectedLocked(ctx, token, code, now)
	}
	// Remembered for the refresh below: if it proves the grant gone, the
	// mark then also stops this token being served, in the same write.
	s.rejected = token
	f := s.flight
	if f == nil {
		s.rejections = append(slices.DeleteFunc(s.rejections, func(t time.Time) bool {
			return now.Sub(t) >= rejectWindow
		}), now)
		if len(s.rejections) >= maxRejections || (len(s.rejections) >= 2 && now.Sub(issuedAt(rec)) < freshWindow) {
			// Refreshing again would not help (or would let a caller rotate
			// the grant at will): ask TikTok whether it accepts the token.
			return s.checkRejectedLocked(ctx, token, code, now)
		}
		if s.inBackoff(now) {
			s.mu.Unlock()
			return false
		}
		m.log.Warn("TikTok rejected the access token, refreshing", "credential", s.cred.Name, "code", code)
		f = s.startFlightLocked()
	}
	s.mu.Unlock()
	if !s.await(ctx, f.done) {
		return false
	}
	if f.err != nil {
		if errors.Is(f.err, ErrReauthRequired) {
			// The refresh proves the grant gone, and TikTok refused this
			// token: nothing is left to serve.
			_ = s.markReauth(ctx, token, "TikTok rejected the access token", true)
		}
		return false
	}
	cur := s.current()
	return cur != nil && !cur.ReauthRequired && cur.AccessToken != token && usable(cur, m.now())
}

// checkRejectedLocked handles a rejection of the current token that a
// refresh cannot answer: the grant cannot be refreshed, or its refreshes
// did not help. s.mu is held and released here. The rejection starts a
// check, or joins the one running, or is ignored when a check of the token
// ended within checkGrace; only the check's refusal marks. There is no
// other token to retry with, so it always returns false.
func (s *Source) checkRejectedLocked(ctx context.Context, token string, code int, now time.Time) bool {
	v := s.validation
	if v == nil || v.token != token {
		if s.checked == token && now.Before(s.checkedAt.Add(checkGrace)) {
			s.mu.Unlock()
			return false
		}
		s.m.log.Warn("TikTok rejected the access token, checking it", "credential", s.cred.Name, "code", code)
		v = s.startValidationLocked(token, code)
	}
	s.mu.Unlock()
	s.await(ctx, v.done)
	return false
}

// startValidationLocked checks token with the advertiser listing in the
// background, shared by every rejection of token until it ends. s.mu must
// be held.
func (s *Source) startValidationLocked(token string, code int) *validation {
	v := &validation{done: make(chan struct{}), token: token}
	if !s.m.track() {
		close(v.done)
		return v
	}
	s.validation = v
	go func() {
		defer s.m.wg.Done()
		s.validate(token, code)
		s.mu.Lock()
		if s.validation == v {
			s.validation = nil
		}
		s.checked, s.checkedAt = token, s.m.now()
		s.mu.Unlock()
		close(v.done)
	}()
	return v
}

// validate asks TikTok whether it accepts token, which it rejected with
// code, and marks re-authorization when it is refused again.
func (s *Source) validate(token string, code int) {
	// Not the request's context: the check outlives a script that hangs up.
	ctx, cancel := context.WithTimeout(s.m.ctx, refreshTimeout)
	defer cancel()
	list, err := s.m.api.Advertisers(ctx, s.cred.App, token)
	var ae *tiktok.APIError
	switch {
	case errors.As(err, &ae) && tokenRefused(ae.Code):
		_ = s.markReauth(ctx, token, fmt.Sprintf("TikTok rejected the access token (code %d) and refused it again when checked (code %d)", code, ae.Code), true)
		return
	case err != nil:
		// Inconclusive: the next rejection after checkGrace, or the
		// periodic listing, checks again.
		if ctx.Err() == nil {
			s.m.log.Warn("checking a rejected access token failed", "credential", s.cred.Name, "error", err.Error())
		}
		return
	}
	s.m.log.Warn("TikTok rejected the access token but accepts it: treated as a glitch", "credential", s.cred.Name, "code", code)
	s.storeAdvertisers(ctx, token, list)
}

// wasRejected reports whether TikTok refused the access token token.
func (s *Source) wasRejected(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected == token
}

// markReauth records that the credential must be authorized again, unless
// its access token is no longer used (the grant was replaced meanwhile).
// It returns the *ReauthError for callers.
func (s *Source) markReauth(ctx context.Context, used, reason string, rejected bool) error {
	name := s.cred.Name
	now := s.m.now()
	mark := func(latest *Record) *Record {
		r := latest.Clone()
		if !r.ReauthRequired {
			r.ReauthRequired, r.ReauthReason = true, reason
			r.LastRefresh = RefreshResult{At: now, OK: false, Error: reason}
		}
		r.AccessRejected = r.AccessRejected || rejected
		return r
	}
	_, err := s.commit(ctx, func(latest *Record) (*Record, error) {
		if latest == nil || latest.AccessToken != used {
			return nil, errSuperseded
		}
		if latest.ReauthRequired && (latest.AccessRejected || !rejected) {
			return nil, errUnchanged
		}
		return mark(latest), nil
	})
	switch {
	case errors.Is(err, errSuperseded):
		cur := s.current()
		if cur != nil && cur.ReauthRequired {
			return &ReauthError{Credential: name, Reason: cur.ReauthReason}
		}
		return fmt.Errorf("tokens: credential %q was re-authorized meanwhile, try again", name)
	case errors.Is(err, errUnchanged):
		return &ReauthError{Credential: name, Reason: s.current().ReauthReason}
	case err != nil:
		// Not durable, but this process must stop using the grant anyway;
		// after a restart the same answer from TikTok marks it again.
		s.m.log.Warn("storing the re-authorization flag failed", "credential", name, "error", err.Error())
		s.mu.Lock()
		if s.rec != nil && s.rec.AccessToken == used {
			s.rec = mark(s.rec)
		}
		s.reportState(s.rec)
		s.mu.Unlock()
	}
	s.m.log.Error("credential needs re-authorization", "credential", name, "reason", reason)
	return &ReauthError{Credential: name, Reason: reason}
}
