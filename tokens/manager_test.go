package tokens_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// TestRefreshAhead: the background loop refreshes RefreshBefore plus its
// jitter (Rand()/10 of it) ahead of expiry, day after day, and Token never
// calls TikTok itself.
func TestRefreshAhead(t *testing.T) {
	e := newEnv(t, func(e *env) { e.opts.Rand = func() float64 { return 0.5 } })
	e.authorize()
	e.m.Start(context.Background())
	const days = 30
	for day := 1; day <= days; day++ {
		exp := e.record().AccessExpiresAt
		// 1h, and a twentieth of it earlier still: Rand 0.5 → jitter 0.05.
		want := exp.Add(-time.Hour - 3*time.Minute)
		at := e.clock.waitWaiter(t, "refresh-ahead timer at "+want.String(), func(at time.Time) bool { return at.Equal(want) })
		// Just before the refresh is due the old token serves, untouched.
		e.clock.Set(at.Add(-time.Second))
		if got := e.mustToken(); got != fmt.Sprintf("access-%d", day-1) {
			t.Fatalf("day %d: before refresh-ahead Token = %q", day, got)
		}
		if n := e.api.calls(); n != day-1 {
			t.Fatalf("day %d: %d refresh calls before the timer fired", day, n)
		}
		e.clock.Set(at)
		want1 := fmt.Sprintf("access-%d", day)
		waitFor(t, "refresh-ahead", func() bool { return e.mustToken() == want1 })
		if got := e.record().AccessToken; got != want1 {
			t.Fatalf("day %d: stored token %q, want %q", day, got, want1)
		}
	}
	if n := e.api.calls(); n != days {
		t.Fatalf("%d refresh calls in %d days, want %d", n, days, days)
	}
}

// TestRefreshAheadJitterSpreads: with the default random source, credentials
// authorized at the same moment are refreshed at different times, each
// within RefreshBefore plus a tenth of it ahead of expiry.
func TestRefreshAheadJitterSpreads(t *testing.T) {
	const n = 8
	e := newEnv(t, func(e *env) {
		e.opts.Rand = nil
		e.creds = nil
		for i := range n {
			e.creds = append(e.creds, tokens.Credential{Name: fmt.Sprintf("c%d", i), App: tiktok.App{AppID: "app"}})
		}
	})
	for _, c := range e.creds {
		if _, err := e.m.Authorize(context.Background(), c.Name, e.api.grant()); err != nil {
			t.Fatal(err)
		}
	}
	exp := t0.Add(24 * time.Hour)
	e.m.Start(context.Background())
	var due []time.Time
	waitFor(t, "every credential's refresh timer", func() bool {
		due = e.clock.pendingWithin(exp)
		return len(due) == n
	})
	distinct := map[time.Time]bool{}
	for _, at := range due {
		if at.Before(exp.Add(-66*time.Minute)) || at.After(exp.Add(-time.Hour)) {
			t.Errorf("refresh due %v before expiry, want within [1h, 1h6m]", exp.Sub(at))
		}
		distinct[at] = true
	}
	if len(distinct) != n {
		t.Errorf("%d credentials share %d refresh times %v: no jitter", n, len(distinct), due)
	}
}

// TestProactiveRefreshDoesNotBlock: while a background refresh waits on
// TikTok, Token returns the current still-valid token at once.
func TestProactiveRefreshDoesNotBlock(t *testing.T) {
	e := newEnv(t)
	e.authorize()
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	e.api.set(func(a *fakeAPI) { a.gate, a.entered = gate, entered })
	e.m.Start(context.Background())
	e.waitRefreshTimer()
	e.clock.Set(e.record().AccessExpiresAt.Add(-30 * time.Minute))
	<-entered
	for range 100 {
		if got := e.mustToken(); got != "access-0" {
			t.Fatalf("Token during proactive refresh = %q, want the old access-0", got)
		}
	}
	close(gate)
	waitFor(t, "refresh to land", func() bool { return e.mustToken() == "access-1" })
}

// TestSingleFlightAtExpiry: 1,000 concurrent Token calls on an expired
// token make exactly one refresh call and share its result or its error.
// The refresh is held until every caller waits on it, so they provably
// overlap.
func TestSingleFlightAtExpiry(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failErr error
	}{
		{name: "success"},
		{name: "failure", failErr: &tiktok.APIError{Code: tiktok.CodeSystemError, Message: "system error"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.authorize()
			gate := make(chan struct{})
			release := sync.OnceFunc(func() { close(gate) })
			// A failed assertion below must not leave the refresh held.
			t.Cleanup(release)
			e.api.set(func(a *fakeAPI) { a.gate, a.err = gate, tc.failErr })
			e.clock.Set(e.record().AccessExpiresAt.Add(time.Minute))

			const callers = 1000
			var wg sync.WaitGroup
			toks := make([]string, callers)
			errs := make([]error, callers)
			start := make(chan struct{})
			for i := range callers {
				wg.Go(func() {
					<-start
					toks[i], errs[i] = e.token()
				})
			}
			close(start)
			waitFor(t, "the refresh to reach TikTok", func() bool { return e.api.calls() > 0 })
			waitFor(t, "every caller to wait on the one refresh", func() bool { return e.m.Waiting(credName) == callers })
			release()
			wg.Wait()
			if n := e.api.calls(); n != 1 {
				t.Fatalf("%d refresh calls, want exactly 1", n)
			}
			for i := range callers {
				if tc.failErr == nil {
					if errs[i] != nil || toks[i] != "access-1" {
						t.Fatalf("caller %d: %q, %v", i, toks[i], errs[i])
					}
					continue
				}
				var re *tokens.RefreshError
				if !errors.As(errs[i], &re) || !errors.Is(errs[i], tc.failErr) {
					t.Fatalf("caller %d: error %v, want *RefreshError wrapping the API error", i, errs[i])
				}
				if re.RetryAfter <= 0 || re.RetryAfter > 10*time.Second {
					t.Fatalf("caller %d: RetryAfter %v, want (0, 10s] once expired", i, re.RetryAfter)
				}
			}
		})
	}
}

// TestBackoff: failed refreshes back off exponentially while the old token
// serves; once expired, retries come at least every 10s, Token fails fast
// without calling TikTok, and service returns as soon as TikTok does.
func TestBackoff(t *testing.T) {
	e := newEnv(t)
	e.authorize()
	exp := e.record().AccessExpiresAt
	e.api.set(func(a *fakeAPI) { a.err = errors.New("connection refused") })
	e.m.Start(context.Background())
	e.waitRefreshTimer()
	e.clock.Set(exp.Add(-time.Hour))
	waitFor(t, "first attempt", func() bool { return e.api.calls() == 1 })

	// Delays double from 1s, drawn from their upper half, up to 5m.
	wantMax := time.Second
	for attempt := 2; attempt <= 14; attempt++ {
		now := e.clock.Now()
		lo, hi := now.Add(wantMax/2), now.Add(wantMax)
		at := e.clock.waitWaiter(t, fmt.Sprintf("retry %d in [%v, %v]", attempt, wantMax/2, wantMax), func(at time.Time) bool {
			return !at.Before(lo) && !at.After(hi)
		})
		if got := e.mustToken(); got != "access-0" {
			t.Fatalf("attempt %d: Token = %q while the old token is valid", attempt, got)
		}
		e.clock.Set(at)
		waitFor(t, "retry", func() bool { return e.api.calls() == attempt })
		wantMax = min(2*wantMax, 5*time.Minute)
	}
	rec := e.record()
	if rec.LastRefresh.OK || rec.LastRefresh.Error == "" || rec.AccessToken != "access-0" {
		t.Fatalf("record after failures: %+v", rec.LastRefresh)
	}

	// Expired: Token answers at once with RetryAfter <= 10s and no call.
	// The clock moves once the last retry's timer is armed (due by expiry):
	// moved first, it would arm relative to the new time, past expiry.
	e.clock.waitWaiter(t, "retry 15", func(at time.Time) bool { return !at.After(exp) })
	e.clock.Set(exp.Add(-11 * time.Second))
	waitFor(t, "retry at expiry", func() bool {
		return len(e.clock.pendingWithin(exp.Add(time.Hour))) > 0
	})
	// Counted before the clock moves: the retry it triggers may be over
	// before the next statement runs.
	calls := e.api.calls()
	e.clock.Set(exp)
	waitFor(t, "the at-expiry retry", func() bool { return e.api.calls() > calls })
	calls = e.api.calls()
	_, err := e.token()
	var re *tokens.RefreshError
	if !errors.As(err, &re) || re.RetryAfter > 10*time.Second || re.Credential != credName {
		t.Fatalf("Token after expiry = %v, want *RefreshError with RetryAfter <= 10s", err)
	}
	if n := e.api.calls(); n != calls {
		t.Fatalf("Token during backoff called TikTok (%d → %d)", calls, n)
	}
	for i := range 5 {
		now := e.clock.Now()
		at := e.clock.waitWaiter(t, "expired retry within 10s", func(at time.Time) bool {
			return at.After(now) && !at.After(now.Add(10*time.Second))
		})
		if i == 4 {
			e.api.set(func(a *fakeAPI) { a.err = nil })
		}
		e.clock.Set(at)
		waitFor(t, "expired retry", func() bool { return e.api.calls() == calls+i+1 })
	}
	waitFor(t, "service back", func() bool { tok, err := e.token(); return err == nil && tok == "access-1" })
}

func (c *fakeClock) pendingWithin(limit time.Time) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, w := range c.waiters {
		if !w.at.After(limit) {
			out = append(out, w.at)
		}
	}
	return out
}

// orderStore records, for each access token, whether it was durable
// before Token handed it out.
type orderStore struct {
	tokens.Store
	mu        sync.Mutex
	persisted map[string]bool
	failPuts  int // the next failPuts Puts fail
}

func (s *orderStore) Put(ctx context.Context, rec *tokens.Record, expect uint64) error {
	s.mu.Lock()
	if s.failPuts > 0 {
		s.failPuts--
		s.mu.Unlock()
		return errors.New("disk full")
	}
	s.mu.Unlock()
	if err := s.Store.Put(ctx, rec, expect); err != nil {
		return err
	}
	s.mu.Lock()
	s.persisted[rec.AccessToken] = true
	s.mu.Unlock()
	return nil
}

func (s *orderStore) wasPersisted(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.persisted[tok]
}

// TestRotationPersistedBeforeUse: a refreshed token is handed out only once
// the rotated refresh token is durable; when storing fails the new token is
// withheld, and the next attempt stores it without asking TikTok again
// (whose old refresh token is already dead).
func TestRotationPersistedBeforeUse(t *testing.T) {
	var ost *orderStore
	e := newEnv(t, func(e *env) {
		ost = &orderStore{Store: e.store, persisted: map[string]bool{}}
		e.store = ost
	})
	e.authorize()
	for i := 1; i <= 20; i++ {
		e.clock.Set(e.record().AccessExpiresAt)
		tok := e.mustToken()
		if !ost.wasPersisted(tok) {
			t.Fatalf("refresh %d: %q handed out before it was stored", i, tok)
		}
		if got := e.record().RefreshToken; got != fmt.Sprintf("refresh-%d", i) {
			t.Fatalf("refresh %d: stored refresh token %q is not TikTok's current one", i, got)
		}
	}

	ost.mu.Lock()
	ost.failPuts = 2 // the grant and the failure note
	ost.mu.Unlock()
	e.clock.Set(e.record().AccessExpiresAt)
	_, err := e.token()
	var re *tokens.RefreshError
	if !errors.As(err, &re) {
		t.Fatalf("Token when the store fails = %v, want *RefreshError", err)
	}
	calls := e.api.calls()
	e.clock.Advance(re.RetryAfter)
	tok := e.mustToken()
	if tok != "access-21" || !ost.wasPersisted(tok) {
		t.Fatalf("after the store recovered Token = %q (persisted %v), want access-21", tok, ost.wasPersisted(tok))
	}
	if n := e.api.calls(); n != calls {
		t.Fatalf("the pending grant was fetched again from TikTok (%d → %d calls)", calls, n)
	}
	if got := e.record().RefreshToken; got != "refresh-21" {
		t.Fatalf("stored refresh token %q, want refresh-21", got)
	}
}

// TestMissingRefreshTokenKeepsOld: a refresh response without
// refresh_token keeps the old one and its expiry.
func TestMissingRefreshTokenKeepsOld(t *testing.T) {
	e := newEnv(t)
	e.authorize()
	before := e.record()
	e.api.set(func(a *fakeAPI) { a.keepRefresh = true })
	e.clock.Set(before.AccessExpiresAt)
	if tok := e.mustToken(); tok != "access-1" {
		t.Fatalf("Token = %q", tok)
	}
	after := e.record()
	if after.RefreshToken != "refresh-0" || !after.RefreshExpiresAt.Equal(before.RefreshExpiresAt) {
		t.Fatalf("refresh token %q expiring %v, want the old refresh-0 expiring %v", after.RefreshToken, after.RefreshExpiresAt, before.RefreshExpiresAt)
	}
	if want := e.clock.Now().Add(24 * time.Hour); !after.AccessExpiresAt.Equal(want) {
		t.Fatalf("access expiry %v, want %v (from the injected clock)", after.AccessExpiresAt, want)
	}
}

// TestReauthMarking: refresh answers and states that need a new
// authorization, persisted, visible in metrics and Token's error.
func TestReauthMarking(t *testing.T) {
	tests := []struct {
		name       string
		prepare    func(e *env)
		wantReauth bool
		wantCalls  int
	}{
		{
			name: "40103 refresh token expired",
			prepare: func(e *env) {
				e.api.set(func(a *fakeAPI) { a.err = &tiktok.APIError{Code: 40103, Message: "expired"} })
			},
			wantReauth: true, wantCalls: 1,
		},
		{
			name:       "40107 refresh token invalid",
			prepare:    func(e *env) { e.api.set(func(a *fakeAPI) { a.current = "rotated-elsewhere" }) },
			wantReauth: true, wantCalls: 1,
		},
		{
			name: "refresh token past its expiry",
			prepare: func(e *env) {
				e.clock.Set(e.record().RefreshExpiresAt.Add(time.Second))
			},
			wantReauth: true, wantCalls: 0,
		},
		{
			name:       "50000 is not a re-authorization",
			prepare:    func(e *env) { e.api.set(func(a *fakeAPI) { a.err = &tiktok.APIError{Code: 50000, Message: "system"} }) },
			wantReauth: false, wantCalls: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(e *env) { e.api.refreshExpiresIn = 48 * time.Hour })
			e.authorize()
			e.clock.Set(e.record().AccessExpiresAt)
			tc.prepare(e)
			_, err := e.token()
			if got := errors.Is(err, tokens.ErrReauthRequired); got != tc.wantReauth {
				t.Fatalf("Token error %v: re-authorization %v, want %v", err, got, tc.wantReauth)
			}
			if n := e.api.calls(); n != tc.wantCalls {
				t.Fatalf("%d refresh calls, want %d", n, tc.wantCalls)
			}
			rec := e.record()
			if rec.ReauthRequired != tc.wantReauth || (tc.wantReauth && rec.ReauthReason == "") {
				t.Fatalf("stored ReauthRequired %v reason %q", rec.ReauthRequired, rec.ReauthReason)
			}
			gauge := testutil.ToFloat64(e.opts.Metrics.ReauthRequired.WithLabelValues(credName))
			if (gauge == 1) != tc.wantReauth {
				t.Fatalf("reauthorization gauge %v", gauge)
			}
			if !tc.wantReauth {
				return
			}
			// Later calls fail at once, and a restart remembers.
			if _, err := e.token(); !errors.Is(err, tokens.ErrReauthRequired) {
				t.Fatalf("second Token = %v", err)
			}
			m2 := e.newManager()
			if _, err := m2.Token(context.Background(), credName); !errors.Is(err, tokens.ErrReauthRequired) {
				t.Fatalf("Token after restart = %v", err)
			}
			if n := e.api.calls(); n != tc.wantCalls {
				t.Fatalf("%d refresh calls after re-authorization was required, want %d", n, tc.wantCalls)
			}
		})
	}
}

// TestWaitEndsBeforeHangingRefresh: a caller whose deadline ends while it
// waits for the refresh of its expired token (TikTok's token endpoint
// hangs) gets a *RefreshError with a RetryAfter (the proxy's 90005 with
// Retry-After), not a bare context error that reads as TikTok timing out
// the caller's own request; the refresh goes on for the next caller.
func TestWaitEndsBeforeHangingRefresh(t *testing.T) {
	e := newEnv(t)
	e.authorize()
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)
	e.api.set(func(a *fakeAPI) { a.gate = gate })
	e.clock.Set(e.record().AccessExpiresAt.Add(time.Minute))

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := e.m.Token(ctx, credName)
		errc <- err
	}()
	waitFor(t, "the caller to wait on the refresh", func() bool { return e.m.Waiting(credName) == 1 })
	cancel()
	err := <-errc
	var re *tokens.RefreshError
	if !errors.As(err, &re) || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v (%T), want *RefreshError wrapping the context's end", err, err)
	}
	if re.RetryAfter <= 0 || re.RetryAfter > 10*time.Second {
		t.Errorf("RetryAfter %v, want (0, 10s]", re.RetryAfter)
	}
	release()
	if tok := e.mustToken(); tok != "access-1" {
		t.Errorf("after the refresh ended: token %q, want access-1", tok)
	}
}
