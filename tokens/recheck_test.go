package tokens_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/filestore"
)

// getCounter counts the reads a Manager makes of its store.
type getCounter struct {
	tokens.Store
	mu   sync.Mutex
	gets int
}

func (c *getCounter) Get(ctx context.Context, credential string) (*tokens.Record, error) {
	c.mu.Lock()
	c.gets++
	c.mu.Unlock()
	return c.Store.Get(ctx, credential)
}

func (c *getCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets
}

// otherProcess is a second Manager on the same token file through its own
// filestore, as the authorize command is while serve runs.
func otherProcess(t *testing.T, e *env, path string) *tokens.Manager {
	t.Helper()
	st, err := filestore.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := e.opts
	opts.Metrics = nil // the gauges checked are the serving Manager's
	m, err := tokens.NewManager(context.Background(), st, e.creds, e.api, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func newSharedFileEnv(t *testing.T, tweak ...func(e *env)) (*env, *getCounter, string) {
	t.Helper()
	var gc *getCounter
	var path string
	e := newEnv(t, append([]func(e *env){func(e *env) {
		path = e.store.(*filestore.Store).Path()
		gc = &getCounter{Store: e.store}
		e.store = gc
	}}, tweak...)...)
	return e, gc, path
}

// TestGrantStoredByAnotherProcess: a credential that is not authorized, or
// needs re-authorization, picks up a grant another process wrote to the
// store, re-reading it at most once a second; an authorized credential's
// Token never reads the store.
func TestGrantStoredByAnotherProcess(t *testing.T) {
	e, gc, path := newSharedFileEnv(t)
	other := otherProcess(t, e, path)
	ctx := context.Background()

	if _, err := e.token(); !errors.Is(err, tokens.ErrNotAuthorized) {
		t.Fatalf("Token before any authorization = %v", err)
	}
	reads := gc.count()
	for range 100 {
		if _, err := e.token(); !errors.Is(err, tokens.ErrNotAuthorized) {
			t.Fatalf("Token = %v", err)
		}
	}
	if n := gc.count() - reads; n != 0 {
		t.Fatalf("%d store reads within a second of the last one, want 0", n)
	}

	if _, err := other.Authorize(ctx, credName, e.api.grant()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.token(); !errors.Is(err, tokens.ErrNotAuthorized) {
		t.Fatalf("Token within the second after the last read = %v, want still ErrNotAuthorized", err)
	}
	e.clock.Advance(time.Second)
	if tok, err := e.token(); err != nil || tok != "access-0" {
		t.Fatalf("Token a second later = %q, %v; want the grant the other process stored", tok, err)
	}
	if st, _ := e.m.Status(credName); !st.Authorized {
		t.Fatalf("status %+v after adopting the grant", st)
	}
	reads = gc.count()
	for range 1000 {
		e.mustToken()
	}
	e.clock.Advance(time.Hour)
	for range 1000 {
		e.mustToken()
	}
	if n := gc.count() - reads; n != 0 {
		t.Fatalf("an authorized credential's Token read the store %d times", n)
	}

	// TikTok refuses the refresh token: re-authorization is needed, then
	// given by the other process.
	e.api.set(func(a *fakeAPI) { a.current = "revoked: no refresh token is accepted" })
	e.clock.Set(e.record().AccessExpiresAt)
	if _, err := e.token(); !errors.Is(err, tokens.ErrReauthRequired) {
		t.Fatalf("Token after revocation = %v", err)
	}
	e.clock.Advance(time.Second) // past the rate limit of reads made so far
	if _, err := e.token(); !errors.Is(err, tokens.ErrReauthRequired) {
		t.Fatalf("Token before re-authorization = %v", err)
	}
	e.api.set(func(a *fakeAPI) { a.current = "refresh-new" })
	fresh := &tiktok.Grant{AccessToken: "access-new", ExpiresIn: 24 * time.Hour, RefreshToken: "refresh-new"}
	if _, err := other.Authorize(ctx, credName, fresh); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	if tok, err := e.token(); err != nil || tok != "access-new" {
		t.Fatalf("Token after the other process re-authorized = %q, %v", tok, err)
	}
	if st, _ := e.m.Status(credName); st.ReauthRequired || !st.Authorized {
		t.Fatalf("status %+v after adopting the new grant", st)
	}
}

// TestGrantStoredByAnotherProcessIdle: with no request at all, the
// advertiser loop notices the grant within its interval, so the gauges
// follow.
func TestGrantStoredByAnotherProcessIdle(t *testing.T) {
	e, _, path := newSharedFileEnv(t, func(e *env) { e.opts.AdvertiserInterval = time.Minute })
	other := otherProcess(t, e, path)
	e.m.Start(context.Background())
	at := e.clock.waitWaiter(t, "listing timer", func(at time.Time) bool { return at.Equal(t0.Add(time.Minute)) })
	if v, _ := gaugeValue(t, e.reg, "credential_authorized"); v != 0 {
		t.Fatalf("credential_authorized %v before any authorization", v)
	}
	if _, err := other.Authorize(context.Background(), credName, e.api.grant()); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(at)
	waitFor(t, "the serving manager to adopt the grant", func() bool {
		v, _ := gaugeValue(t, e.reg, "credential_authorized")
		return v == 1
	})
	if _, ok := gaugeValue(t, e.reg, "access_token_expiry_timestamp_seconds"); !ok {
		t.Fatal("no access expiry gauge for the adopted grant")
	}
}

// TestNewGrantForgetsOldRejections: a check of a grant that another
// process has since replaced answers for none of the new grant's
// rejections: the new token's first rejection, even seconds later, is
// checked and, accepted, marks nothing.
func TestNewGrantForgetsOldRejections(t *testing.T) {
	e, _, path := newSharedFileEnv(t)
	other := otherProcess(t, e, path)
	ctx := context.Background()
	longLived := func(tok string) *tiktok.Grant {
		return &tiktok.Grant{AccessToken: tok, AdvertiserIDs: []string{"7000000000000000001"}}
	}
	if _, err := e.m.Authorize(ctx, credName, longLived("access-0")); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	e.m.Rejected(ctx, credName, "access-0", tiktok.CodeTokenInvalid) // a glitch: the check passes
	e.clock.Advance(time.Minute)
	if _, err := other.Authorize(ctx, credName, longLived("access-new")); err != nil {
		t.Fatal(err)
	}
	// The re-authorization revoked the old token: its check is refused, and
	// marking it finds the new grant.
	e.api.set(func(a *fakeAPI) {
		a.advAnswers = []error{&tiktok.APIError{Code: tiktok.CodeTokenInvalid, Message: "Access token is invalid"}}
	})
	e.m.Rejected(ctx, credName, "access-0", tiktok.CodeTokenInvalid)
	if tok, err := e.token(); err != nil || tok != "access-new" {
		t.Fatalf("Token = %q, %v; want the other process's grant", tok, err)
	}
	checks := e.api.advCalls()
	e.clock.Advance(time.Second)
	e.m.Rejected(ctx, credName, "access-new", tiktok.CodeTokenInvalid)
	if n := e.api.advCalls() - checks; n != 1 {
		t.Fatalf("%d checks of the new grant's first rejection, want 1", n)
	}
	if tok, err := e.token(); err != nil || tok != "access-new" {
		t.Fatalf("Token after one glitch of the new grant = %q, %v", tok, err)
	}
	if e.record().ReauthRequired {
		t.Fatal("the new grant was marked for the old one's rejections")
	}
}

// hangingStore is a store whose reads, once hang is set, wait for their
// context to end, as a store that stopped answering does.
type hangingStore struct {
	tokens.Store
	hang      atomic.Bool
	deadlines chan time.Duration // how far off each hung read's deadline was (-1: none)
}

func (h *hangingStore) Get(ctx context.Context, credential string) (*tokens.Record, error) {
	if !h.hang.Load() {
		return h.Store.Get(ctx, credential)
	}
	left := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	h.deadlines <- left
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestStatusWithHungStore: the store re-read of a credential that cannot
// serve is bounded, so /authorize and /api/credentials answer, showing the
// known state, while the store hangs.
func TestStatusWithHungStore(t *testing.T) {
	var hs *hangingStore
	e := newEnv(t, func(e *env) {
		hs = &hangingStore{Store: e.store, deadlines: make(chan time.Duration, 10)}
		e.store = hs
	})
	hs.hang.Store(true)
	done := make(chan []tokens.Status, 1)
	go func() { done <- e.m.Statuses() }()
	var left time.Duration
	select {
	case left = <-hs.deadlines:
	case <-time.After(10 * time.Second):
		t.Fatal("Statuses did not re-read the store of a credential that is not authorized")
	}
	if left <= 0 || left > 2*time.Second {
		t.Fatalf("the re-read's deadline is %v away, want at most 2s", left)
	}
	select {
	case st := <-done:
		if len(st) != 1 || st[0].Authorized {
			t.Fatalf("Statuses = %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Statuses still waits on the hung store")
	}
}
