package tiktoksim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Credential kinds, as the tiktok package names them.
const (
	KindAdvertiser    = "advertiser"
	KindTikTokAccount = "tiktok_account"
)

// NoExpiry as Options.AccessTTL issues long-lived access tokens: no
// expires_in and no refresh_token, like TikTok's Marketing API tokens.
const NoExpiry time.Duration = -1

// codeTTL is how long an auth code can be exchanged.
const codeTTL = time.Hour

// maxRecorded bounds the request log.
const maxRecorded = 1000

// DefaultAdvertisers are granted to every app when Options.Apps is empty.
var DefaultAdvertisers = []Advertiser{
	{ID: "7012345678901234567", Name: "Sim Advertiser One"},
	{ID: "7012345678901234568", Name: "Sim Advertiser Two"},
}

// Advertiser is one ad account an app can be granted.
type Advertiser struct {
	ID   string `json:"advertiser_id"`
	Name string `json:"advertiser_name"`
}

// App is a registered TikTok app.
type App struct {
	ID     string
	Secret string
	// Kind restricts the app to KindAdvertiser or KindTikTokAccount
	// endpoints; "" allows both.
	Kind string
	// Name is shown on the consent page; "" shows the ID.
	Name string
	// Advertisers are granted at consent; nil means DefaultAdvertisers.
	Advertisers []Advertiser
}

// Options configure a Server. Zero values take the documented defaults.
type Options struct {
	// AccessTTL is the access token lifetime. 0 means 24h; NoExpiry (any
	// negative value) issues long-lived tokens without refresh token.
	AccessTTL time.Duration
	// RefreshTTL is the refresh token lifetime. 0 means 365 days.
	RefreshTTL time.Duration
	// Now is the clock; nil means time.Now. Advance moves it further.
	Now func() time.Time
	// Apps are the registered apps; none means any app_id is accepted.
	Apps []App
	// NumericIDs writes advertiser ids as JSON numbers instead of strings,
	// as some TikTok endpoints do, to test that clients never pass them
	// through float64.
	NumericIDs bool
}

// Server is the simulator, an http.Handler. Safe for concurrent use.
type Server struct {
	mux       *http.ServeMux
	now       func() time.Time
	numeric   bool
	apps      map[string]App
	closeCtx  context.Context
	closeFunc context.CancelFunc

	mu          sync.Mutex
	offset      time.Duration
	accessTTL   time.Duration // <= 0: no expiry
	refreshTTL  time.Duration
	codes       map[string]*authCode
	access      map[string]*token
	refresh     map[string]*token
	grants      []*grant
	stats       map[string]*AppStats
	faults      []*Fault
	quotas      []Quota
	quotaCounts map[quotaKey]int
	perSecond   map[string]map[int64]int // app → Unix second → API calls
	recorded    []Request                // ring buffer of maxRecorded
	recNext     int                      // next slot once the ring is full
	inflight    map[string]Request       // by request id, until recorded
	issued      Issued
	seq         int // ids of created objects

	// oddTokenFields: token answers carry their fields in odd but
	// readable shapes (SetOddTokenFields).
	oddTokenFields bool
}

type authCode struct {
	appID       string
	kind        string // "" accepts both kinds
	advertisers []Advertiser
	redirectURI string
	scope       string
	expires     time.Time
}

type grant struct {
	appID          string
	kind           string
	advertisers    []Advertiser
	scope          string
	openID         string
	revoked        bool
	created        time.Time
	accessToken    string
	accessExpires  time.Time // zero: never
	refreshToken   string
	refreshExpires time.Time
}

type token struct {
	g       *grant
	expires time.Time // zero: never
}

// AppStats counts one app's calls.
type AppStats struct {
	ExchangeCalls   int `json:"exchange_calls"`
	RefreshCalls    int `json:"refresh_calls"`
	RefreshFailures int `json:"refresh_failures"`
	APICalls        int `json:"api_calls"`
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	s := &Server{
		mux:        http.NewServeMux(),
		now:        opts.Now,
		numeric:    opts.NumericIDs,
		apps:       make(map[string]App),
		accessTTL:  opts.AccessTTL,
		refreshTTL: opts.RefreshTTL,
		codes:      make(map[string]*authCode),
		access:     make(map[string]*token),
		refresh:    make(map[string]*token),
		stats:      make(map[string]*AppStats),
		inflight:   make(map[string]Request),
	}
	if s.now == nil {
		s.now = time.Now
	}
	switch {
	case s.accessTTL == 0:
		s.accessTTL = 24 * time.Hour
	case s.accessTTL < 0:
		s.accessTTL = 0
	}
	if s.refreshTTL <= 0 {
		s.refreshTTL = 365 * 24 * time.Hour
	}
	for _, a := range opts.Apps {
		s.apps[a.ID] = a
	}
	s.closeCtx, s.closeFunc = context.WithCancel(context.Background())
	s.routes()
	return s
}

// Close ends streaming downloads and injected latencies in flight.
func (s *Server) Close() { s.closeFunc() }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern != "/open_api/" && r.Header.Get("Access-Token") != "" {
		s.recordStray(r)
	}
	s.mux.ServeHTTP(w, r)
}

// recordStray logs a request that carries an Access-Token to a path the API
// does not serve, so a test of a proxy sees every token that reached the
// simulator, wherever it was sent.
func (s *Server) recordStray(r *http.Request) {
	rec := Request{
		Time: s.clock(), RequestID: s.newRequestID(), Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		AccessToken: r.Header.Get("Access-Token"), CredentialHeader: r.Header.Get("X-TikTok-Credential"),
		Authorization: r.Header.Get("Authorization"), Header: r.Header.Clone(), Stray: true,
	}
	s.mu.Lock()
	if t, ok := s.access[rec.AccessToken]; ok {
		rec.TokenKnown, rec.AppID = true, t.g.appID
	}
	s.mu.Unlock()
	s.record(rec)
}

// clock is the simulator's time (the Now option plus Advance); it takes
// s.mu, so code holding the lock uses nowLocked.
func (s *Server) clock() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nowLocked()
}

func (s *Server) nowLocked() time.Time { return s.now().Add(s.offset) }

// Advance moves the simulator's clock forward by d.
func (s *Server) Advance(d time.Duration) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
	return s.nowLocked()
}

// app returns the registered app, or in open mode one made up for id.
func (s *Server) app(id string) (App, bool) {
	if len(s.apps) == 0 {
		if id == "" {
			return App{}, false
		}
		return App{ID: id}, true
	}
	a, ok := s.apps[id]
	return a, ok
}

func (a App) advertisers() []Advertiser {
	if a.Advertisers == nil {
		return DefaultAdvertisers
	}
	return a.Advertisers
}

func (a App) displayName() string {
	if a.Name != "" {
		return a.Name
	}
	return a.ID
}

func (s *Server) statsLocked(appID string) *AppStats {
	st, ok := s.stats[appID]
	if !ok {
		st = &AppStats{}
		s.stats[appID] = st
	}
	return st
}

// newSecret returns an unguessable token, code or id.
func newSecret() string { return rand.Text() }

// newRequestID looks like TikTok's: a timestamp then random hex.
func (s *Server) newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return s.clock().UTC().Format("20060102150405") + strings.ToUpper(hex.EncodeToString(b))
}

// IssueCode returns an auth code for appID as if its user had consented,
// valid for either kind. advertiserIDs nil grants the app's advertisers.
func (s *Server) IssueCode(appID string, advertiserIDs []string) string {
	return s.issueCode(appID, "", advertiserIDs, "", "")
}

// IssueCodeKind is IssueCode for one kind's token endpoint only, with the
// redirect_uri a tiktok_account exchange must repeat ("" skips the check)
// and the scope it grants ("" the default).
func (s *Server) IssueCodeKind(appID, kind string, advertiserIDs []string, redirectURI, scope string) string {
	return s.issueCode(appID, kind, advertiserIDs, redirectURI, scope)
}

func (s *Server) issueCode(appID, kind string, advertiserIDs []string, redirectURI, scope string) string {
	a, _ := s.app(appID)
	advs := a.advertisers()
	if advertiserIDs != nil {
		advs = make([]Advertiser, 0, len(advertiserIDs))
		for _, id := range advertiserIDs {
			name := "Advertiser " + id
			if i := slices.IndexFunc(a.advertisers(), func(x Advertiser) bool { return x.ID == id }); i >= 0 {
				name = a.advertisers()[i].Name
			}
			advs = append(advs, Advertiser{ID: id, Name: name})
		}
	}
	code := newSecret()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issued.AuthCodes = append(s.issued.AuthCodes, code)
	s.codes[code] = &authCode{
		appID: appID, kind: kind, advertisers: advs, redirectURI: redirectURI,
		scope: scope, expires: s.nowLocked().Add(codeTTL),
	}
	return code
}

// SetAccessTTL changes the lifetime of access tokens issued from now on;
// d <= 0 means no expiry (and no refresh token).
func (s *Server) SetAccessTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accessTTL = max(d, 0)
}

// SetRefreshTTL changes the lifetime of refresh tokens issued from now on;
// d <= 0 means the 365-day default.
func (s *Server) SetRefreshTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		d = 365 * 24 * time.Hour
	}
	s.refreshTTL = d
}

// SetOddTokenFields makes exchange and refresh answers carry their tokens
// as usual but every other field in an odd shape, as a TikTok change might:
// expires_in as a float (28800.0), open_id as a number, advertiser_ids as a
// comma-separated string, scope as an object. A client must keep the
// tokens of such an answer.
func (s *Server) SetOddTokenFields(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oddTokenFields = on
}

// TTLs returns the current access and refresh token lifetimes; an access
// TTL of 0 means no expiry.
func (s *Server) TTLs() (access, refresh time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accessTTL, s.refreshTTL
}

// RevokeApp revokes every grant of appID and returns how many.
func (s *Server) RevokeApp(appID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, g := range s.grants {
		if g.appID == appID && !g.revoked {
			g.revoked = true
			n++
		}
	}
	return n
}

// RevokeToken revokes the grant accessToken belongs to.
func (s *Server) RevokeToken(accessToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.access[accessToken]
	if !ok || t.g.revoked {
		return false
	}
	t.g.revoked = true
	return true
}

// Stats returns a copy of every app's counters.
func (s *Server) Stats() map[string]AppStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]AppStats, len(s.stats))
	for id, st := range s.stats {
		out[id] = *st
	}
	return out
}

// RefreshCalls is how many refresh requests appID made, failed or not.
func (s *Server) RefreshCalls(appID string) int { return s.Stats()[appID].RefreshCalls }

// ExchangeCalls is how many auth code exchanges appID made.
func (s *Server) ExchangeCalls(appID string) int { return s.Stats()[appID].ExchangeCalls }

// APICalls is how many API requests carried a token of appID.
func (s *Server) APICalls(appID string) int { return s.Stats()[appID].APICalls }

// Grant is a grant as GET /sim/grants shows it, with its current tokens.
type Grant struct {
	AppID            string    `json:"app_id"`
	Kind             string    `json:"kind"`
	AdvertiserIDs    []string  `json:"advertiser_ids"`
	AccessToken      string    `json:"access_token"`
	AccessExpiresAt  time.Time `json:"access_expires_at,omitzero"`
	RefreshToken     string    `json:"refresh_token,omitempty"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at,omitzero"`
	Revoked          bool      `json:"revoked"`
	CreatedAt        time.Time `json:"created_at"`
}

// Grants returns every grant issued, oldest first.
func (s *Server) Grants() []Grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Grant, 0, len(s.grants))
	for _, g := range s.grants {
		ids := make([]string, 0, len(g.advertisers))
		for _, a := range g.advertisers {
			ids = append(ids, a.ID)
		}
		out = append(out, Grant{
			AppID: g.appID, Kind: g.kind, AdvertiserIDs: ids,
			AccessToken: g.accessToken, AccessExpiresAt: g.accessExpires,
			RefreshToken: g.refreshToken, RefreshExpiresAt: g.refreshExpires,
			Revoked: g.revoked, CreatedAt: g.created,
		})
	}
	return out
}

// Issued is every secret the simulator ever handed out, oldest first, as
// GET /sim/issued shows it: unlike Grants, which holds only each grant's
// current tokens, it keeps rotated-away tokens and spent codes, so a test
// can scan logs for any of them.
type Issued struct {
	AccessTokens  []string `json:"access_tokens"`
	RefreshTokens []string `json:"refresh_tokens"`
	AuthCodes     []string `json:"auth_codes"`
}

// Issued returns a copy of every access token, refresh token and auth code
// issued so far.
func (s *Server) Issued() Issued {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Issued{
		AccessTokens:  append([]string{}, s.issued.AccessTokens...),
		RefreshTokens: append([]string{}, s.issued.RefreshTokens...),
		AuthCodes:     append([]string{}, s.issued.AuthCodes...),
	}
}
