// Package tokens keeps every credential's TikTok tokens fresh and safe.
//
// A Manager owns one Source per configured credential. Sources refresh
// ahead of expiry in the background, refresh an already expired token once
// for all waiting callers, back off on failure while the old token stays
// valid, and persist a rotated refresh token before the new access token is
// handed out. The package knows nothing of HTTP serving.
package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Record is everything stored about one credential. Tokens are plain
// strings here; a Store seals them at rest when it is given a key.
type Record struct {
	Credential       string        `json:"credential"`
	AccessToken      string        `json:"access_token"`
	AccessExpiresAt  time.Time     `json:"access_expires_at,omitzero"` // zero: long-lived
	RefreshToken     string        `json:"refresh_token,omitempty"`
	RefreshExpiresAt time.Time     `json:"refresh_expires_at,omitzero"` // zero: unknown / none
	Advertisers      []Advertiser  `json:"advertisers,omitempty"`
	Scopes           []string      `json:"scopes,omitempty"`
	OpenID           string        `json:"open_id,omitempty"`
	AuthorizedAt     time.Time     `json:"authorized_at"`
	LastRefresh      RefreshResult `json:"last_refresh,omitzero"`
	ReauthRequired   bool          `json:"reauth_required,omitempty"`
	ReauthReason     string        `json:"reauth_reason,omitempty"`
	// AccessRejected: TikTok rejected AccessToken itself. Until then a
	// credential that needs re-authorization (its refresh token is gone)
	// keeps serving its still-valid access token.
	AccessRejected bool `json:"access_rejected,omitempty"`
	// Generation is bumped by the Store on every successful Put.
	Generation uint64 `json:"generation"`
}

// Advertiser is an advertiser the credential may act for.
type Advertiser struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// RefreshResult is the outcome of the latest refresh attempt.
type RefreshResult struct {
	At    time.Time `json:"at,omitzero"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"` // never contains a token
}

// Store persists Records. Implementations must be safe for concurrent use.
//
// Put is a compare-and-swap on Generation: it stores rec only when the
// stored record's generation equals expect (0 meaning "no record yet"),
// sets rec.Generation to expect+1, and returns ErrConflict otherwise. That
// fencing is what lets several replicas share one store: a stale writer can
// never overwrite a newer token. A Put returns only once the record is
// durable (fsync'd for the file store).
type Store interface {
	Get(ctx context.Context, credential string) (*Record, error) // ErrNotFound when absent
	List(ctx context.Context) ([]*Record, error)
	Put(ctx context.Context, rec *Record, expect uint64) error
	Delete(ctx context.Context, credential string) error
	// Ping reports whether the store is reachable (readiness).
	Ping(ctx context.Context) error
	Close() error
}

// Store errors.
var (
	ErrNotFound = errors.New("tokens: no record")
	ErrConflict = errors.New("tokens: record changed concurrently")
)

// Errors a Token call returns; the proxy maps them to its error codes.
var (
	// ErrNotAuthorized: the credential has never been authorized (90003).
	ErrNotAuthorized = errors.New("tokens: credential not authorized")
	// ErrReauthRequired: refresh token expired or revoked, or the token was
	// rejected by TikTok (90004). errors.Is matches *ReauthError.
	ErrReauthRequired = errors.New("tokens: re-authorization required")
	// ErrUnknownCredential: no such configured credential.
	ErrUnknownCredential = errors.New("tokens: unknown credential")
)

// RefreshError is returned when the access token has expired and refreshing
// it failed (90005). RetryAfter says when the next attempt is due.
type RefreshError struct {
	Credential string
	RetryAfter time.Duration
	Err        error
}

func (e *RefreshError) Error() string {
	return fmt.Sprintf("tokens: credential %q: access token expired and refresh failed: %v", e.Credential, e.Err)
}

func (e *RefreshError) Unwrap() error { return e.Err }
