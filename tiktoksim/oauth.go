package tiktoksim

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// defaultTTScope is what a tiktok_account grant gets when the consent
// asked for no scope.
const defaultTTScope = "user.info.basic"

// advertiserScopes are the Marketing API permission ids every advertiser
// grant gets.
var advertiserScopes = []int{1, 2, 3, 4}

// flexString accepts a JSON string or number, since clients send app_id
// either way.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return err
	}
	s, _ := idString(v)
	*f = flexString(s)
	return nil
}

// tokenRequest holds the fields of every token endpoint of both kinds.
type tokenRequest struct {
	AppID        flexString `json:"app_id"`
	Secret       string     `json:"secret"`
	ClientID     flexString `json:"client_id"`
	ClientSecret string     `json:"client_secret"`
	AuthCode     string     `json:"auth_code"`
	GrantType    string     `json:"grant_type"`
	RefreshToken string     `json:"refresh_token"`
	RedirectURI  string     `json:"redirect_uri"`
	AccessToken  string     `json:"access_token"`
}

// appCreds returns the app id and secret under the kind's field names.
func (t tokenRequest) appCreds(kind string) (string, string) {
	if kind == KindTikTokAccount {
		return string(t.ClientID), t.ClientSecret
	}
	return string(t.AppID), t.Secret
}

func (s *Server) secretOK(a App, secret string) bool {
	if len(s.apps) == 0 {
		return secret != ""
	}
	return secret == a.Secret
}

// tokenRequest decodes the body and checks the app; ok false means it
// answered.
func (c *call) tokenRequest(kind string) (tokenRequest, App, bool) {
	var t tokenRequest
	_, raw, ok := c.jsonBody()
	if !ok {
		return t, App{}, false
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		c.fail(codeParam, "body fields have the wrong type")
		return t, App{}, false
	}
	appID, secret := t.appCreds(kind)
	c.rec.AppID = appID
	app, found := c.s.app(appID)
	switch {
	case appID == "":
		c.fail(codeParam, "app_id: field required")
	case !found:
		c.fail(codeAppMissing, "The app does not exist or has been blocked.")
	case !c.s.secretOK(app, secret):
		c.fail(codeAuthParams, "Invalid auth parameters: app_id or secret is wrong.")
	case app.Kind != "" && app.Kind != kind:
		c.fail(codeAuthParams, "Invalid auth parameters: the app is not a "+app.Kind+" app.")
	default:
		return t, app, true
	}
	return t, app, false
}

func (c *call) exchange(kind string) {
	s := c.s
	t, app, ok := c.tokenRequest(kind)
	// Counted before validation so tests see every attempt.
	if c.rec.AppID != "" {
		s.mu.Lock()
		s.statsLocked(c.rec.AppID).ExchangeCalls++
		s.mu.Unlock()
	}
	if !ok {
		return
	}
	if kind == KindTikTokAccount && t.GrantType != "authorization_code" {
		c.fail(codeParam, "grant_type must be authorization_code")
		return
	}
	s.mu.Lock()
	now := s.nowLocked()
	ac, found := s.codes[t.AuthCode]
	if found && ac.appID == app.ID && (ac.kind == "" || ac.kind == kind) {
		// Single use: a code is spent by any attempt of its app.
		delete(s.codes, t.AuthCode)
	}
	switch {
	case !found || ac.appID != app.ID || (ac.kind != "" && ac.kind != kind) || !now.Before(ac.expires):
		s.mu.Unlock()
		c.fail(codeInvalidAuthCode, "Auth code is invalid, expired or already used.")
		return
	case kind == KindTikTokAccount && ac.redirectURI != "" && ac.redirectURI != t.RedirectURI:
		s.mu.Unlock()
		c.fail(codeAuthParams, "Invalid auth parameters: redirect_uri does not match the authorization request.")
		return
	}
	g := &grant{appID: app.ID, kind: kind, advertisers: ac.advertisers, scope: ac.scope, openID: newSecret(), created: now}
	if g.scope == "" {
		g.scope = defaultTTScope
	}
	s.grants = append(s.grants, g)
	data := s.issueLocked(g, now)
	s.mu.Unlock()
	c.rec.AdvertiserIDs = advertiserIDs(g.advertisers)
	c.ok(data)
}

func (c *call) refresh(kind string) {
	s := c.s
	t, app, ok := c.tokenRequest(kind)
	if c.rec.AppID != "" {
		s.mu.Lock()
		s.statsLocked(c.rec.AppID).RefreshCalls++
		s.mu.Unlock()
	}
	defer func() {
		if c.rec.Code != codeOK && c.rec.AppID != "" {
			s.mu.Lock()
			s.statsLocked(c.rec.AppID).RefreshFailures++
			s.mu.Unlock()
		}
	}()
	if !ok {
		return
	}
	if t.GrantType != "refresh_token" {
		c.fail(codeParam, "grant_type must be refresh_token")
		return
	}
	s.mu.Lock()
	now := s.nowLocked()
	rt, found := s.refresh[t.RefreshToken]
	switch {
	case !found || rt.g.appID != app.ID || rt.g.kind != kind || rt.g.revoked:
		s.mu.Unlock()
		c.fail(codeRefreshInvalid, "Refresh token is invalid.")
		return
	case !now.Before(rt.expires):
		s.mu.Unlock()
		c.fail(codeRefreshExpired, "Refresh token has expired.")
		return
	}
	delete(s.refresh, t.RefreshToken)
	data := s.issueLocked(rt.g, now)
	g := rt.g
	s.mu.Unlock()
	c.rec.AdvertiserIDs = advertiserIDs(g.advertisers)
	c.ok(data)
}

func (c *call) revokeToken() {
	t, app, ok := c.tokenRequest(KindAdvertiser)
	if !ok {
		return
	}
	s := c.s
	s.mu.Lock()
	at, found := s.access[t.AccessToken]
	if found && at.g.appID == app.ID {
		at.g.revoked = true
	}
	s.mu.Unlock()
	if !found || at.g.appID != app.ID {
		c.fail(codeTokenInvalid, "Access token is incorrect or has been revoked.")
		return
	}
	c.ok(nil)
}

func advertiserIDs(advs []Advertiser) []string {
	ids := make([]string, 0, len(advs))
	for _, a := range advs {
		ids = append(ids, a.ID)
	}
	return ids
}

// issueLocked gives g a new access token, and a new refresh token unless
// access tokens do not expire, and returns the response data.
func (s *Server) issueLocked(g *grant, now time.Time) any {
	g.accessToken = newSecret()
	g.accessExpires = time.Time{}
	g.refreshToken = ""
	g.refreshExpires = time.Time{}
	if s.accessTTL > 0 {
		g.accessExpires = now.Add(s.accessTTL)
		g.refreshToken = newSecret()
		g.refreshExpires = now.Add(s.refreshTTL)
		s.refresh[g.refreshToken] = &token{g: g, expires: g.refreshExpires}
		s.issued.RefreshTokens = append(s.issued.RefreshTokens, g.refreshToken)
	}
	s.access[g.accessToken] = &token{g: g, expires: g.accessExpires}
	s.issued.AccessTokens = append(s.issued.AccessTokens, g.accessToken)
	var expiresIn, refreshIn int64
	if s.accessTTL > 0 {
		expiresIn = int64(s.accessTTL / time.Second)
		refreshIn = int64(s.refreshTTL / time.Second)
	}
	if s.oddTokenFields {
		odd := map[string]any{
			"access_token":   g.accessToken,
			"advertiser_ids": strings.Join(advertiserIDs(g.advertisers), ","),
			"open_id":        json.Number("7000000000000000099"),
			"scope":          map[string]any{"permissions": advertiserScopes},
		}
		if g.refreshToken != "" {
			odd["refresh_token"] = g.refreshToken
			odd["expires_in"] = json.Number(strconv.FormatInt(expiresIn, 10) + ".0")
			odd["refresh_token_expires_in"] = json.Number(strconv.FormatInt(refreshIn, 10) + ".0")
		}
		return odd
	}
	if g.kind == KindTikTokAccount {
		return struct {
			AccessToken           string `json:"access_token"`
			ExpiresIn             int64  `json:"expires_in,omitempty"`
			OpenID                string `json:"open_id"`
			RefreshToken          string `json:"refresh_token,omitempty"`
			RefreshTokenExpiresIn int64  `json:"refresh_token_expires_in,omitempty"`
			Scope                 string `json:"scope"`
			TokenType             string `json:"token_type"`
		}{g.accessToken, expiresIn, g.openID, g.refreshToken, refreshIn, g.scope, "Bearer"}
	}
	return struct {
		AccessToken           string `json:"access_token"`
		AdvertiserIDs         []any  `json:"advertiser_ids"`
		Scope                 []int  `json:"scope"`
		ExpiresIn             int64  `json:"expires_in,omitempty"`
		RefreshToken          string `json:"refresh_token,omitempty"`
		RefreshTokenExpiresIn int64  `json:"refresh_token_expires_in,omitempty"`
	}{g.accessToken, s.ids(advertiserIDs(g.advertisers)), advertiserScopes, expiresIn, g.refreshToken, refreshIn}
}

// splitIDs splits a comma-separated list, dropping blanks.
func splitIDs(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
