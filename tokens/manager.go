package tokens

import (
	"cmp"
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
	// Metrics receives refresh and expiry metrics; nil disables them.
	Metrics *metrics.Metrics
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Status is a credential's state without any secret: what /authorize,
// /api/credentials and the status command show.
type Status struct {
	Name             string        `json:"name"`
	Kind             string        `json:"kind"` // tiktok.KindAdvertiser or tiktok.KindTikTokAccount
	Authorized       bool          `json:"authorized"`
	Advertisers      []Advertiser  `json:"advertisers"`
	Scopes           []string      `json:"scopes"`
	AccessExpiresAt  time.Time     `json:"access_expires_at,omitzero"`
	RefreshExpiresAt time.Time     `json:"refresh_expires_at,omitzero"`
	Refreshable      bool          `json:"refreshable"`
	AuthorizedAt     time.Time     `json:"authorized_at,omitzero"`
	LastRefresh      RefreshResult `json:"last_refresh,omitzero"`
	ReauthRequired   bool          `json:"reauthorization_required"`
	ReauthReason     string        `json:"reauthorization_reason,omitempty"`
}

// Lifecycle constants. They are the behaviour SPEC.md promises ("retried at
// least every 10 s once expired"), not tuning knobs.
const (
	defaultRefreshBefore = time.Hour
	// One listing a minute per credential (1,440 a day, far under any app
	// tier) so a revoked grant is noticed within a minute even when idle.
	defaultAdvertiserInterval = time.Minute
	// expirySkew: a token this close to its expiry is treated as expired,
	// since it could lapse on its way to TikTok.
	expirySkew      = 10 * time.Second
	backoffMin      = time.Second
	backoffMax      = 5 * time.Minute
	expiredRetryMax = 10 * time.Second
	// pendingRetryMax caps the backoff of storing a grant the store refused.
	pendingRetryMax = 10 * time.Second
	// flushRetryMin and flushRetryMax bound the backoff of Flush's retries.
	flushRetryMin = 100 * time.Millisecond
	flushRetryMax = time.Second
	// refreshTimeout bounds one refresh (lease, TikTok call, store writes).
	refreshTimeout = time.Minute
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
	// maxCommitTries bounds the compare-and-swap retries of one change.
	maxCommitTries = 5
	// recheckEvery: a credential that cannot serve re-reads the store at
	// most this often, to notice a grant another process stored.
	recheckEvery = time.Second
	// recheckTimeout bounds that re-read: /authorize and /api/credentials
	// re-read every such credential, and must answer while the store hangs.
	recheckTimeout = 2 * time.Second
	maxErrorLen    = 300
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
	leaser        Leaser // nil: no lease
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

	// ctx bounds every refresh and loop; Close cancels it.
	ctx       context.Context
	cancel    context.CancelFunc
	mu        sync.Mutex // guards closed and wg.Add against Close's Wait
	closed    bool
	wg        sync.WaitGroup
	startOnce sync.Once
}

// Source is one credential's token source. It implements
// oauth2.TokenSource; it is safe for concurrent use.
type Source struct {
	m    *Manager
	cred Credential

	mu          sync.Mutex
	rec         *Record       // nil: not authorized
	jitter      float64       // fraction of RefreshBefore, up to 0.1, by which this record is refreshed earlier
	failures    int           // consecutive failed refreshes
	nextAttempt time.Time     // no refresh before this after a failure
	lastErr     error         // the latest refresh failure, shared with callers during backoff
	pending     *pendingGrant // a grant TikTok issued that is not yet stored
	flight      *flight       // the refresh in progress, joined by every caller
	validation  *validation   // the check of a rejected long-lived token in progress
	checked     string        // the long-lived token checked most recently
	checkedAt   time.Time     // when that check ended
	rejections  []time.Time   // rejections of current refreshable tokens within rejectWindow
	rejected    string        // the access token TikTok refused most recently
	lastRecheck time.Time     // when recheckStore last read the store
	wake        chan struct{} // tells the refresh loop the schedule changed

	// waiting counts Token and Rejected calls blocked on a refresh or a
	// validation in flight, so tests can prove concurrent callers really
	// share one.
	waiting atomic.Int64
}

// flight is one refresh shared by every caller that needs it.
type flight struct {
	done chan struct{}
	rec  *Record
	err  error
}

// validation is one check of a rejected long-lived token, shared by every
// rejection of that token while it runs.
type validation struct {
	done  chan struct{}
	token string
}

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

// NewManager loads every credential's record from store.
func NewManager(ctx context.Context, store Store, creds []Credential, api API, opts Options) (*Manager, error) {
	if store == nil || api == nil {
		return nil, errors.New("tokens: NewManager needs a store and an API")
	}
	m := &Manager{
		store:         store,
		leaser:        opts.Leaser,
		api:           api,
		refreshBefore: opts.RefreshBefore,
		advInterval:   opts.AdvertiserInterval,
		now:           opts.Now,
		after:         opts.After,
		rand:          opts.Rand,
		metrics:       opts.Metrics,
		log:           opts.Logger,
		byName:        make(map[string]*Source, len(creds)),
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
		s := &Source{m: m, cred: c, rec: rec, wake: make(chan struct{}, 1)}
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

// Start launches the background refresh-ahead and advertiser-listing loops;
// it returns at once. They stop when ctx ends or Close is called.
func (m *Manager) Start(ctx context.Context) {
	m.startOnce.Do(func() {
		loopCtx, cancel := context.WithCancel(ctx)
		context.AfterFunc(m.ctx, cancel)
		for _, s := range m.sources {
			for _, loop := range []func(context.Context){s.refreshLoop, s.advertiserLoop} {
				if !m.track() {
					return
				}
				go func() {
					defer m.wg.Done()
					loop(loopCtx)
				}()
			}
		}
	})
}

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

// Token implements oauth2.TokenSource. TikTok expects the token in the
// Access-Token header, not as a Bearer Authorization header, so use
// AccessToken of the result rather than oauth2.Transport.
func (s *Source) Token() (*oauth2.Token, error) {
	tok, err := s.accessToken(context.Background())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	var exp time.Time
	if s.rec != nil && s.rec.AccessToken == tok {
		exp = s.rec.AccessExpiresAt
	}
	s.mu.Unlock()
	return &oauth2.Token{AccessToken: tok, Expiry: exp}, nil
}

func (s *Source) accessToken(ctx context.Context) (string, error) {
	return s.serve(ctx, true)
}

// serve is accessToken; mayRecheck allows one re-read of the store when
// the credential cannot serve, so the call that adopts a newer record
// serves it without recursing further.
func (s *Source) serve(ctx context.Context, mayRecheck bool) (string, error) {
	s.mu.Lock()
	rec := s.rec
	now := s.m.now()
	switch {
	case rec == nil:
		s.mu.Unlock()
		if mayRecheck && s.recheckStore(ctx) {
			return s.serve(ctx, false)
		}
		return "", fmt.Errorf("%w: %q", ErrNotAuthorized, s.cred.Name)
	case usable(rec, now) && !rec.AccessRejected:
		// With ReauthRequired too, this is a grant whose refresh token is
		// gone (expired, revoked, or spent by a refresh whose answer a crash
		// lost) while TikTok still accepts the access token: scripts keep
		// working until it expires, and /authorize, status and the gauge ask
		// for re-authorization meanwhile.
		s.mu.Unlock()
		return rec.AccessToken, nil
	case rec.ReauthRequired:
		s.mu.Unlock()
		if mayRecheck && s.recheckStore(ctx) {
			return s.serve(ctx, false)
		}
		return "", &ReauthError{Credential: s.cred.Name, Reason: rec.ReauthReason}
	case !rec.Refreshable():
		s.mu.Unlock()
		return "", s.markReauth(ctx, rec.AccessToken, "the access token expired and there is no refresh token", false)
	case s.inBackoff(now):
		err := s.refreshErrorLocked(now)
		s.mu.Unlock()
		return "", err
	}
	f := s.startFlightLocked()
	s.mu.Unlock()
	if !s.await(ctx, f.done) {
		return "", fmt.Errorf("tokens: waiting for the refresh of %q: %w", s.cred.Name, ctx.Err())
	}
	if f.err != nil {
		var re *ReauthError
		if errors.As(f.err, &re) {
			return "", re
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return "", s.refreshErrorLocked(s.m.now())
	}
	if f.rec == nil || f.rec.ReauthRequired || !usable(f.rec, s.m.now()) {
		// Another writer replaced the record while we refreshed; ask again
		// once, without starting a second refresh.
		s.mu.Lock()
		defer s.mu.Unlock()
		rec := s.rec
		switch {
		case rec == nil:
			return "", fmt.Errorf("%w: %q", ErrNotAuthorized, s.cred.Name)
		case usable(rec, s.m.now()) && !rec.AccessRejected:
			return rec.AccessToken, nil
		case rec.ReauthRequired:
			return "", &ReauthError{Credential: s.cred.Name, Reason: rec.ReauthReason}
		}
		return "", s.refreshErrorLocked(s.m.now())
	}
	return f.rec.AccessToken, nil
}

// recheckStore re-reads the store for a credential that cannot serve
// (never authorized, or needing re-authorization): another process, such as
// the authorize command, may have stored a new grant since. At most one
// read per recheckEvery per credential, so a script retrying in a loop does
// not turn into store traffic; for a credential that can serve it returns
// at once without reading. It reports whether a newer record was adopted.
// The read takes at most recheckTimeout.
func (s *Source) recheckStore(ctx context.Context) bool {
	s.mu.Lock()
	now := s.m.now()
	if (s.rec != nil && !s.rec.ReauthRequired) || (!s.lastRecheck.IsZero() && now.Before(s.lastRecheck.Add(recheckEvery))) {
		s.mu.Unlock()
		return false
	}
	s.lastRecheck = now
	var gen uint64
	if s.rec != nil {
		gen = s.rec.Generation
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, recheckTimeout)
	defer cancel()
	rec, err := s.reload(ctx)
	if err != nil {
		s.m.log.Debug("re-reading the store failed", "credential", s.cred.Name, "error", err.Error())
		return false
	}
	if rec == nil || rec.Generation <= gen {
		return false
	}
	s.m.log.Info("adopted a grant another process stored", "credential", s.cred.Name)
	return true
}

// wasRejected reports whether TikTok refused the access token token.
func (s *Source) wasRejected(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected == token
}

// usable reports whether r's access token can still be sent to TikTok.
func usable(r *Record, now time.Time) bool {
	return r.AccessToken != "" && (r.AccessExpiresAt.IsZero() || now.Add(skew(r)).Before(r.AccessExpiresAt))
}

// skew is expirySkew, capped at a quarter of the token's lifetime when the
// time it was issued is known: a token that lives only seconds (a simulator
// with a short access TTL) is otherwise expired the moment it arrives, and
// every refresh "fails" though TikTok answered.
func skew(r *Record) time.Duration {
	if issued := issuedAt(r); !issued.IsZero() {
		if life := r.AccessExpiresAt.Sub(issued); life > 0 && life/4 < expirySkew {
			return life / 4
		}
	}
	return expirySkew
}

func (s *Source) inBackoff(now time.Time) bool {
	return s.lastErr != nil && now.Before(s.nextAttempt)
}

func (s *Source) refreshErrorLocked(now time.Time) error {
	retry := s.nextAttempt.Sub(now)
	if retry < 0 {
		retry = 0
	}
	err := s.lastErr
	if err == nil {
		err = errors.New("no usable token after refresh")
	}
	return &RefreshError{Credential: s.cred.Name, RetryAfter: retry, Err: err}
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

	// Another replica (or Authorize) may have renewed the token already.
	latest, err := s.reload(ctx)
	if err != nil {
		return nil, s.fail(ctx, used, err)
	}
	s.dropStalePending(latest)
	if latest == nil || latest.AccessToken != used || latest.ReauthRequired {
		return latest, nil
	}
	var held *heldLease
	if s.m.leaser != nil {
		if held = s.keptLease(); held == nil {
			h, got, err := s.acquireLease(ctx)
			if err != nil {
				return nil, s.fail(ctx, used, fmt.Errorf("tokens: refresh lease: %w", err))
			}
			if !got {
				return nil, s.elsewhere(used)
			}
			held = h
		}
		defer func() {
			s.mu.Lock()
			kept := s.pending != nil && s.pending.lease == held
			s.mu.Unlock()
			if !kept {
				held.release()
			}
		}()
		// Read under the lease: its generation fences the write, since the
		// store's compare-and-swap refuses it once anyone stored since.
		if latest, err = s.reload(ctx); err != nil {
			return nil, s.fail(ctx, used, err)
		}
		s.dropStalePending(latest)
		if latest == nil || latest.AccessToken != used || latest.ReauthRequired {
			return latest, nil
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
		case err != nil && held.lost() && callCtx.Err() != nil && ctx.Err() == nil:
			// Cancelled by the lease's loss before the request was sent.
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
	r.Advertisers = mergeAdvertisers(r.Advertisers, append(advertiserIDs(r.Advertisers), g.AdvertiserIDs...))
	r.LastRefresh = RefreshResult{At: at, OK: true}
	r.ReauthRequired, r.ReauthReason, r.AccessRejected = false, "", false
	return r
}

// fail records a failed refresh of the token used and schedules the next
// attempt. It returns err for the flight's callers.
func (s *Source) fail(ctx context.Context, used string, err error) error {
	name := s.cred.Name
	now := s.m.now()
	s.mu.Lock()
	if s.rec == nil || s.rec.AccessToken != used {
		// The grant changed meanwhile (Authorize); its schedule is fresh.
		s.mu.Unlock()
		return err
	}
	s.failures++
	delay := s.m.backoff(s.failures)
	if exp := s.rec.AccessExpiresAt; !exp.IsZero() {
		left := exp.Sub(now) - skew(s.rec)
		switch {
		case left <= 0:
			// Capped, still jittered, so replicas and credentials do not
			// retry TikTok's token endpoint in lockstep.
			delay = min(delay, expiredRetryMax/2+s.m.spread(expiredRetryMax/2))
		case delay > left:
			// Try again as the token lapses rather than leave a gap.
			delay = left
		}
	}
	if s.pending != nil {
		// A grant lives only in memory: storing it again asks nothing of
		// TikTok, and every moment it waits is one a crash would lose it.
		delay = min(delay, pendingRetryMax/2+s.m.spread(pendingRetryMax/2))
	}
	s.nextAttempt = now.Add(delay)
	s.lastErr = err
	failures := s.failures
	expires := s.rec.AccessExpiresAt
	s.mu.Unlock()
	s.poke()
	s.m.log.Warn("token refresh failed", "credential", name, "error", err.Error(),
		"attempt", failures, "retry_in", delay.String(), "access_expires_at", expires)

	msg := err.Error()
	if len(msg) > maxErrorLen {
		msg = msg[:maxErrorLen]
	}
	_, cerr := s.commit(ctx, func(latest *Record) (*Record, error) {
		if latest == nil || latest.AccessToken != used {
			return nil, errSuperseded
		}
		r := latest.Clone()
		r.LastRefresh = RefreshResult{At: now, OK: false, Error: msg}
		return r, nil
	})
	if cerr != nil && !errors.Is(cerr, errSuperseded) {
		s.m.log.Warn("storing the refresh failure failed", "credential", name, "error", cerr.Error())
	}
	return err
}

// elsewhere schedules a re-read shortly instead of a refresh: another
// replica holds the refresh lease and stores its result. Nothing is
// persisted and no failure counted, so waiting replicas do not churn the
// shared record the lease holder must write.
func (s *Source) elsewhere(used string) error {
	s.mu.Lock()
	if s.rec != nil && s.rec.AccessToken == used {
		s.nextAttempt = s.m.now().Add(time.Second/2 + s.m.spread(time.Second))
		s.lastErr = errRefreshedElsewhere
	}
	s.mu.Unlock()
	s.poke()
	return errRefreshedElsewhere
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

// backoff is the jittered delay after n consecutive failures: 1s, 2s, 4s …
// up to 5m, each drawn from its upper half so callers do not synchronise.
func (m *Manager) backoff(n int) time.Duration {
	d := backoffMax
	if n < 20 {
		d = min(backoffMin<<(n-1), backoffMax)
	}
	return d/2 + m.spread(d/2)
}

// spread is a random duration in [0, d), drawn from Options.Rand.
func (m *Manager) spread(d time.Duration) time.Duration {
	return time.Duration(m.fraction() * float64(d))
}

// fraction is Options.Rand, clamped so a test's Rand returning 1 (or
// beyond) cannot push a delay past its range.
func (m *Manager) fraction() float64 {
	return min(max(m.rand(), 0), 1)
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
		s.mu.Unlock()
		s.reportState(s.current())
	}
	s.m.log.Error("credential needs re-authorization", "credential", name, "reason", reason)
	return &ReauthError{Credential: name, Reason: reason}
}

// commit applies mutate to the newest stored record and stores the result
// with a compare-and-swap, re-reading and re-applying on conflict, so a
// change never overwrites a newer record it has not seen. mutate may return
// errSuperseded or errUnchanged to store nothing.
func (s *Source) commit(ctx context.Context, mutate func(latest *Record) (*Record, error)) (*Record, error) {
	cur := s.current()
	for range maxCommitTries {
		next, err := mutate(cur)
		if err != nil {
			return nil, err
		}
		var expect uint64
		if cur != nil {
			expect = cur.Generation
		}
		next.Credential = s.cred.Name
		err = s.m.store.Put(ctx, next, expect)
		if err == nil {
			s.adopt(next)
			return next.Clone(), nil
		}
		if !errors.Is(err, ErrConflict) {
			s.m.metrics.StoreWriteFailed()
			return nil, err
		}
		if cur, err = s.reload(ctx); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("tokens: credential %q changed %d times while being stored: %w", s.cred.Name, maxCommitTries, ErrConflict)
}

// reload reads the stored record, adopts it and returns it (nil: none).
func (s *Source) reload(ctx context.Context) (*Record, error) {
	rec, err := s.m.store.Get(ctx, s.cred.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		rec = nil
	case err != nil:
		return nil, fmt.Errorf("tokens: reading credential %q: %w", s.cred.Name, err)
	}
	s.adopt(rec)
	return rec.Clone(), nil
}

// adopt makes rec the in-memory record when it is newer. A nil rec means
// the store holds none.
func (s *Source) adopt(rec *Record) {
	s.mu.Lock()
	old := s.rec
	switch {
	case rec == nil && old == nil:
		s.mu.Unlock()
		return
	case rec != nil && old != nil && rec.Generation <= old.Generation:
		s.mu.Unlock()
		return
	}
	s.rec = rec.Clone()
	if rec == nil || old == nil || !rec.AuthorizedAt.Equal(old.AuthorizedAt) {
		// A new grant (authorized here or by another process) answers for
		// none of the old one's rejections.
		s.rejections = nil
	}
	reschedule := rec == nil || old == nil || rec.AccessToken != old.AccessToken ||
		rec.ReauthRequired != old.ReauthRequired || !rec.AccessExpiresAt.Equal(old.AccessExpiresAt)
	if reschedule {
		s.failures, s.lastErr, s.nextAttempt = 0, nil, time.Time{}
		s.jitter = s.m.pickJitter()
	}
	s.mu.Unlock()
	s.reportState(rec)
	s.m.reindex()
	if reschedule {
		s.poke()
	}
}

func (s *Source) current() *Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.Clone()
}

func (s *Source) reportState(rec *Record) {
	if rec == nil {
		s.m.metrics.CredentialState(s.cred.Name, false, false, time.Time{}, time.Time{})
		return
	}
	s.m.metrics.CredentialState(s.cred.Name, rec.AccessToken != "", rec.ReauthRequired, rec.AccessExpiresAt, rec.RefreshExpiresAt)
}

// poke wakes the refresh loop so it recomputes its schedule.
func (s *Source) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pickJitter is the fraction of RefreshBefore, up to a tenth, by which a
// record is refreshed earlier still.
func (m *Manager) pickJitter() float64 {
	return m.fraction() / 10
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

// nextRefreshIn is how long until the next background refresh; ok is false
// when none is due (not authorized, long-lived, re-authorization needed).
func (s *Source) nextRefreshIn() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.rec
	if rec == nil || rec.ReauthRequired || !rec.Refreshable() {
		return 0, false
	}
	var at time.Time
	if s.lastErr != nil {
		at = s.nextAttempt
	} else {
		before := s.m.effectiveBefore(rec)
		at = rec.AccessExpiresAt.Add(-before - time.Duration(float64(before)*s.jitter))
	}
	return max(at.Sub(s.m.now()), 0), true
}

// effectiveBefore is RefreshBefore, capped at half the token's lifetime
// when the time it was issued is known.
func (m *Manager) effectiveBefore(rec *Record) time.Duration {
	issued := rec.AuthorizedAt
	if rec.LastRefresh.OK && rec.LastRefresh.At.After(issued) {
		issued = rec.LastRefresh.At
	}
	before := m.refreshBefore
	if !issued.IsZero() {
		if life := rec.AccessExpiresAt.Sub(issued); life > 0 && before > life/2 {
			before = life / 2
		}
	}
	return before
}

// advertiserLoop lists the credential's advertisers now and every
// AdvertiserInterval until ctx ends.
func (s *Source) advertiserLoop(ctx context.Context) {
	for {
		s.listAdvertisers(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.m.after(s.m.advInterval):
		}
	}
}

// listAdvertisers fetches the advertisers the token may act for and stores
// them when they changed. Failures are logged: the known list stays.
func (s *Source) listAdvertisers(ctx context.Context) {
	// A credential that cannot serve has nothing to list with; but a grant
	// another process stored shows in the gauges and on the page within
	// an interval, even without any request.
	s.recheckStore(ctx)
	if s.cred.App.Kind == tiktok.KindTikTokAccount {
		// TikTok account grants name no advertisers: there is no list to
		// fetch, and asking every interval would only log a failure.
		return
	}
	s.mu.Lock()
	rec := s.rec
	ok := rec != nil && !rec.ReauthRequired && usable(rec, s.m.now())
	s.mu.Unlock()
	if !ok {
		return
	}
	used := rec.AccessToken
	list, err := s.m.api.Advertisers(ctx, s.cred.App, used)
	var ae *tiktok.APIError
	if errors.As(err, &ae) && tokenRefused(ae.Code) {
		// The listing doubles as a validation of the grant: an idle
		// credential whose grant was revoked shows it here, before any script
		// fails. Its refusal is one rejection like a script's: a refreshable
		// token is refreshed once, and a revoked grant then fails the
		// refresh; a long-lived one is checked again at once, so one glitch
		// of the listing does not end a grant TikTok still accepts.
		s.m.log.Warn("TikTok rejected the access token while listing advertisers", "credential", s.cred.Name, "code", ae.Code)
		s.rejectedBy(ctx, used, ae.Code)
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			s.m.log.Warn("listing advertisers failed", "credential", s.cred.Name, "error", err.Error())
		}
		return
	}
	s.storeAdvertisers(ctx, used, list)
}

// storeAdvertisers stores the advertisers TikTok listed for the access
// token used, when they changed and the token is still the current one.
func (s *Source) storeAdvertisers(ctx context.Context, used string, list []tiktok.Advertiser) {
	named := make([]Advertiser, 0, len(list))
	ids := make([]string, 0, len(list)+len(s.cred.AdvertiserIDs))
	for _, a := range list {
		named = append(named, Advertiser{ID: a.ID, Name: a.Name})
		ids = append(ids, a.ID)
	}
	ids = append(ids, s.cred.AdvertiserIDs...)
	_, err := s.commit(ctx, func(latest *Record) (*Record, error) {
		if latest == nil || latest.AccessToken != used {
			return nil, errSuperseded
		}
		advs := mergeAdvertisers(append(named, latest.Advertisers...), ids)
		if slices.Equal(advs, latest.Advertisers) {
			return nil, errUnchanged
		}
		r := latest.Clone()
		r.Advertisers = advs
		return r, nil
	})
	if err != nil && !errors.Is(err, errSuperseded) && !errors.Is(err, errUnchanged) {
		s.m.log.Warn("storing the advertiser list failed", "credential", s.cred.Name, "error", err.Error())
	}
}

// mergeAdvertisers lists ids once each, in order, named from known.
func mergeAdvertisers(known []Advertiser, ids []string) []Advertiser {
	names := make(map[string]string, len(known))
	for _, a := range known {
		if a.Name != "" && names[a.ID] == "" {
			names[a.ID] = a.Name
		}
	}
	out := make([]Advertiser, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, Advertiser{ID: id, Name: names[id]})
	}
	return out
}

func advertiserIDs(ads []Advertiser) []string {
	ids := make([]string, len(ads))
	for i, a := range ads {
		ids[i] = a.ID
	}
	return ids
}

// reindex rebuilds the advertiser → credential map. The first credential
// in config order wins an advertiser both claim.
func (m *Manager) reindex() {
	m.idxMu.Lock()
	defer m.idxMu.Unlock()
	idx := make(map[string]string)
	for _, s := range m.sources {
		s.mu.Lock()
		ids := slices.Clone(s.cred.AdvertiserIDs)
		if s.rec != nil {
			ids = append(ids, advertiserIDs(s.rec.Advertisers)...)
		}
		s.mu.Unlock()
		for _, id := range ids {
			if _, taken := idx[id]; !taken {
				idx[id] = s.cred.Name
			}
		}
	}
	m.index = idx
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
		s.mu.Unlock()
		if rec.AccessToken == token {
			// The access token served after the refresh token was lost is
			// now refused too: stop serving it.
			_ = s.markReauth(ctx, token, "TikTok rejected the access token", true)
		}
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

// await waits for done, a refresh or a check in flight, unless ctx ends
// first (false); the wait counts in waiting meanwhile.
func (s *Source) await(ctx context.Context, done <-chan struct{}) bool {
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
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

// issuedAt is when rec's access token was obtained, as far as is known.
func issuedAt(rec *Record) time.Time {
	if rec.LastRefresh.OK && rec.LastRefresh.At.After(rec.AuthorizedAt) {
		return rec.LastRefresh.At
	}
	return rec.AuthorizedAt
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

func (s *Source) status() Status {
	return StatusFromRecord(s.cred.Name, s.cred.App.Kind, s.current())
}

// Status returns the credential's current state. A credential that is not
// authorized or needs re-authorization is first looked up in the store
// again (at most once a second), so a grant another process stored shows.
func (m *Manager) Status(name string) (Status, error) {
	s, ok := m.byName[name]
	if !ok {
		return Status{}, fmt.Errorf("%w: %q", ErrUnknownCredential, name)
	}
	return s.freshStatus(), nil
}

// Statuses returns every configured credential's state, in config order,
// re-read from the store as Status does.
func (m *Manager) Statuses() []Status {
	out := make([]Status, len(m.sources))
	for i, s := range m.sources {
		out[i] = s.freshStatus()
	}
	return out
}

func (s *Source) freshStatus() Status {
	s.recheckStore(s.m.ctx)
	return s.status()
}

// CredentialFor returns the credential that owns advertiserID: from config,
// the grant, or the periodic advertiser listing.
func (m *Manager) CredentialFor(advertiserID string) (name string, ok bool) {
	m.idxMu.RLock()
	defer m.idxMu.RUnlock()
	name, ok = m.index[advertiserID]
	return name, ok
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
