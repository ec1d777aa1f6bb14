package tiktok

import (
	"context"
	"errors"
	"net/http"
)

// errTODO marks the contract stubs the tiktok package's owner replaces.
var errTODO = errors.New("tiktok: not implemented")

// Client calls TikTok's OAuth endpoints. The zero value uses a default
// HTTP client with a 30s timeout. Safe for concurrent use.
type Client struct {
	// HTTP is the client used for every call; nil means a client with a 30s timeout.
	HTTP *http.Client
}

// DefaultEndpoints derives kind's OAuth URLs from baseURL (scheme and host).
func DefaultEndpoints(baseURL, kind string) Endpoints { return Endpoints{} }

// AuthCodeURL is the consent URL the user's browser is sent to.
func (c *Client) AuthCodeURL(app App, state string) string { return "" }

// Exchange trades an auth code for a Grant.
func (c *Client) Exchange(ctx context.Context, app App, code string) (*Grant, error) {
	return nil, errTODO
}

// Refresh trades a refresh token for a new Grant.
func (c *Client) Refresh(ctx context.Context, app App, refreshToken string) (*Grant, error) {
	return nil, errTODO
}

// Advertisers lists the advertisers the access token is authorized for.
func (c *Client) Advertisers(ctx context.Context, app App, accessToken string) ([]Advertiser, error) {
	return nil, errTODO
}

// PeekCode reads the envelope code from the first bytes of a JSON
// response body. ok is false when prefix holds no complete "code" field.
func PeekCode(prefix []byte) (code int, ok bool) { return 0, false }
