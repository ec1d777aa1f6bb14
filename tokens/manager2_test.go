package tokens_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// TestLongLivedNeverRefreshed: a grant without expiry is served for a
// year of clock time with no refresh and no refresh timer, whether or not
// TikTok also sent a refresh token (and even once that refresh token's own
// expiry has passed).
func TestLongLivedNeverRefreshed(t *testing.T) {
	for _, tc := range []struct {
		name         string
		refreshToken string
		refreshIn    time.Duration
	}{
		{name: "no refresh token"},
		{name: "refresh token but no expires_in", refreshToken: "refresh-0", refreshIn: 30 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const listEvery = 10 * 365 * 24 * time.Hour
			e := newEnv(t, func(e *env) {
				e.api.expiresIn = 0
				e.opts.AdvertiserInterval = listEvery
			})
			g := e.api.grant()
			g.RefreshToken, g.RefreshExpiresIn = tc.refreshToken, tc.refreshIn
			if _, err := e.m.Authorize(context.Background(), credName, g); err != nil {
				t.Fatal(err)
			}
			if rec := e.record(); rec.RefreshToken != tc.refreshToken || !rec.AccessExpiresAt.IsZero() {
				t.Fatalf("stored refresh token %q, access expiry %v", rec.RefreshToken, rec.AccessExpiresAt)
			}
			e.m.Start(context.Background())
			// Only the advertiser listing's timer, years ahead, may be pending.
			e.clock.waitWaiter(t, "the listing timer", func(at time.Time) bool { return at.Equal(t0.Add(listEvery)) })
			for day := range 365 {
				if due := e.clock.pendingWithin(t0.Add(listEvery - time.Hour)); len(due) != 0 {
					t.Fatalf("day %d: a timer is pending at %v for a long-lived grant", day, due)
				}
				e.clock.Advance(24 * time.Hour)
				if tok := e.mustToken(); tok != "access-0" {
					t.Fatalf("day %d: Token = %q", day, tok)
				}
			}
			if n := e.api.calls(); n != 0 {
				t.Fatalf("%d refresh calls for a long-lived grant", n)
			}
			st, _ := e.m.Status(credName)
			if st.Refreshable || !st.AccessExpiresAt.IsZero() || st.ReauthRequired {
				t.Fatalf("status %+v", st)
			}
			if e.record().ReauthRequired {
				t.Fatal("stored as needing re-authorization")
			}
		})
	}
}

// TestRejected: what a 40105/40102 from TikTok does.
func TestRejected(t *testing.T) {
	refused := &tiktok.APIError{Code: tiktok.CodeTokenInvalid, Message: "Access token is invalid"}
	tests := []struct {
		name       string
		longLived  bool
		refuse     bool  // TikTok refuses the refresh token (40107)
		advErr     error // what the advertiser listing answers after authorization
		steps      []rejectStep
		wantCalls  int
		wantChecks int // advertiser listings after authorization
		wantReauth bool
	}{
		{
			name:      "current token: one forced refresh, retry",
			steps:     []rejectStep{{after: 2 * time.Minute, token: "access-0", code: 40105, want: true}},
			wantCalls: 1,
		},
		{
			name:      "older token: retry with the current one, no refresh",
			steps:     []rejectStep{{after: 2 * time.Minute, token: "access-0", code: 40102, want: true}, {token: "access-0", code: 40102, want: true}},
			wantCalls: 1,
		},
		{
			name:  "other codes are ignored",
			steps: []rejectStep{{after: 2 * time.Minute, token: "access-0", code: 40001, want: false}},
		},
		{
			name:       "long-lived grant: a rejection the check confirms marks re-authorization",
			longLived:  true,
			advErr:     refused,
			steps:      []rejectStep{{after: 2 * time.Minute, token: "access-0", code: 40105, want: false}},
			wantChecks: 1, wantReauth: true,
		},
		{
			name:       "long-lived grant: a check refused as expired or empty marks too",
			longLived:  true,
			advErr:     &tiktok.APIError{Code: tiktok.CodeTokenEmpty, Message: "Access token is null"},
			steps:      []rejectStep{{after: 2 * time.Minute, token: "access-0", code: 40102, want: false}},
			wantChecks: 1, wantReauth: true,
		},
		{
			name:       "long-lived grant: a rejection the check disproves is a glitch",
			longLived:  true,
			steps:      []rejectStep{{after: 2 * time.Minute, token: "access-0", code: 40105, want: false}},
			wantChecks: 1,
		},
		{
			name:       "long-lived grant: a check TikTok does not answer marks nothing",
			longLived:  true,
			advErr:     errors.New("connection refused"),
			steps:      []rejectStep{{after: 2 * time.Minute, token: "access-0", code: 40105, want: false}},
			wantChecks: 1,
		},
		{
			// One glitch, two answers: a request sent before the check ended
			// returns its refusal after the check passed.
			name:      "long-lived grant: a rejection just after a passed check is answered by it",
			longLived: true,
			steps: []rejectStep{
				{after: 2 * time.Minute, token: "access-0", code: 40105, want: false},
				{after: time.Second, token: "access-0", code: 40105, want: false},
			},
			wantChecks: 1,
		},
		{
			name:      "long-lived grant: a rejection after a passed check is checked again, and accepted marks nothing",
			longLived: true,
			steps: []rejectStep{
				{after: 2 * time.Minute, token: "access-0", code: 40105, want: false},
				{after: 6 * time.Second, token: "access-0", code: 40105, want: false},
				{after: 9 * time.Minute, token: "access-0", code: 40105, want: false},
			},
			wantChecks: 3,
		},
		{
			name:      "long-lived grant: revoked after a glitch: the next check is refused and marks",
			longLived: true,
			steps: []rejectStep{
				{after: 2 * time.Minute, token: "access-0", code: 40105, want: false},
				{after: 9 * time.Minute, token: "access-0", code: 40105, want: false, revoke: true},
			},
			wantChecks: 2, wantReauth: true,
		},
		{
			name:      "long-lived grant: checks TikTok does not answer mark nothing, however many",
			longLived: true,
			advErr:    errors.New("connection refused"),
			steps: []rejectStep{
				{after: 2 * time.Minute, token: "access-0", code: 40105, want: false},
				{after: 6 * time.Second, token: "access-0", code: 40105, want: false},
				{after: 6 * time.Second, token: "access-0", code: 40102, want: false},
			},
			wantChecks: 3,
		},
		{
			name:      "long-lived grant: rejections ten minutes apart are each a glitch",
			longLived: true,
			steps: []rejectStep{
				{after: 2 * time.Minute, token: "access-0", code: 40105, want: false},
				{after: 10 * time.Minute, token: "access-0", code: 40105, want: false},
			},
			wantChecks: 2,
		},
		{
			name:      "long-lived grant: an older token rejected: retry with the current one, no check",
			longLived: true,
			steps: []rejectStep{
				{after: 2 * time.Minute, token: "an older token", code: 40105, want: true},
				{after: 2 * time.Minute, token: "an older token", code: 40105, want: true},
			},
		},
		{
			name:      "a just-authorized token rejected once: one forced refresh, retry",
			steps:     []rejectStep{{after: 5 * time.Second, token: "access-0", code: 40105, want: true}},
			wantCalls: 1,
		},
		{
			// Two one-off glitches (or a caller's crafted requests) within a
			// minute: the refresh works and the check passes, so the grant
			// stays.
			name: "a just-refreshed token rejected: checked, accepted: nothing marked",
			steps: []rejectStep{
				{after: 2 * time.Minute, token: "access-0", code: 40105, want: true},
				{after: 10 * time.Second, token: "access-1", code: 40105, want: false},
			},
			wantCalls: 1, wantChecks: 1,
		},
		{
			name: "a just-refreshed token rejected: checked, refused: re-authorization",
			steps: []rejectStep{
				{after: 2 * time.Minute, token: "access-0", code: 40105, want: true},
				{after: 10 * time.Second, token: "access-1", code: 40105, want: false, revoke: true},
			},
			wantCalls: 1, wantChecks: 1, wantReauth: true,
		},
		{
			name: "three rejections within ten minutes: the third is checked, accepted: nothing marked",
			steps: []rejectStep{
				{after: 2 * time.Minute, token: "access-0", code: 40105, want: true},
				{after: 2 * time.Minute, token: "access-1", code: 40105, want: true},
				{after: 2 * time.Minute, token: "access-2", code: 40102, want: false},
			},
			wantCalls: 2, wantChecks: 1,
		},
		{
			name: "three rejections within ten minutes: the third is checked, refused: re-authorization",
			steps: []rejectStep{
				{after: 2 * time.Minute, token: "access-0", code: 40105, want: true},
				{after: 2 * time.Minute, token: "access-1", code: 40105, want: true},
				{after: 2 * time.Minute, token: "access-2", code: 40105, want: false, revoke: true},
			},
			wantCalls: 2, wantChecks: 1, wantReauth: true,
		},
		{
			name: "two rejections a minute apart: each refreshed, nothing marked",
			steps: []rejectStep{
				{after: 2 * time.Minute, token: "access-0", code: 40105, want: true},
				{after: 2 * time.Minute, token: "access-1", code: 40105, want: true},
			},
			wantCalls: 2,
		},
		{
			name:      "a refresh TikTok refuses after a rejection: re-authorization",
			refuse:    true,
			steps:     []rejectStep{{after: 2 * time.Minute, token: "access-0", code: 40105, want: false}},
			wantCalls: 1, wantReauth: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			g := e.api.grant()
			if tc.longLived {
				g.ExpiresIn, g.RefreshToken = 0, ""
			}
			if _, err := e.m.Authorize(context.Background(), credName, g); err != nil {
				t.Fatal(err)
			}
			listed := e.api.advCalls()
			e.api.set(func(a *fakeAPI) {
				a.advErr = tc.advErr
				if tc.refuse {
					a.current = "revoked"
				}
			})
			for i, st := range tc.steps {
				e.clock.Advance(st.after)
				if st.revoke {
					e.api.set(func(a *fakeAPI) { a.advErr = refused })
				}
				if got := e.m.Rejected(context.Background(), credName, st.token, st.code); got != st.want {
					t.Fatalf("step %d: Rejected = %v, want %v", i, got, st.want)
				}
			}
			if n := e.api.calls(); n != tc.wantCalls {
				t.Fatalf("%d refresh calls, want %d", n, tc.wantCalls)
			}
			if n := e.api.advCalls() - listed; n != tc.wantChecks {
				t.Fatalf("%d advertiser listings checked the token, want %d", n, tc.wantChecks)
			}
			tok, err := e.token()
			if got := errors.Is(err, tokens.ErrReauthRequired); got != tc.wantReauth {
				t.Fatalf("Token error %v; re-authorization %v, want %v", err, got, tc.wantReauth)
			}
			if !tc.wantReauth && (err != nil || tok == "") {
				t.Fatalf("Token = %q, %v; want the credential still served", tok, err)
			}
			if rec := e.record(); rec.ReauthRequired != tc.wantReauth || (tc.wantReauth && !rec.AccessRejected) {
				t.Fatalf("stored ReauthRequired = %v, AccessRejected = %v", rec.ReauthRequired, rec.AccessRejected)
			}
		})
	}
}

type rejectStep struct {
	after  time.Duration
	token  string
	code   int
	want   bool
	revoke bool // from this step on, the advertiser listing refuses the token
}

// TestRejectedConcurrent: many requests rejected with the same token share
// one forced refresh, held until every caller waits on it, and all retry.
func TestRejectedConcurrent(t *testing.T) {
	e := newEnv(t)
	e.authorize()
	e.clock.Advance(time.Hour)
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)
	e.api.set(func(a *fakeAPI) { a.gate = gate })
	results := rejectBurst(t, e, release)
	for i, r := range results {
		if !r {
			t.Fatalf("caller %d: Rejected = false, want a retry with the refreshed token", i)
		}
	}
	if c := e.api.calls(); c != 1 {
		t.Fatalf("%d refresh calls, want 1", c)
	}
	if tok := e.mustToken(); tok != "access-1" {
		t.Fatalf("Token = %q", tok)
	}
	if e.record().ReauthRequired {
		t.Fatal("a burst of rejections sharing one refresh marked re-authorization")
	}
}

// rejectBurst has 200 callers report TikTok's rejection of access-0 at
// once, waits until every one of them waits on the shared refresh or check,
// then calls release and returns each caller's Rejected answer.
func rejectBurst(t *testing.T, e *env, release func()) []bool {
	t.Helper()
	const n = 200
	start := make(chan struct{})
	results := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i] = e.m.Rejected(context.Background(), credName, "access-0", tiktok.CodeTokenInvalid)
		})
	}
	close(start)
	waitFor(t, "every rejection to wait on the one refresh or check", func() bool { return e.m.Waiting(credName) == n })
	release()
	wg.Wait()
	return results
}

// TestRejectedLongLivedConcurrent: a burst of rejections of a long-lived
// token shares one check, held until every caller waits on it; the burst
// counts as one rejection, so a check TikTok accepts marks nothing.
func TestRejectedLongLivedConcurrent(t *testing.T) {
	for _, tc := range []struct {
		name       string
		advErr     error
		wantReauth bool
	}{
		{name: "glitch"},
		{name: "revoked", advErr: &tiktok.APIError{Code: tiktok.CodeTokenInvalid, Message: "Access token is invalid"}, wantReauth: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ws *writeStore
			e := newEnv(t, func(e *env) {
				ws = &writeStore{Store: e.store}
				e.store = ws
			})
			g := e.api.grant()
			g.ExpiresIn, g.RefreshToken = 0, ""
			if _, err := e.m.Authorize(context.Background(), credName, g); err != nil {
				t.Fatal(err)
			}
			listed := e.api.advCalls()
			gate := make(chan struct{})
			release := sync.OnceFunc(func() { close(gate) })
			t.Cleanup(release)
			e.api.set(func(a *fakeAPI) { a.advGate, a.advErr = gate, tc.advErr })
			e.clock.Advance(time.Hour)

			results := rejectBurst(t, e, release)
			for i, r := range results {
				if r {
					t.Fatalf("caller %d: Rejected asked for a retry with no other token", i)
				}
			}
			if c := e.api.advCalls() - listed; c != 1 {
				t.Fatalf("%d checks, want 1", c)
			}
			if _, err := e.token(); errors.Is(err, tokens.ErrReauthRequired) != tc.wantReauth {
				t.Fatalf("Token = %v, want re-authorization %v", err, tc.wantReauth)
			}
			ws.mu.Lock()
			defer ws.mu.Unlock()
			marks := 0
			for _, w := range ws.writes {
				if w.ReauthRequired {
					marks++
				}
			}
			if want := map[bool]int{false: 0, true: 1}[tc.wantReauth]; marks != want {
				t.Fatalf("%d writes marked re-authorization, want %d", marks, want)
			}
		})
	}
}

// TestAuthorizeReplacesGrant: a new grant replaces the old one, clears
// re-authorization, merges advertisers and names them from the listing.
func TestAuthorizeReplacesGrant(t *testing.T) {
	e := newEnv(t)
	e.api.set(func(a *fakeAPI) { a.advErr = errors.New("listing down") })
	first := e.authorize() // a failed listing is not fatal
	if !first.Authorized || len(first.Advertisers) != 2 {
		t.Fatalf("first status %+v", first)
	}
	e.clock.Advance(time.Hour)
	e.api.set(func(a *fakeAPI) { a.err = &tiktok.APIError{Code: 40107, Message: "revoked"} })
	e.clock.Set(e.record().AccessExpiresAt)
	if _, err := e.token(); !errors.Is(err, tokens.ErrReauthRequired) {
		t.Fatalf("Token = %v", err)
	}
	gen := e.record().Generation

	e.api.set(func(a *fakeAPI) {
		a.err, a.advErr = nil, nil
		a.current = "refresh-new"
		a.advertisers = []tiktok.Advertiser{{ID: "7000000000000000001", Name: "Shop"}, {ID: "7000000000000000002", Name: "Outlet"}}
	})
	g := &tiktok.Grant{AccessToken: "access-new", ExpiresIn: 24 * time.Hour, RefreshToken: "refresh-new",
		AdvertiserIDs: []string{"7000000000000000001"}, Scopes: []string{"4"}}
	st, err := e.m.Authorize(context.Background(), credName, g)
	if err != nil {
		t.Fatal(err)
	}
	rec := e.record()
	switch {
	case rec.AccessToken != "access-new" || rec.RefreshToken != "refresh-new":
		t.Fatalf("tokens not replaced")
	case rec.ReauthRequired || rec.ReauthReason != "" || st.ReauthRequired:
		t.Fatalf("re-authorization not cleared: %+v", rec)
	case !rec.AuthorizedAt.Equal(e.clock.Now()):
		t.Fatalf("AuthorizedAt %v, want now", rec.AuthorizedAt)
	case rec.Generation <= gen:
		t.Fatalf("generation %d not bumped past %d", rec.Generation, gen)
	case strings.Join(rec.Scopes, ",") != "4":
		t.Fatalf("scopes %v", rec.Scopes)
	}
	names := map[string]string{}
	for _, a := range st.Advertisers {
		names[a.ID] = a.Name
	}
	want := map[string]string{"7000000000000000001": "Shop", "7000000000000000002": "Outlet", configAdvert: ""}
	if len(names) != len(want) {
		t.Fatalf("advertisers %v, want %v", names, want)
	}
	for id, n := range want {
		if got, ok := names[id]; !ok || got != n {
			t.Fatalf("advertisers %v, want %v", names, want)
		}
	}
	for _, id := range []string{"7000000000000000001", "7000000000000000002", configAdvert} {
		if c, ok := e.m.CredentialFor(id); !ok || c != credName {
			t.Fatalf("CredentialFor(%s) = %q, %v", id, c, ok)
		}
	}
	if tok := e.mustToken(); tok != "access-new" {
		t.Fatalf("Token = %q", tok)
	}
}

// TestAdvertiserListing: the loop learns new advertisers every interval.
func TestAdvertiserListing(t *testing.T) {
	e := newEnv(t, func(e *env) { e.opts.AdvertiserInterval = 6 * time.Hour })
	e.authorize()
	if _, ok := e.m.CredentialFor("7000000000000000003"); ok {
		t.Fatal("unknown advertiser already known")
	}
	if c, ok := e.m.CredentialFor(configAdvert); !ok || c != credName {
		t.Fatalf("config advertiser: %q, %v", c, ok)
	}
	e.api.set(func(a *fakeAPI) { a.advertisers = []tiktok.Advertiser{{ID: "7000000000000000003", Name: "New"}} })
	calls := e.api.advCalls()
	e.m.Start(context.Background())
	waitFor(t, "listing at start", func() bool { return e.api.advCalls() > calls })
	waitFor(t, "new advertiser", func() bool { _, ok := e.m.CredentialFor("7000000000000000003"); return ok })

	e.api.set(func(a *fakeAPI) {
		a.advertisers = append(a.advertisers, tiktok.Advertiser{ID: "7000000000000000004", Name: "Newer"})
	})
	at := e.clock.waitWaiter(t, "listing timer", func(at time.Time) bool { return at.Equal(t0.Add(6 * time.Hour)) })
	e.clock.Set(at)
	waitFor(t, "listed again", func() bool { _, ok := e.m.CredentialFor("7000000000000000004"); return ok })
	found := false
	for _, a := range e.record().Advertisers {
		found = found || (a.ID == "7000000000000000004" && a.Name == "Newer")
	}
	if !found {
		t.Fatalf("advertiser not persisted with its name: %+v", e.record().Advertisers)
	}
}

// TestCloseStopsLoops: after Close no timer leads to a refresh, and an
// expired token is not refreshed any more.
func TestCloseStopsLoops(t *testing.T) {
	e := newEnv(t)
	e.authorize()
	e.m.Start(context.Background())
	e.waitRefreshTimer()
	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	calls, adv := e.api.calls(), e.api.advCalls()
	e.clock.Advance(48 * time.Hour)
	if _, err := e.token(); err == nil {
		t.Fatal("Token refreshed after Close")
	}
	if e.api.calls() != calls || e.api.advCalls() != adv {
		t.Fatal("TikTok called after Close")
	}
}

// TestTwoManagersShareStore: a manager whose copy is stale adopts the
// newer record from the store instead of refreshing again or overwriting.
func TestTwoManagersShareStore(t *testing.T) {
	e := newEnv(t)
	e.authorize()
	other := e.newManager()
	e.clock.Set(e.record().AccessExpiresAt)
	if tok := e.mustToken(); tok != "access-1" {
		t.Fatalf("first manager Token = %q", tok)
	}
	tok, err := other.Token(context.Background(), credName)
	if err != nil || tok != "access-1" {
		t.Fatalf("second manager Token = %q, %v; want the adopted access-1", tok, err)
	}
	if n := e.api.calls(); n != 1 {
		t.Fatalf("%d refresh calls, want 1", n)
	}
}

// TestLeaseHeldElsewhere: a manager that cannot take
// the lease does not call TikTok.
func TestLeaseHeldElsewhere(t *testing.T) {
	var ls *fakeLeaser
	e := newEnv(t, func(e *env) {
		ls = &fakeLeaser{held: true}
		e.opts.Leaser = ls
	})
	e.authorize()
	gen := e.record().Generation
	e.clock.Set(e.record().AccessExpiresAt)
	var re *tokens.RefreshError
	if _, err := e.token(); !errors.As(err, &re) {
		t.Fatalf("Token while another holds the lease = %v", err)
	}
	if n := e.api.calls(); n != 0 {
		t.Fatalf("%d refresh calls while the lease was held elsewhere", n)
	}
	// The holder stores its own result: waiting is not a failure, and
	// nothing is written to the record it must compare-and-swap.
	if g := e.record().Generation; g != gen {
		t.Errorf("record written while the lease was held elsewhere: generation %d, want %d", g, gen)
	}
	if f := testutil.ToFloat64(e.opts.Metrics.TokenRefreshes.WithLabelValues(credName, "failure")); f != 0 {
		t.Errorf("%v refresh failures counted for waiting on another replica", f)
	}
	if re.RetryAfter > 2*time.Second {
		t.Errorf("RetryAfter %v, want a re-read within 2s", re.RetryAfter)
	}
	ls.mu.Lock()
	ls.held = false
	ls.mu.Unlock()
	e.clock.Advance(re.RetryAfter)
	if tok := e.mustToken(); tok != "access-1" {
		t.Fatalf("Token = %q", tok)
	}
	if ls.locks != 2 || ls.unlocks != 1 {
		t.Fatalf("lease taken %d times, released %d", ls.locks, ls.unlocks)
	}
}

// TestUnstoredGrantKeepsLease: when TikTok rotated the refresh token but
// storing the answer failed, the refresh lease is kept so no other replica
// spends the refresh token TikTok already invalidated. The retry stores the
// kept grant under the kept lease, without taking it again (the lease is not
// re-entrant) or asking TikTok again, and then releases it once.
func TestUnstoredGrantKeepsLease(t *testing.T) {
	e, ls, st := newUnstoredGrantEnv(t)
	var re *tokens.RefreshError
	if _, err := e.token(); !errors.As(err, &re) {
		t.Fatalf("Token while the store fails = %v, want a RefreshError", err)
	}
	if locks, unlocks, held := ls.state(); locks != 1 || unlocks != 0 || !held {
		t.Fatalf("lease taken %d times, released %d, held %v; want taken once and kept", locks, unlocks, held)
	}
	if st.wasPersisted("access-1") {
		t.Fatal("the grant was stored though the store failed")
	}
	e.clock.Advance(re.RetryAfter)
	if tok, err := e.token(); err != nil || tok != "access-1" {
		t.Fatalf("Token after the store recovered = %q, %v; want the grant TikTok issued", tok, err)
	}
	if n := e.api.calls(); n != 1 {
		t.Fatalf("%d refresh calls, want 1: the unstored grant is stored, not asked for again", n)
	}
	if locks, unlocks, held := ls.state(); locks != 1 || unlocks != 1 || held {
		t.Fatalf("lease taken %d times, released %d, held %v; want the kept lease used and released once", locks, unlocks, held)
	}
	if !st.wasPersisted("access-1") {
		t.Fatal("the grant is not stored")
	}
}

// TestUnstoredGrantLeaseReleased: the lease kept for an unstored grant is
// released exactly once when the grant is dropped (a new authorization
// replaces it, or the Manager closes), and acquired again, not reused, by a
// retry after it was lost.
func TestUnstoredGrantLeaseReleased(t *testing.T) {
	for _, tc := range []struct {
		name      string
		drop      func(e *env)
		wantLocks int
	}{
		{name: "authorized again", wantLocks: 1, drop: func(e *env) {
			g := e.api.grant()
			g.AccessToken = "access-new"
			if _, err := e.m.Authorize(context.Background(), credName, g); err != nil {
				e.t.Fatal(err)
			}
		}},
		{name: "closed", wantLocks: 1, drop: func(e *env) {
			if err := e.m.Close(); err != nil {
				e.t.Fatal(err)
			}
		}},
		{name: "lost, then retried", wantLocks: 2, drop: func(e *env) {
			e.opts.Leaser.(*fakeLeaser).lose()
			e.clock.Advance(31 * time.Second)
			if tok, err := e.token(); err != nil || tok != "access-1" {
				e.t.Fatalf("Token = %q, %v; want the grant TikTok issued", tok, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ls, _ := newUnstoredGrantEnv(t)
			if _, err := e.token(); err == nil {
				t.Fatal("Token served while the store fails")
			}
			if _, unlocks, held := ls.state(); unlocks != 0 || !held {
				t.Fatalf("lease released %d times, held %v; want it kept", unlocks, held)
			}
			tc.drop(e)
			if locks, unlocks, held := ls.state(); locks != tc.wantLocks || unlocks != tc.wantLocks || held {
				t.Fatalf("lease taken %d times, released %d, held %v; want %d and %d, released", locks, unlocks, held, tc.wantLocks, tc.wantLocks)
			}
			if n := e.api.calls(); n != 1 {
				t.Fatalf("%d refresh calls, want 1", n)
			}
			_ = e.m.Close()
			if _, unlocks, _ := ls.state(); unlocks != tc.wantLocks {
				t.Fatalf("lease released %d times after Close, want %d", unlocks, tc.wantLocks)
			}
		})
	}
}

// newUnstoredGrantEnv is an authorized credential at its token's expiry,
// with a fakeLeaser, whose store's next Put fails.
func newUnstoredGrantEnv(t *testing.T) (*env, *fakeLeaser, *orderStore) {
	t.Helper()
	var ls *fakeLeaser
	var st *orderStore
	e := newEnv(t, func(e *env) {
		st = &orderStore{Store: e.store, persisted: map[string]bool{}}
		e.store = st
		ls = &fakeLeaser{}
		e.opts.Leaser = ls
	})
	e.authorize()
	st.mu.Lock()
	st.failPuts = 1
	st.mu.Unlock()
	e.clock.Set(e.record().AccessExpiresAt)
	return e, ls, st
}

// TestRejectedTokenStopsInTheMarkingWrite: TikTok refuses a token, the forced
// refresh proves the grant revoked (40107): the write that marks
// re-authorization also stops the refused token being served, so no moment
// exists where the store offers it as still usable.
func TestRejectedTokenStopsInTheMarkingWrite(t *testing.T) {
	var ws *writeStore
	e := newEnv(t, func(e *env) {
		ws = &writeStore{Store: e.store}
		e.store = ws
	})
	e.authorize()
	e.api.set(func(a *fakeAPI) { a.current = "revoked: no refresh token is accepted" })
	if e.m.Rejected(context.Background(), credName, "access-0", tiktok.CodeTokenInvalid) {
		t.Fatal("Rejected asked for a retry though the refresh was refused")
	}
	if _, err := e.token(); !errors.Is(err, tokens.ErrReauthRequired) {
		t.Fatalf("Token after revocation = %v, want ErrReauthRequired", err)
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	marked := 0
	for _, w := range ws.writes {
		if w.ReauthRequired {
			marked++
			if !w.AccessRejected {
				t.Errorf("write %d marks re-authorization but still offers the refused token", w.Generation)
			}
		}
	}
	if marked != 1 {
		t.Errorf("%d writes marked re-authorization, want 1", marked)
	}
}

// writeStore keeps a copy of every record stored.
type writeStore struct {
	tokens.Store
	mu     sync.Mutex
	writes []tokens.Record
}

func (s *writeStore) Put(ctx context.Context, rec *tokens.Record, expect uint64) error {
	err := s.Store.Put(ctx, rec, expect)
	if err == nil {
		s.mu.Lock()
		s.writes = append(s.writes, *rec.Clone())
		s.mu.Unlock()
	}
	return err
}

// fakeLeaser is a Leaser that is not re-entrant, as a SET NX lease is:
// while held, Acquire refuses everyone, the holder too. Its TTL never runs
// out; lose makes the current lease lost, as an expiry would.
type fakeLeaser struct {
	mu             sync.Mutex
	held           bool // by anyone: set by a test for a holder elsewhere
	locks, unlocks int  // Acquire calls, and Release calls
	cur            *fakeLease
}

type fakeLease struct {
	l        *fakeLeaser
	lost     chan struct{}
	released bool
}

func (l *fakeLeaser) Acquire(ctx context.Context, credential string, ttl time.Duration) (tokens.Lease, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.locks++
	if l.held {
		return nil, false, nil
	}
	l.held = true
	l.cur = &fakeLease{l: l, lost: make(chan struct{})}
	return l.cur, true, nil
}

// lose makes the lease held now lost and the leaser free.
func (l *fakeLeaser) lose() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.cur.lost)
	l.held, l.cur = false, nil
}

func (f *fakeLease) Extend(ctx context.Context) error {
	select {
	case <-f.lost:
		return tokens.ErrLeaseLost
	default:
		return nil
	}
}

func (f *fakeLease) Release(ctx context.Context) error {
	f.l.mu.Lock()
	defer f.l.mu.Unlock()
	f.l.unlocks++
	if f.l.cur == f && !f.released {
		f.released, f.l.held, f.l.cur = true, false, nil
	}
	return nil
}

func (f *fakeLease) Lost() <-chan struct{} { return f.lost }

// state is the leaser's counters and whether a lease is held.
func (l *fakeLeaser) state() (locks, unlocks int, held bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.locks, l.unlocks, l.held
}

func TestErrors(t *testing.T) {
	e := newEnv(t)
	if _, err := e.token(); !errors.Is(err, tokens.ErrNotAuthorized) {
		t.Fatalf("Token before Authorize = %v", err)
	}
	if _, err := e.m.Token(context.Background(), "nope"); !errors.Is(err, tokens.ErrUnknownCredential) {
		t.Fatalf("Token(nope) = %v", err)
	}
	if e.m.Source("nope") != nil {
		t.Fatal("Source(nope) is not nil")
	}
	e.authorize()
	tok, err := e.m.Source(credName).Token()
	if err != nil || tok.AccessToken != "access-0" || !tok.Expiry.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("Source.Token = %+v, %v", tok, err)
	}
	if err := e.m.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestStatusTable(t *testing.T) {
	now := t0
	rec := &tokens.Record{
		Credential: "main", AccessToken: "SECRET-A", RefreshToken: "SECRET-R",
		AccessExpiresAt: now.Add(5*time.Hour + 12*time.Minute), RefreshExpiresAt: now.Add(300 * 24 * time.Hour),
		Advertisers:  []tokens.Advertiser{{ID: "7000000000000000001", Name: "Shop\tOne"}},
		AuthorizedAt: now.Add(-time.Hour), LastRefresh: tokens.RefreshResult{At: now.Add(-42 * time.Second), OK: true},
	}
	gone := &tokens.Record{Credential: "old", AccessToken: "SECRET-B", ReauthRequired: true, ReauthReason: "TikTok refused the refresh token (code 40107)"}
	st := []tokens.Status{
		tokens.StatusFromRecord("main", tiktok.KindAdvertiser, rec),
		tokens.StatusFromRecord("old", tiktok.KindTikTokAccount, gone),
		tokens.StatusFromRecord("new", "", nil),
	}
	var buf bytes.Buffer
	if err := tokens.FormatStatusTable(&buf, st, now); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"NAME", "KIND", "ACCESS EXPIRES IN", "REFRESH EXPIRES IN", "LAST REFRESH",
		"7000000000000000001 (Shop One)", "5h12m", "300d", "ok 42s ago",
		"yes (TikTok refused the refresh token (code 40107))", "never",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Each row in column order, the kind after the advertisers.
	for _, row := range []string{
		`^NAME\s+AUTHORIZED\s+ADVERTISERS\s+KIND\s+ACCESS EXPIRES IN\s+REFRESH EXPIRES IN\s+REAUTH\s+LAST REFRESH$`,
		`^main\s+yes\s+7000000000000000001 \(Shop One\)\s+advertiser\s+5h12m\s+300d\s+no\s+ok 42s ago$`,
		`^old\s+yes\s+-\s+tiktok_account\s+never\s+-\s+yes \(`,
		`^new\s+no\s+-\s+advertiser\s+-\s+-\s+no\s+-$`,
	} {
		if !regexp.MustCompile(`(?m)` + row).MatchString(out) {
			t.Errorf("no row matches %s:\n%s", row, out)
		}
	}
	if strings.Contains(out, "SECRET") {
		t.Fatalf("table shows a token:\n%s", out)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 {
		t.Fatalf("%d lines, want header and 3 rows:\n%s", len(lines), out)
	}
	if st[2].Authorized || st[2].Advertisers == nil {
		t.Fatalf("nil record status %+v", st[2])
	}
	js, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"name":"main","kind":"advertiser"`, `"name":"old","kind":"tiktok_account"`, `"name":"new","kind":"advertiser"`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("status JSON lacks %s: %s", want, js)
		}
	}
}

// TestStatusKind: the Manager reports each credential's configured kind.
func TestStatusKind(t *testing.T) {
	e := newEnv(t, func(e *env) {
		e.creds = []tokens.Credential{
			{Name: credName, App: tiktok.App{AppID: "app"}},
			{Name: "tt", App: tiktok.App{AppID: "tt-app", Kind: tiktok.KindTikTokAccount}},
		}
	})
	want := map[string]string{credName: tiktok.KindAdvertiser, "tt": tiktok.KindTikTokAccount}
	for _, s := range e.m.Statuses() {
		if s.Kind != want[s.Name] {
			t.Errorf("Statuses: %s has kind %q, want %q", s.Name, s.Kind, want[s.Name])
		}
	}
	e.authorize()
	if st, err := e.m.Status(credName); err != nil || st.Kind != tiktok.KindAdvertiser {
		t.Errorf("Status(%s) kind %q, %v", credName, st.Kind, err)
	}
	if st, err := e.m.Status("tt"); err != nil || st.Kind != tiktok.KindTikTokAccount {
		t.Errorf("Status(tt) kind %q, %v", st.Kind, err)
	}
}

// TestIdleRevocationNoticedByListing: nobody calls TikTok with an idle
// credential, yet its revocation is marked within one listing interval.
// A refreshable grant's listing is rejected and the one forced refresh
// fails with 40107; a long-lived grant's rejected listing is checked again
// at once, and that check's refusal marks it.
func TestIdleRevocationNoticedByListing(t *testing.T) {
	for _, tc := range []struct {
		name         string
		longLived    bool
		wantCalls    int
		wantListings int
	}{
		{name: "refreshable", wantCalls: 1, wantListings: 3},
		{name: "long-lived", longLived: true, wantListings: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(e *env) { e.opts.AdvertiserInterval = time.Minute })
			g := e.api.grant()
			if tc.longLived {
				g.ExpiresIn, g.RefreshToken = 0, ""
			}
			if _, err := e.m.Authorize(context.Background(), credName, g); err != nil {
				t.Fatal(err)
			}
			e.m.Start(context.Background())
			waitFor(t, "listing at start", func() bool { return e.api.advCalls() > 1 })
			if e.record().ReauthRequired {
				t.Fatal("marked before the revocation")
			}
			e.api.set(func(a *fakeAPI) {
				a.advErr = &tiktok.APIError{Code: tiktok.CodeTokenInvalid, Message: "Access token is invalid"}
				a.current = "revoked: no refresh token is accepted"
			})
			at := e.clock.waitWaiter(t, "listing timer", func(at time.Time) bool { return at.Equal(t0.Add(time.Minute)) })
			e.clock.Set(at)
			// The Manager's own state, which follows the store only once the
			// write that marks it has returned.
			waitFor(t, "re-authorization marked", func() bool {
				st, _ := e.m.Status(credName)
				return st.ReauthRequired
			})
			rec := e.record()
			if !rec.ReauthRequired {
				t.Fatal("re-authorization not persisted")
			}
			if rec.LastRefresh.At.After(t0.Add(time.Minute)) {
				t.Errorf("marked at %v, more than a minute after the revocation", rec.LastRefresh.At)
			}
			if n := e.api.calls(); n != tc.wantCalls {
				t.Errorf("%d refresh calls, want %d", n, tc.wantCalls)
			}
			if n := e.api.advCalls(); n != tc.wantListings {
				t.Errorf("%d advertiser listings, want %d: at authorization, at start, the rejected one (and its check)", n, tc.wantListings)
			}
			if _, err := e.token(); !errors.Is(err, tokens.ErrReauthRequired) {
				t.Errorf("Token after revocation: %v, want ErrReauthRequired", err)
			}
		})
	}
}

// TestListingGlitchLongLived: the periodic listing of a long-lived grant
// refused once, by a glitch, is checked again at once; TikTok accepting the
// check marks nothing, and the grant keeps serving through later listings.
func TestListingGlitchLongLived(t *testing.T) {
	e := newEnv(t, func(e *env) { e.opts.AdvertiserInterval = time.Minute })
	g := e.api.grant()
	g.ExpiresIn, g.RefreshToken = 0, ""
	if _, err := e.m.Authorize(context.Background(), credName, g); err != nil {
		t.Fatal(err)
	}
	e.api.set(func(a *fakeAPI) {
		a.advAnswers = []error{nil, &tiktok.APIError{Code: tiktok.CodeTokenInvalid, Message: "Access token is invalid"}}
	})
	e.m.Start(context.Background())
	for i := 1; i <= 3; i++ {
		at := e.clock.waitWaiter(t, "listing timer", func(at time.Time) bool { return at.Equal(t0.Add(time.Duration(i) * time.Minute)) })
		e.clock.Set(at)
	}
	e.clock.waitWaiter(t, "listing timer", func(at time.Time) bool { return at.Equal(t0.Add(4 * time.Minute)) })
	// At authorization, at start, the refused one and its check, two more.
	if n := e.api.advCalls(); n != 6 {
		t.Errorf("%d advertiser listings, want 6", n)
	}
	if tok, err := e.token(); err != nil || tok != "access-0" {
		t.Fatalf("Token after one refused listing = %q, %v; want the grant TikTok still accepts", tok, err)
	}
	if r := e.record(); r.ReauthRequired || r.AccessRejected {
		t.Fatalf("marked after one refused listing: %q", r.ReauthReason)
	}
}

// TestLostRefreshTokenKeepsServingValidAccessToken: when TikTok refuses the
// refresh token (expired, revoked, or spent by a refresh whose answer a
// crash lost) the credential is marked for re-authorization, yet its access
// token, still valid and not refused by TikTok, keeps serving until TikTok
// refuses it or it expires.
func TestLostRefreshTokenKeepsServingValidAccessToken(t *testing.T) {
	e := newEnv(t)
	e.authorize()
	e.api.set(func(a *fakeAPI) { a.current = "rotated by a refresh whose answer was lost" })
	e.m.Start(context.Background())
	// Only the refresh-ahead timer is due before the token expires: the
	// advertiser loop's timer (AdvertiserInterval later) may be set first,
	// and jumping to it would expire access-0.
	e.clock.Set(e.waitRefreshTimer())
	waitFor(t, "re-authorization marked", func() bool {
		st, _ := e.m.Status(credName)
		return st.ReauthRequired
	})
	if !e.record().ReauthRequired {
		t.Fatal("re-authorization not persisted")
	}
	if tok, err := e.token(); err != nil || tok != "access-0" {
		t.Fatalf("Token before expiry = %q, %v; want the still-valid access-0", tok, err)
	}
	if g := testutil.ToFloat64(e.opts.Metrics.ReauthRequired.WithLabelValues(credName)); g != 1 {
		t.Fatalf("reauthorization gauge %v", g)
	}
	// A rejection the check disproves (a caller's crafted request, a
	// glitch) leaves it serving.
	calls := e.api.calls()
	if e.m.Rejected(context.Background(), credName, "access-0", tiktok.CodeTokenInvalid) {
		t.Fatal("Rejected asked for a retry without any token to retry with")
	}
	if tok, err := e.token(); err != nil || tok != "access-0" {
		t.Fatalf("Token after a rejection the check disproved = %q, %v; want access-0 still served", tok, err)
	}
	// TikTok refuses it, and the check too: no refresh is attempted, it
	// stops serving.
	e.clock.Advance(time.Minute)
	e.api.set(func(a *fakeAPI) {
		a.advErr = &tiktok.APIError{Code: tiktok.CodeTokenInvalid, Message: "Access token is invalid"}
	})
	if e.m.Rejected(context.Background(), credName, "access-0", tiktok.CodeTokenInvalid) {
		t.Fatal("Rejected asked for a retry without any token to retry with")
	}
	if _, err := e.token(); !errors.Is(err, tokens.ErrReauthRequired) {
		t.Fatalf("Token after TikTok refused it = %v, want ErrReauthRequired", err)
	}
	if e.api.calls() != calls {
		t.Fatal("a refresh was attempted with a refresh token known to be gone")
	}
	if !e.record().AccessRejected {
		t.Fatal("the refusal is not persisted")
	}
	// A new authorization clears everything.
	e.api.set(func(a *fakeAPI) { a.current, a.advErr = "refresh-0", nil })
	e.authorize()
	if tok, err := e.token(); err != nil || tok != "access-0" {
		t.Fatalf("Token after re-authorization = %q, %v", tok, err)
	}
	if r := e.record(); r.ReauthRequired || r.AccessRejected {
		t.Fatalf("re-authorization left flags: %+v", r.ReauthRequired)
	}
}

// TestTikTokAccountNotListed: a tiktok_account grant names no advertisers,
// so the advertiser listing is never called for it (it would fail every
// interval), while the loop itself keeps running.
func TestTikTokAccountNotListed(t *testing.T) {
	e := newEnv(t, func(e *env) {
		e.opts.AdvertiserInterval = time.Minute
		e.creds[0].App.Kind = tiktok.KindTikTokAccount
	})
	e.authorize()
	e.m.Start(context.Background())
	for i := 1; i <= 3; i++ {
		at := e.clock.waitWaiter(t, "listing timer", func(at time.Time) bool { return at.Equal(t0.Add(time.Duration(i) * time.Minute)) })
		e.clock.Set(at)
	}
	e.clock.waitWaiter(t, "listing timer", func(at time.Time) bool { return at.Equal(t0.Add(4 * time.Minute)) })
	if n := e.api.advCalls(); n != 0 {
		t.Fatalf("%d advertiser listings for a tiktok_account credential, want 0", n)
	}
}

// TestDroppedFieldsKeepTheGrant: a refresh answer with an unusable
// advertiser id still rotates the credential (its new refresh token is
// kept), and the dropped field is logged.
func TestDroppedFieldsKeepTheGrant(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	e := newEnv(t, func(e *env) {
		e.opts.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	})
	e.api.set(func(a *fakeAPI) {
		a.beforeReturn = func(g *tiktok.Grant) {
			g.Dropped = []string{`advertiser_ids: "7.0e18" is not an advertiser id (want digits)`}
		}
	})
	e.authorize()
	e.clock.Set(e.record().AccessExpiresAt)
	if tok := e.mustToken(); tok != "access-1" {
		t.Fatalf("Token = %q, want the refreshed access-1", tok)
	}
	if r := e.record(); r.RefreshToken != "refresh-1" {
		t.Fatalf("stored refresh token %q, want the rotated refresh-1", r.RefreshToken)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), `field="advertiser_ids: \"7.0e18\" is not an advertiser id (want digits)"`) {
		t.Fatalf("dropped field not logged:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestShortLivedTokensServe: a token living only seconds (a simulator's
// short access TTL) is served, not treated as expired on arrival, and its
// refresh is served too instead of reported as a failed refresh.
func TestShortLivedTokensServe(t *testing.T) {
	e := newEnv(t, func(e *env) { e.api.expiresIn = 6 * time.Second })
	e.authorize()
	if tok, err := e.token(); err != nil || tok != "access-0" {
		t.Fatalf("Token of a fresh 6s token = %q, %v; want access-0", tok, err)
	}
	if n := e.api.calls(); n != 0 {
		t.Fatalf("%d refreshes of a token just issued", n)
	}
	e.clock.Advance(4600 * time.Millisecond) // within a quarter of its life of expiry
	if tok, err := e.token(); err != nil || tok != "access-1" {
		t.Fatalf("Token near expiry = %q, %v; want the refreshed access-1", tok, err)
	}
	if n := e.api.calls(); n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
}
