package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

// Credential is what a Manager knows of one configured credential.
type Credential struct {
	Name          string
	App           tiktok.App
	AdvertiserIDs []string // from config; merged with the granted ones
}

// API is TikTok as the Manager needs it; *tiktok.Client implements it.
// Implementations must be safe for concurrent use.
type API interface {
	Refresh(ctx context.Context, app tiktok.App, refreshToken string) (*tiktok.Grant, error)
	Advertisers(ctx context.Context, app tiktok.App, accessToken string) ([]tiktok.Advertiser, error)
}

// Options tune a Manager. Zero values take the documented defaults.
type Options struct {
	// RefreshBefore: refresh an expiring access token this long before it
	// expires. Default 1h. The background refresh starts up to a tenth of
	// it earlier still (jitter, so replicas and credentials spread out), and
	// never later than half-way through a token's known lifetime, so a
	// token shorter-lived than RefreshBefore is not refreshed in a loop.
	RefreshBefore time.Duration
	// AdvertiserInterval: how often each authorized credential's advertiser
	// list is fetched again from /oauth2/advertiser/get/. The listing also
	// validates the grant, so an idle credential's revocation is noticed
	// within an interval: a token TikTok rejects there is handled as by
	// Rejected (a refreshable one is refreshed once; a long-lived one is
	// checked again at once and marked for re-authorization when TikTok
	// refuses that too). A credential that is not authorized or needs
	// re-authorization re-reads the store instead, to find a grant another
	// process stored. Default 1m.
	AdvertiserInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// After waits like time.After on the clock Now reads; nil means
	// time.After. Tests pass a fake clock's After with its Now so the
	// background loops run days of token life without real waiting.
	After func(d time.Duration) <-chan time.Time
	// Rand returns a pseudo-random number in [0, 1) for every jitter the
	// Manager draws: how much earlier than RefreshBefore each token is
	// refreshed (Rand()/10 of it), and where in its range each backoff
	// delay falls. It must be safe for concurrent use; nil means
	// math/rand/v2's Float64. Tests pass a fixed value to check the schedule
	// exactly.
	Rand func() float64
	// Leaser grants the refresh lease a refresh is made under, so that of
	// several processes sharing the store exactly one refreshes a
	// credential and the others pick up its result. nil means no lease:
	// within one process the flights already refresh each credential once.
	Leaser Leaser
	// Changes carries the names of credentials whose stored record another
	// writer (or this Manager) changed, such as redisstore's Watch. After
	// Start, each name makes its credential re-read its record (one read at
	// a time per credential, names arriving meanwhile coalesced into the
	// next read, each bounded like a request's re-read) and adopt it when
	// its Generation is newer: a refresh another replica made, a new grant
	// (which forgets the old grant's rejections) or a re-authorization
	// mark is served without waiting for a request. nil means none: a
	// credential that cannot serve then re-reads the store on requests and
	// on its advertiser interval, and a refresh re-reads under its lease.
	Changes <-chan string
	// Metrics receives refresh and expiry metrics; nil disables them.
	Metrics *metrics.Metrics
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Lifecycle constants. They are the behaviour SPEC.md promises ("retried at
// least every 10 s once expired"), not tuning knobs; each file holds the
// ones of its job.
const (
	defaultRefreshBefore = time.Hour
	// One listing a minute per credential (1,440 a day, far under any app
	// tier) so a revoked grant is noticed within a minute even when idle.
	defaultAdvertiserInterval = time.Minute
	// refreshTimeout bounds one refresh (lease, TikTok call, store writes).
	refreshTimeout = time.Minute
)

var (
	errSuperseded         = errors.New("tokens: record replaced concurrently")
	errUnchanged          = errors.New("tokens: nothing to store")
	errClosed             = errors.New("tokens: manager closed")
	errRefreshedElsewhere = errors.New("tokens: another process holds the refresh lease")
	errNotStoredYet       = errors.New("tokens: not stored yet")
)

// Manager owns the token lifecycle of every configured credential. All
// methods are safe for concurrent use.
type Manager struct {
	store         Store
	leaser        Leaser        // nil: no lease
	changes       <-chan string // nil: no change notifications
	api           API
	refreshBefore time.Duration
	advInterval   time.Duration
	now           func() time.Time
	after         func(time.Duration) <-chan time.Time
	rand          func() float64
	metrics       *metrics.Metrics
	log           *slog.Logger

	sources []*Source // config order
	byName  map[string]*Source

	// index maps advertiser id to credential name; read on every proxied
	// request, rebuilt whenever a record changes.
	idxMu sync.RWMutex
	index map[string]string
	// conflicts are the advertisers several credentials claim (reindex).
	conflicts map[string]AdvertiserConflict
	warned    map[string]bool // conflicts logged (warnOnce)

	// ctx bounds every refresh and loop; Close cancels it.
	ctx       context.Context
	cancel    context.CancelFunc
	mu        sync.Mutex // guards closed and wg.Add against Close's Wait
	closed    bool
	wg        sync.WaitGroup
	startOnce sync.Once

	// listed is closed once every credential's first advertiser listing
	// after Start has returned (Listed); unlisted counts those still
	// running.
	listed   chan struct{}
	unlisted atomic.Int64
}

// NewManager loads every credential's record from store.
func NewManager(ctx context.Context, store Store, creds []Credential, api API, opts Options) (*Manager, error) {
	if store == nil || api == nil {
		return nil, errors.New("tokens: NewManager needs a store and an API")
	}
	m := &Manager{
		store:         store,
		leaser:        opts.Leaser,
		changes:       opts.Changes,
		api:           api,
		refreshBefore: opts.RefreshBefore,
		advInterval:   opts.AdvertiserInterval,
		now:           opts.Now,
		after:         opts.After,
		rand:          opts.Rand,
		metrics:       opts.Metrics,
		log:           opts.Logger,
		byName:        make(map[string]*Source, len(creds)),
		listed:        make(chan struct{}),
	}
	if m.refreshBefore <= 0 {
		m.refreshBefore = defaultRefreshBefore
	}
	if m.advInterval <= 0 {
		m.advInterval = defaultAdvertiserInterval
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.after == nil {
		m.after = time.After
	}
	if m.rand == nil {
		m.rand = rand.Float64
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	for _, c := range creds {
		if c.Name == "" {
			return nil, errors.New("tokens: credential without a name")
		}
		if _, dup := m.byName[c.Name]; dup {
			return nil, fmt.Errorf("tokens: credential %q configured twice", c.Name)
		}
		rec, err := store.Get(ctx, c.Name)
		switch {
		case errors.Is(err, ErrNotFound):
			rec = nil
		case err != nil:
			return nil, fmt.Errorf("tokens: loading credential %q: %w", c.Name, err)
		}
		s := &Source{m: m, cred: c, rec: rec, wake: make(chan struct{}, 1), changed: make(chan struct{}, 1)}
		s.jitter = m.pickJitter()
		m.sources = append(m.sources, s)
		m.byName[c.Name] = s
		s.reportState(rec)
		m.metrics.SetGrantUnpersisted(c.Name, false)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.reindex()
	return m, nil
}

// Start launches the background refresh-ahead and advertiser-listing loops,
// and the reading of Options.Changes; it returns at once. They stop when
// ctx ends or Close is called.
func (m *Manager) Start(ctx context.Context) {
	m.startOnce.Do(func() {
		loopCtx, cancel := context.WithCancel(ctx)
		context.AfterFunc(m.ctx, cancel)
		if m.unlisted.Store(int64(len(m.sources))); len(m.sources) == 0 {
			close(m.listed)
		}
		var loops []func(context.Context)
		for _, s := range m.sources {
			loops = append(loops, s.refreshLoop, s.advertiserLoop)
			if m.changes != nil {
				loops = append(loops, s.changeLoop)
			}
		}
		if m.changes != nil {
			loops = append(loops, func(ctx context.Context) { m.watchChanges(ctx, m.changes) })
		}
		for _, loop := range loops {
			if !m.track() {
				return
			}
			go func() {
				defer m.wg.Done()
				loop(loopCtx)
			}()
		}
	})
}

// Listed is closed once every credential's first advertiser listing after
// Start has returned, whether it stored a list, found nothing to list with
// (then it re-read the store) or failed: start-up's work is done. It is
// never closed when the Manager is closed before those listings start.
func (m *Manager) Listed() <-chan struct{} { return m.listed }

// Close stops the background loops and any refresh in progress and waits
// for them, and releases a refresh lease kept for a grant it could not
// store. Token keeps serving still-valid tokens afterwards but no longer
// refreshes. The store is the caller's to close.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	// An unstored grant dies with this process: its lease is released so
	// another replica can take over at once rather than after the TTL.
	for _, s := range m.sources {
		s.mu.Lock()
		held := s.dropPendingLocked()
		s.mu.Unlock()
		held.release()
	}
	return nil
}

// track registers a goroutine with Close; false once closed.
func (m *Manager) track() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	return true
}

// Source returns the credential's oauth2.TokenSource (nil for an unknown name).
func (m *Manager) Source(name string) oauth2.TokenSource {
	s, ok := m.byName[name]
	if !ok {
		return nil
	}
	return s
}

// Token returns a valid access token for the credential. It never waits
// for a proactive refresh; a token already expired is refreshed once for all
// waiting callers. Errors: ErrUnknownCredential, ErrNotAuthorized,
// ErrReauthRequired, *RefreshError.
func (m *Manager) Token(ctx context.Context, name string) (string, error) {
	s, ok := m.byName[name]
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownCredential, name)
	}
	return s.accessToken(ctx)
}

// logDropped warns about the parts of TikTok's answer the client left out
// (an advertiser id that is not digits): the grant itself is kept.
func (m *Manager) logDropped(name string, g *tiktok.Grant) {
	for _, d := range g.Dropped {
		m.log.Warn("TikTok's token answer had an unusable field, left out", "credential", name, "field", d)
	}
}

// Authorize stores a new grant for the credential, replacing any old one
// atomically and clearing re-authorization, then fetches its advertiser
// names. It returns the stored state.
func (m *Manager) Authorize(ctx context.Context, name string, g *tiktok.Grant) (Status, error) {
	s, ok := m.byName[name]
	if !ok {
		return Status{}, fmt.Errorf("%w: %q", ErrUnknownCredential, name)
	}
	if g == nil || g.AccessToken == "" {
		return Status{}, fmt.Errorf("tokens: authorizing %q: grant without an access token", name)
	}
	m.logDropped(name, g)
	now := m.now()
	fresh := &Record{
		Credential:   name,
		AccessToken:  g.AccessToken,
		RefreshToken: g.RefreshToken,
		Scopes:       slices.Clone(g.Scopes),
		OpenID:       g.OpenID,
		AuthorizedAt: now,
	}
	if g.ExpiresIn > 0 {
		fresh.AccessExpiresAt = now.Add(g.ExpiresIn)
	}
	if g.RefreshToken != "" && g.RefreshExpiresIn > 0 {
		fresh.RefreshExpiresAt = now.Add(g.RefreshExpiresIn)
	}
	ids := append(slices.Clone(g.AdvertiserIDs), s.cred.AdvertiserIDs...)
	stored, err := s.commit(ctx, func(latest *Record) (*Record, error) {
		r := fresh.Clone()
		var known []Advertiser
		if latest != nil {
			known = latest.Advertisers
		}
		r.Advertisers = mergeAdvertisers(known, ids)
		return r, nil
	})
	if err != nil {
		return Status{}, fmt.Errorf("tokens: storing the grant for %q: %w", name, err)
	}
	s.mu.Lock()
	s.failures, s.lastErr, s.nextAttempt = 0, nil, time.Time{}
	held := s.dropPendingLocked()
	s.rejections = nil
	s.mu.Unlock()
	held.release()
	s.poke()
	m.log.Info("credential authorized", "credential", name, "advertisers", len(stored.Advertisers),
		"scopes", stored.Scopes, "access_expires_at", stored.AccessExpiresAt, "refreshable", stored.Refreshable())
	s.listAdvertisers(ctx)
	return s.status(), nil
}
