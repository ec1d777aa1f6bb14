package tokens

import (
	"context"
	"log/slog"
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
	// expires. Default 1h.
	RefreshBefore time.Duration
	// AdvertiserInterval: how often each authorized credential's advertiser
	// list is fetched again from /oauth2/advertiser/get/. Default 1h.
	AdvertiserInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics receives refresh and expiry metrics; nil disables them.
	Metrics *metrics.Metrics
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Status is a credential's state without any secret: what /authorize,
// /api/credentials and the status command show.
type Status struct {
	Name             string        `json:"name"`
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

// Manager owns the token lifecycle of every configured credential. All
// methods are safe for concurrent use.
type Manager struct{}

// NewManager loads every credential's record from store.
func NewManager(ctx context.Context, store Store, creds []Credential, api API, opts Options) (*Manager, error) {
	return &Manager{}, nil
}

// Start launches the background refresh-ahead and advertiser-listing loops;
// it returns at once. They stop when ctx ends or Close is called.
func (m *Manager) Start(ctx context.Context) {}

// Close stops the background loops and waits for them.
func (m *Manager) Close() error { return nil }

// Source returns the credential's oauth2.TokenSource (nil for an unknown name).
func (m *Manager) Source(name string) oauth2.TokenSource { return nil }

// Token returns a valid access token for the credential. It never waits
// for a proactive refresh; a token already expired is refreshed once for all
// waiting callers. Errors: ErrUnknownCredential, ErrNotAuthorized,
// ErrReauthRequired, *RefreshError.
func (m *Manager) Token(ctx context.Context, name string) (string, error) {
	return "", ErrNotAuthorized
}

// Rejected reports that TikTok answered code (40105 or 40102) to a request
// made with token. For a refreshable credential whose current token is still
// token, it forces one refresh (shared with concurrent callers) and reports
// retry=true when a different token is now available. Repeated rejections
// of fresh tokens, or a non-refreshable credential, mark re-authorization
// required.
func (m *Manager) Rejected(ctx context.Context, name, token string, code int) (retry bool) {
	return false
}

// Authorize stores a new grant for the credential, replacing any old one
// atomically and clearing re-authorization, then fetches its advertiser
// names. It returns the stored state.
func (m *Manager) Authorize(ctx context.Context, name string, g *tiktok.Grant) (Status, error) {
	return Status{}, nil
}

// Status returns the credential's current state.
func (m *Manager) Status(name string) (Status, error) { return Status{}, ErrUnknownCredential }

// Statuses returns every configured credential's state, in config order.
func (m *Manager) Statuses() []Status { return nil }

// CredentialFor returns the credential that owns advertiserID: from config,
// the grant, or the periodic advertiser listing.
func (m *Manager) CredentialFor(advertiserID string) (name string, ok bool) { return "", false }

// Ready reports whether the store is reachable.
func (m *Manager) Ready(ctx context.Context) error { return nil }
