package tokens_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// TestLeaseExtendedDuringLongRefresh: a TikTok call that outlives the
// lease's initial TTL keeps its lease, extended in the background, so a
// second Manager sharing the store and the leaser does not refresh too; it
// picks up the result once stored.
func TestLeaseExtendedDuringLongRefresh(t *testing.T) {
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	var leaser *tokens.MemoryLeaser
	e := newEnv(t, func(e *env) {
		leaser = tokens.NewMemoryLeaser(e.clock.Now)
		e.opts.Leaser = leaser
	})
	e.authorize()
	e.api.set(func(a *fakeAPI) { a.gate, a.entered = gate, entered })
	e.clock.Set(e.record().AccessExpiresAt)
	first := make(chan error, 1)
	go func() { _, err := e.token(); first <- err }()
	<-entered
	// Three minutes of clock time, twice the lease's TTL, pass while TikTok
	// holds the call: each renewal tick extends the lease.
	for range 6 {
		now := e.clock.Now()
		e.clock.Set(e.clock.waitWaiter(t, "the lease renewal", func(at time.Time) bool {
			return at.After(now) && !at.After(now.Add(time.Minute))
		}))
	}
	other := e.newManager()
	_, err := other.Token(context.Background(), credName)
	var re *tokens.RefreshError
	if !errors.As(err, &re) {
		t.Fatalf("second Manager's Token while the lease is held = %v, want *RefreshError", err)
	}
	if n := e.api.calls(); n != 1 {
		t.Fatalf("%d refresh calls, want 1: the extended lease kept the second Manager out", n)
	}
	close(gate)
	if err := <-first; err != nil {
		t.Fatalf("the lease holder's Token = %v", err)
	}
	if rec := e.record(); rec.AccessToken != "access-1" {
		t.Fatalf("stored %q, want access-1", rec.AccessToken)
	}
	e.clock.Advance(re.RetryAfter)
	if tok, err := other.Token(context.Background(), credName); err != nil || tok != "access-1" {
		t.Fatalf("second Manager's Token after the store = %q, %v; want access-1", tok, err)
	}
}

// loseOnGet is a store whose Get, once armed, makes the lease lost: the
// read under the lease then happens with the lease already gone.
type loseOnGet struct {
	tokens.Store
	leaser *fakeLeaser
	armed  chan struct{}
}

func (s *loseOnGet) Get(ctx context.Context, credential string) (*tokens.Record, error) {
	select {
	case <-s.armed:
		s.leaser.mu.Lock()
		held := s.leaser.cur != nil
		s.leaser.mu.Unlock()
		if held {
			s.leaser.lose()
		}
	default:
	}
	return s.Store.Get(ctx, credential)
}

// TestLostLeaseDoesNotCallTikTok: a holder that knows its lease is lost
// before it calls TikTok does not call, and stores nothing: another process
// may refresh with the same refresh token.
func TestLostLeaseDoesNotCallTikTok(t *testing.T) {
	var st *loseOnGet
	e := newEnv(t, func(e *env) {
		l := &fakeLeaser{}
		st = &loseOnGet{Store: e.store, leaser: l, armed: make(chan struct{})}
		e.store, e.opts.Leaser = st, l
	})
	e.authorize()
	gen := e.record().Generation
	close(st.armed)
	e.clock.Set(e.record().AccessExpiresAt)
	var re *tokens.RefreshError
	if _, err := e.token(); !errors.As(err, &re) {
		t.Fatalf("Token with the lease lost = %v, want *RefreshError", err)
	}
	if n := e.api.calls(); n != 0 {
		t.Fatalf("%d refresh calls with the lease lost, want 0", n)
	}
	if g := e.record().Generation; g != gen {
		t.Fatalf("record written with the lease lost: generation %d, want %d", g, gen)
	}
}

// TestLostLeaseCancelsUnsentCall: the lease lost while the TikTok call has
// not yet gone out cancels the call.
func TestLostLeaseCancelsUnsentCall(t *testing.T) {
	gate := make(chan struct{})
	defer close(gate)
	entered := make(chan struct{}, 1)
	l := &fakeLeaser{}
	e := newEnv(t, func(e *env) { e.opts.Leaser = l })
	e.authorize()
	e.api.set(func(a *fakeAPI) { a.gate, a.entered = gate, entered })
	e.clock.Set(e.record().AccessExpiresAt)
	done := make(chan error, 1)
	go func() { _, err := e.token(); done <- err }()
	<-entered
	l.lose()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		// The refresh's own timeout (a minute) would end it otherwise.
		t.Fatal("the call went on after the lease was lost before it was sent")
	}
	var re *tokens.RefreshError
	if !errors.As(err, &re) {
		t.Fatalf("Token after the lease was lost mid-call = %v, want *RefreshError", err)
	}
	if rec := e.record(); rec.AccessToken != "access-0" {
		t.Fatalf("stored %q, want the old grant untouched", rec.AccessToken)
	}
}

// TestStaleHolderNeverOverwrites: a holder whose lease was lost after
// TikTok answered it finds a newer grant stored by the new holder; the
// store's compare-and-swap fences its write, and the newer grant stays.
func TestStaleHolderNeverOverwrites(t *testing.T) {
	l := &fakeLeaser{}
	e := newEnv(t, func(e *env) { e.opts.Leaser = l })
	e.authorize()
	e.api.set(func(a *fakeAPI) {
		a.beforeReturn = func(*tiktok.Grant) {
			// Meanwhile the lease expired and another replica refreshed and
			// stored its grant.
			l.lose()
			rec, err := e.store.Get(context.Background(), credName)
			if err != nil {
				t.Error(err)
				return
			}
			rec.AccessToken, rec.RefreshToken = "access-newer", "refresh-newer"
			rec.AccessExpiresAt = e.clock.Now().Add(24 * time.Hour)
			if err := e.store.Put(context.Background(), rec, rec.Generation); err != nil {
				t.Error(err)
			}
		}
	})
	e.clock.Set(e.record().AccessExpiresAt)
	tok, err := e.token()
	if err != nil || tok != "access-newer" {
		t.Fatalf("Token = %q, %v; want the newer grant", tok, err)
	}
	if rec := e.record(); rec.AccessToken != "access-newer" || rec.RefreshToken != "refresh-newer" {
		t.Fatalf("stored %q / %q: the stale holder overwrote the newer grant", rec.AccessToken, rec.RefreshToken)
	}
}

// TestLeaseLostAfterSend: a call already sent is not cancelled when the
// lease is lost; when the new holder spent the refresh token meanwhile,
// TikTok's refusal (40107) does not mark the grant: the new holder stores
// its result, which this Manager then serves.
func TestLeaseLostAfterSend(t *testing.T) {
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	l := &fakeLeaser{}
	e := newEnv(t, func(e *env) { e.opts.Leaser = l })
	e.authorize()
	e.api.set(func(a *fakeAPI) { a.gate, a.entered, a.sent = gate, entered, true })
	e.clock.Set(e.record().AccessExpiresAt)
	done := make(chan error, 1)
	go func() { _, err := e.token(); done <- err }()
	<-entered
	l.lose()
	// The new holder refreshed with the same refresh token and has not
	// stored its grant yet; TikTok now refuses the spent one.
	e.api.set(func(a *fakeAPI) { a.current = "refresh-by-the-new-holder" })
	close(gate)
	var re *tokens.RefreshError
	if err := <-done; !errors.As(err, &re) {
		t.Fatalf("Token of the holder that lost its lease = %v, want *RefreshError", err)
	}
	if got := e.record(); got.ReauthRequired || got.AccessToken != "access-0" {
		t.Fatalf("stored %q, re-authorization %v: the stale holder's refusal changed the grant", got.AccessToken, got.ReauthRequired)
	}
	rec, err := e.store.Get(context.Background(), credName)
	if err != nil {
		t.Fatal(err)
	}
	rec.AccessToken, rec.RefreshToken = "access-by-the-new-holder", "refresh-by-the-new-holder"
	rec.AccessExpiresAt = e.clock.Now().Add(24 * time.Hour)
	if err := e.store.Put(context.Background(), rec, rec.Generation); err != nil {
		t.Fatalf("the new holder's write = %v", err)
	}
	e.clock.Advance(re.RetryAfter)
	if tok, err := e.token(); err != nil || tok != "access-by-the-new-holder" {
		t.Fatalf("Token after the new holder stored = %q, %v", tok, err)
	}
}
