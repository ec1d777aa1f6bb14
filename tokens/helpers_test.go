package tokens_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptrace"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/filestore"
)

var t0 = time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a manual clock: After's channels fire only when Advance
// reaches their deadline, so background loops run without real waiting.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, &waiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock and fires every waiter that is due.
func (c *fakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (never backwards) and fires due waiters.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// waitWaiter waits until a pending waiter's deadline satisfies ok and
// returns the earliest such deadline.
func (c *fakeClock) waitWaiter(t *testing.T, what string, ok func(at time.Time) bool) time.Time {
	t.Helper()
	var found time.Time
	waitFor(t, what, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		var ats []time.Time
		for _, w := range c.waiters {
			if ok(w.at) {
				ats = append(ats, w.at)
			}
		}
		if len(ats) == 0 {
			return false
		}
		sort.Slice(ats, func(i, j int) bool { return ats[i].Before(ats[j]) })
		found = ats[0]
		return true
	})
	return found
}

// waitRefreshTimer waits until the refresh loop has armed its timer for
// the stored record (due before its access token expires) and returns its
// deadline. A test that moves the clock first races with the loop, which
// reads the clock and then waits relative to it: the jump lands between
// the two and the timer is set that much later.
func (e *env) waitRefreshTimer() time.Time {
	e.t.Helper()
	exp := e.record().AccessExpiresAt
	return e.clock.waitWaiter(e.t, "the refresh-ahead timer", func(at time.Time) bool { return at.Before(exp) })
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeAPI is TikTok's token endpoint with rotating refresh tokens. It
// counts calls and refuses any refresh token but the current one (40107).
type fakeAPI struct {
	mu               sync.Mutex
	clock            *fakeClock
	refreshCalls     int
	advertiserCalls  int
	seq              int
	current          string // the one refresh token TikTok accepts
	expiresIn        time.Duration
	refreshExpiresIn time.Duration
	keepRefresh      bool    // answer without refresh_token
	err              error   // every Refresh fails with it
	advErr           error   // every listing fails with it, once advAnswers is used up
	advAnswers       []error // the next listings' answers in turn (nil: accepted)
	advertisers      []tiktok.Advertiser
	gate             chan struct{} // when set, Refresh waits for it to close
	advGate          chan struct{} // when set, Advertisers waits for it to close
	entered          chan struct{} // when set, signalled (without blocking) as Refresh starts
	sent             bool          // Refresh reports the request sent (httptrace GotConn) before its gate
	issued           []string      // access tokens handed out, in order
	beforeReturn     func(g *tiktok.Grant)
}

func newAPI(clock *fakeClock) *fakeAPI {
	return &fakeAPI{clock: clock, current: "refresh-0", expiresIn: 24 * time.Hour, refreshExpiresIn: 365 * 24 * time.Hour}
}

// grant is what the authorization code exchange would return.
func (a *fakeAPI) grant() *tiktok.Grant {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &tiktok.Grant{
		AccessToken: "access-0", ExpiresIn: a.expiresIn,
		RefreshToken: a.current, RefreshExpiresIn: a.refreshExpiresIn,
		AdvertiserIDs: []string{"7000000000000000001"}, Scopes: []string{"4", "100"},
	}
}

func (a *fakeAPI) Refresh(ctx context.Context, app tiktok.App, refreshToken string) (*tiktok.Grant, error) {
	a.mu.Lock()
	a.refreshCalls++
	gate, entered, sent := a.gate, a.entered, a.sent
	a.mu.Unlock()
	if trace := httptrace.ContextClientTrace(ctx); sent && trace != nil && trace.GotConn != nil {
		trace.GotConn(httptrace.GotConnInfo{})
	}
	if entered != nil {
		// Never blocks: should single flight break, a second Refresh must
		// reach the call count and fail the test rather than hang here.
		select {
		case entered <- struct{}{}:
		default:
		}
	}
	if err := passGate(ctx, gate); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return nil, a.err
	}
	if refreshToken != a.current {
		return nil, &tiktok.APIError{Code: tiktok.CodeRefreshTokenInvalid, Message: "refresh token invalid"}
	}
	a.seq++
	g := &tiktok.Grant{AccessToken: fmt.Sprintf("access-%d", a.seq), ExpiresIn: a.expiresIn}
	if !a.keepRefresh {
		a.current = fmt.Sprintf("refresh-%d", a.seq)
		g.RefreshToken = a.current
		g.RefreshExpiresIn = a.refreshExpiresIn
	}
	a.issued = append(a.issued, g.AccessToken)
	if a.beforeReturn != nil {
		a.beforeReturn(g)
	}
	return g, nil
}

func (a *fakeAPI) Advertisers(ctx context.Context, app tiktok.App, accessToken string) ([]tiktok.Advertiser, error) {
	a.mu.Lock()
	a.advertiserCalls++
	gate := a.advGate
	a.mu.Unlock()
	if err := passGate(ctx, gate); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.advAnswers) > 0 {
		err := a.advAnswers[0]
		a.advAnswers = a.advAnswers[1:]
		if err != nil {
			return nil, err
		}
	} else if a.advErr != nil {
		return nil, a.advErr
	}
	return append([]tiktok.Advertiser(nil), a.advertisers...), nil
}

func (a *fakeAPI) calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refreshCalls
}

func (a *fakeAPI) advCalls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.advertiserCalls
}

func (a *fakeAPI) set(f func(a *fakeAPI)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

// env is one Manager under test with its clock, API, store and metrics.
type env struct {
	t     *testing.T
	clock *fakeClock
	api   *fakeAPI
	store tokens.Store
	reg   *prometheus.Registry
	m     *tokens.Manager
	opts  tokens.Options
	creds []tokens.Credential
}

const (
	credName     = "main"
	configAdvert = "7000000000000000009"
)

func newEnv(t *testing.T, tweak ...func(e *env)) *env {
	t.Helper()
	clock := newClock()
	e := &env{t: t, clock: clock, api: newAPI(clock), reg: prometheus.NewRegistry()}
	st, err := filestore.Open(filepath.Join(t.TempDir(), "tokens.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	e.creds = []tokens.Credential{{Name: credName, App: tiktok.App{AppID: "app"}, AdvertiserIDs: []string{configAdvert}}}
	e.opts = tokens.Options{
		RefreshBefore:      time.Hour,
		AdvertiserInterval: 1000 * time.Hour,
		Now:                clock.Now,
		After:              clock.After,
		Metrics:            metrics.New(e.reg, "test", "go"),
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, f := range tweak {
		f(e)
	}
	e.m = e.newManager()
	return e
}

func (e *env) newManager() *tokens.Manager {
	e.t.Helper()
	m, err := tokens.NewManager(context.Background(), e.store, e.creds, e.api, e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = m.Close() })
	return m
}

// authorize stores the API's initial grant at the current time.
func (e *env) authorize() tokens.Status {
	e.t.Helper()
	st, err := e.m.Authorize(context.Background(), credName, e.api.grant())
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *env) record() *tokens.Record {
	e.t.Helper()
	r, err := e.store.Get(context.Background(), credName)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) token() (string, error) {
	return e.m.Token(context.Background(), credName)
}

func (e *env) mustToken() string {
	e.t.Helper()
	tok, err := e.token()
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// passGate waits for gate to close (a nil gate is open) unless ctx ends.
func passGate(ctx context.Context, gate chan struct{}) error {
	if gate == nil {
		return nil
	}
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
