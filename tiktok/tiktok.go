// Package tiktok speaks TikTok's OAuth endpoints and response envelope for
// both credential kinds: advertiser (Marketing API) and tiktok_account
// (TikTok business account, "tt_user").
//
// TikTok reports errors as HTTP 200 with a non-zero envelope code; every
// call here decodes the envelope and returns *APIError when code != 0.
package tiktok

import (
	"errors"
	"fmt"
	"time"
)

// Credential kinds, matching config.KindAdvertiser and config.KindTikTokAccount.
const (
	KindAdvertiser    = "advertiser"
	KindTikTokAccount = "tiktok_account"
)

// Envelope codes the proxy acts upon.
const (
	CodeOK                  = 0
	CodePartialSuccess      = 20001
	CodeTokenEmpty          = 40104
	CodeTokenInvalid        = 40105
	CodeTokenExpired        = 40102
	CodeTokenAdvertiser     = 40106
	CodeRefreshTokenExpired = 40103
	CodeRefreshTokenInvalid = 40107
	CodeInvalidAuthCode     = 40110
	CodeAppRateLimit        = 40100
	CodeEndpointRateLimit   = 40016
	CodeAdvertiserQPS       = 40133
	CodeSystemError         = 50000
	CodeProcessingError     = 50002
	CodeMaintenance         = 60001
)

// Endpoints are TikTok's OAuth URLs for one credential: each App carries its
// own, so an override meant for one kind never reaches a credential of the
// other. Every one is absolute; DefaultEndpoints derives them from a base
// URL and the kind.
type Endpoints struct {
	AuthorizeURL  string // consent page the browser is sent to
	TokenURL      string // auth code exchange
	RefreshURL    string // refresh token grant
	AdvertiserURL string // /oauth2/advertiser/get/ (advertiser kind only)
}

// App is one TikTok app as a credential uses it.
type App struct {
	Kind        string // KindAdvertiser ("" means the same) or KindTikTokAccount
	AppID       string // app_id, or client_key for tiktok_account
	Secret      string // app secret, or client_secret
	RedirectURL string
	Endpoints   Endpoints
	// Scopes are what a tiktok_account consent URL asks for; empty means
	// DefaultScope. The advertiser flow ignores them: its permissions are
	// set on the app.
	Scopes []string
}

// Grant is what an exchange or a refresh returns. Durations are relative
// to the moment the response arrived; zero means TikTok gave none.
type Grant struct {
	AccessToken      string
	ExpiresIn        time.Duration // 0: long-lived, no expiry given
	RefreshToken     string        // "": none given (keep any old one)
	RefreshExpiresIn time.Duration // 0: none given
	AdvertiserIDs    []string      // 19-digit ids, always strings
	Scopes           []string      // as TikTok gives them ("4", "100", or "user.info.basic")
	OpenID           string        // tiktok_account only
	// Dropped says which fields of TikTok's answer were unusable and left
	// out: any field but the access token, of a shape that cannot be read
	// (an advertiser id that is not digits, advertiser_ids that is not a
	// list, an expires_in that is not a whole number of seconds, a refresh
	// token that is not a string). They are dropped rather than failing the
	// call: a refresh has already rotated the refresh token, and losing the
	// answer would lose the credential. Never secret (a token's value is
	// never quoted); for the caller to log.
	Dropped []string
}

// Advertiser is one entry of /oauth2/advertiser/get/.
type Advertiser struct {
	ID   string `json:"advertiser_id"`
	Name string `json:"advertiser_name"`
}

// ErrBadResponse is wrapped by every error about an answer that is not what
// TikTok sends: not a JSON envelope, no integer "code", or a success without
// the data the call needs (no access_token; in the advertiser list, an id
// that is not digits), or a redirect, which no call follows. Such an answer came from TikTok's side (or whatever stands at the
// configured URL), so it is neither a refusal (*APIError) nor a failure to
// reach the endpoint. The wrapping error's text says what was wrong.
var ErrBadResponse = errors.New("tiktok: unexpected response")

// APIError is a TikTok envelope with code != 0 (and != 20001), or an HTTP
// error status from a TikTok endpoint (then Code is 0 and HTTPStatus set).
type APIError struct {
	Code       int
	Message    string
	RequestID  string
	HTTPStatus int
}

func (e *APIError) Error() string {
	if e.Code == 0 {
		return fmt.Sprintf("tiktok: HTTP %d: %s", e.HTTPStatus, e.Message)
	}
	return fmt.Sprintf("tiktok: code %d: %s (request_id %s)", e.Code, e.Message, e.RequestID)
}
