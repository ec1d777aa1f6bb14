package tokens_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// staleStore answers the next Gets from a queue the test fills, as a
// notification that arrives after a newer write was already adopted would
// find an older record (or the store unreachable); it counts Gets.
type staleStore struct {
	tokens.Store
	mu      sync.Mutex
	gets    int
	answers []getAnswer // answered in turn by the next Gets, before the store
}

type getAnswer struct {
	rec *tokens.Record
	err error
}

func (s *staleStore) Get(ctx context.Context, credential string) (*tokens.Record, error) {
	s.mu.Lock()
	s.gets++
	var a *getAnswer
	if len(s.answers) > 0 {
		a = &s.answers[0]
		s.answers = s.answers[1:]
	}
	s.mu.Unlock()
	if a != nil {
		return a.rec.Clone(), a.err
	}
	return s.Store.Get(ctx, credential)
}

func (s *staleStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

// put stores rec as another replica would: straight into the store, which
// the Manager learns of only by reading it.
func put(t *testing.T, st tokens.Store, rec *tokens.Record, expect uint64) {
	t.Helper()
	if err := st.Put(context.Background(), rec, expect); err != nil {
		t.Fatal(err)
	}
}

// TestChangesAdoptedWithoutRequest: a name on Options.Changes makes the
// credential re-read its record and adopt a newer one, with no request and
// no timer: first a grant another replica stored for a credential that was
// not authorized, then that replica's refresh. A record older than the one
// held is read but not adopted.
func TestChangesAdoptedWithoutRequest(t *testing.T) {
	changes := make(chan string)
	var st *staleStore
	e := newEnv(t, func(e *env) {
		st = &staleStore{Store: e.store}
		e.store = st
		e.opts.Changes = changes
	})
	e.m.Start(context.Background())
	// The advertiser loop's first pass re-reads the store of a credential
	// that is not authorized; from its next timer on, nothing but a
	// notification reads it while the clock stands still.
	e.clock.waitWaiter(t, "the listing timer", func(at time.Time) bool { return at.Equal(t0.Add(e.opts.AdvertiserInterval)) })
	const granted, refreshed, old = "7000000000000000071", "7000000000000000072", "7000000000000000073"

	// A grant stored elsewhere for a credential that is not authorized.
	rec := &tokens.Record{Credential: credName, AccessToken: "access-other", RefreshToken: "refresh-other",
		AccessExpiresAt: t0.Add(24 * time.Hour), AuthorizedAt: t0, Advertisers: []tokens.Advertiser{{ID: granted}}}
	put(t, e.store, rec, 0)
	changes <- "not-configured" // ignored
	changes <- credName
	waitFor(t, "the grant adopted", func() bool { _, ok := e.m.CredentialFor(granted); return ok })

	// Its refresh, stored elsewhere too.
	next := rec.Clone()
	next.AccessToken, next.RefreshToken = "access-refreshed", "refresh-refreshed"
	next.Advertisers = append(next.Advertisers, tokens.Advertiser{ID: refreshed})
	put(t, e.store, next, rec.Generation)
	changes <- credName
	waitFor(t, "the refresh adopted", func() bool { _, ok := e.m.CredentialFor(refreshed); return ok })
	if tok := e.mustToken(); tok != "access-refreshed" {
		t.Fatalf("Token = %q, want the refresh another replica stored", tok)
	}

	// A notification whose read finds an older generation.
	older := rec.Clone()
	older.AccessToken = "access-older"
	older.Advertisers = []tokens.Advertiser{{ID: old}}
	// The read after it fails and waits for the (still) clock to try again,
	// so nothing re-adopts the newer record meanwhile; and reads are one at
	// a time: once it happened, the older record's read was handled.
	st.mu.Lock()
	st.answers = []getAnswer{{rec: older}, {err: errors.New("unreachable")}}
	gets := st.gets
	st.mu.Unlock()
	changes <- credName
	waitFor(t, "the older record read", func() bool { return st.count() > gets })
	changes <- credName
	waitFor(t, "a read after it", func() bool { return st.count() > gets+1 })
	if tok := e.mustToken(); tok != "access-refreshed" {
		t.Fatalf("Token = %q after an older record was read, want access-refreshed kept", tok)
	}
	if _, ok := e.m.CredentialFor(old); ok {
		t.Fatal("the older record's advertiser was indexed")
	}
	if n := e.api.calls(); n != 0 {
		t.Fatalf("%d refreshes, want none: every change came from the store", n)
	}
}

// TestChangedGrantForgetsRejections: a new grant adopted by notification
// answers for none of the old grant's rejections, as one authorized here
// does: its first rejection is refreshed once, not checked as a second
// rejection of a token just issued would be.
func TestChangedGrantForgetsRejections(t *testing.T) {
	changes := make(chan string)
	e := newEnv(t, func(e *env) { e.opts.Changes = changes })
	e.authorize()
	e.m.Start(context.Background())
	e.clock.waitWaiter(t, "the listing timer", func(at time.Time) bool { return at.Equal(t0.Add(e.opts.AdvertiserInterval)) })
	if !e.m.Rejected(context.Background(), credName, "access-0", tiktok.CodeTokenInvalid) {
		t.Fatal("the first rejection did not refresh")
	}

	// Another replica stores a new grant (authorized later) with TikTok's
	// current refresh token.
	const newAdvertiser = "7000000000000000074"
	e.clock.Advance(time.Second)
	rec := e.record()
	gen := rec.Generation
	rec.AccessToken, rec.AuthorizedAt, rec.LastRefresh = "access-new", e.clock.Now(), tokens.RefreshResult{}
	rec.Advertisers = append(rec.Advertisers, tokens.Advertiser{ID: newAdvertiser})
	put(t, e.store, rec, gen)
	changes <- credName
	waitFor(t, "the new grant adopted", func() bool { _, ok := e.m.CredentialFor(newAdvertiser); return ok })

	calls, checks := e.api.calls(), e.api.advCalls()
	if !e.m.Rejected(context.Background(), credName, "access-new", tiktok.CodeTokenInvalid) {
		t.Fatal("the new grant's first rejection did not refresh")
	}
	if e.api.calls() != calls+1 || e.api.advCalls() != checks {
		t.Fatalf("refreshes %d → %d, checks %d → %d: want one refresh and no check", calls, e.api.calls(), checks, e.api.advCalls())
	}
}
