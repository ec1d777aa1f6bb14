package setup

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// CredentialState is one credential as /api/credentials shows it: the
// token store's Status plus the configured description and kind, its
// condition at a glance, how requests are routed to it, and its scopes
// named. It never holds a token or secret.
type CredentialState struct {
	tokens.Status
	Description string `json:"description"`
	Kind        string `json:"kind"`
	// State is the credential's condition, the one the setup page's badge
	// shows: see State.
	State        string `json:"state"`
	BreakerState string `json:"breaker_state,omitempty"`
	// BreakerUntil is when an open breaker lets the next request through;
	// zero when closed or unknown.
	BreakerUntil time.Time `json:"breaker_until,omitzero"`
	// BreakerError is the failure that opened the breaker, when known.
	BreakerError string `json:"breaker_error,omitempty"`
	// Default is true for the credential used when a request names no
	// credential and no known advertiser.
	Default bool `json:"default"`
	// Routes lists every advertiser that routes to this credential and
	// where the proxy learnt it.
	Routes []AdvertiserRoute `json:"advertiser_routes"`
	// NamedScopes is Scopes with TikTok's names for the numeric ids.
	NamedScopes []Scope `json:"named_scopes"`
}

// The values of CredentialState.State, most urgent first.
const (
	StateReauthRequired = "reauthorization_required" // TikTok no longer accepts the grant
	StateNotAuthorized  = "not_authorized"           // no grant yet
	StateTikTokFailing  = "tiktok_failing"           // the circuit breaker is open or half-open
	StateRefreshFailing = "refresh_failing"          // the last refresh failed; the token may still serve
	StateAuthorized     = "authorized"               // working
)

// State is a credential's condition from its status and its breaker state
// ("" when unknown): the one word the setup page, /api/credentials and the
// start log line use.
func State(s tokens.Status, breaker string) string {
	switch {
	case s.ReauthRequired:
		return StateReauthRequired
	case !s.Authorized:
		return StateNotAuthorized
	case breaker == "open" || breaker == "half-open":
		return StateTikTokFailing
	case !s.LastRefresh.At.IsZero() && !s.LastRefresh.OK:
		return StateRefreshFailing
	}
	return StateAuthorized
}

// Where an advertiser routed to a credential comes from (AdvertiserRoute.Sources).
const (
	SourceConfig  = "config"  // the credential's advertiser_ids
	SourceGrant   = "grant"   // the ids TikTok granted at authorization
	SourceListing = "listing" // TikTok's periodic /oauth2/advertiser/get/ listing
)

// AdvertiserRoute is one advertiser whose requests go to the credential.
type AdvertiserRoute struct {
	ID      string   `json:"id"`
	Name    string   `json:"name,omitempty"`
	Sources []string `json:"sources"`
}

// AdvertiserRoutes says where each advertiser whose requests go to the
// credential name comes from: its configured advertiser_ids, and what its
// grant or listing (stored) names, except an advertiser of conflicts that
// another credential owns or none does (requests naming it go there, or
// are refused). The store keeps one merged list, so the grant and the
// listing are told apart by the name: only TikTok's listing names an
// advertiser, while the grant carries bare ids.
func AdvertiserRoutes(name string, configured []string, stored []tokens.Advertiser, conflicts []tokens.AdvertiserConflict) []AdvertiserRoute {
	fromConfig := make(map[string]bool, len(configured))
	for _, id := range configured {
		fromConfig[id] = true
	}
	elsewhere := make(map[string]bool, len(conflicts))
	for _, c := range conflicts {
		if c.Owner != name {
			elsewhere[c.AdvertiserID] = true
		}
	}
	out := make([]AdvertiserRoute, 0, len(stored)+len(configured))
	seen := make(map[string]bool, len(stored))
	for _, ad := range stored {
		if elsewhere[ad.ID] {
			continue
		}
		seen[ad.ID] = true
		r := AdvertiserRoute{ID: ad.ID, Name: ad.Name}
		if fromConfig[ad.ID] {
			r.Sources = append(r.Sources, SourceConfig)
		}
		switch {
		case ad.Name != "":
			r.Sources = append(r.Sources, SourceListing)
		case !fromConfig[ad.ID]:
			r.Sources = append(r.Sources, SourceGrant)
		}
		out = append(out, r)
	}
	// Configured advertisers route here before any grant too.
	for _, id := range configured {
		if !seen[id] {
			seen[id] = true
			out = append(out, AdvertiserRoute{ID: id, Sources: []string{SourceConfig}})
		}
	}
	return out
}

// credentialStates lists every configured credential in config order.
func (a *Admin) credentialStates() []CredentialState {
	byName := make(map[string]tokens.Status)
	for _, s := range a.opts.Tokens.Statuses() {
		byName[s.Name] = s
	}
	out := make([]CredentialState, 0, len(a.order))
	for _, name := range a.order {
		c := a.creds[name]
		s := byName[name]
		s.Name = name
		if s.Advertisers == nil {
			s.Advertisers = []tokens.Advertiser{}
		}
		if s.Scopes == nil {
			s.Scopes = []string{}
		}
		cs := CredentialState{Status: s, Description: c.Description, Kind: c.Kind, Default: c.Default,
			Routes: AdvertiserRoutes(name, c.AdvertiserIDs, s.Advertisers, s.AdvertiserConflicts), NamedScopes: namedScopes(s.Scopes)}
		switch {
		case a.opts.Breaker != nil:
			b := a.opts.Breaker(name)
			cs.BreakerState, cs.BreakerUntil, cs.BreakerError = b.State, b.Until, b.LastError
		case a.opts.BreakerState != nil:
			cs.BreakerState = a.opts.BreakerState(name)
		}
		cs.State = State(s, cs.BreakerState)
		out = append(out, cs)
	}
	return out
}

func (a *Admin) handleCredentials(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.credentialStates())
}

// BeginResponse answers POST /api/authorize/{name}.
type BeginResponse struct {
	AuthorizeURL string    `json:"authorize_url"`
	State        string    `json:"state"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// WaitResponse answers the wait and complete calls. Done is false when a
// long-poll timed out before the flow finished; then Result and Error are
// empty. Once done, exactly one of Result and Error is set.
type WaitResponse struct {
	Done   bool    `json:"done"`
	Result *Result `json:"result,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// CompleteRequest is the body of POST /api/authorize/{state}/complete: the
// code pasted by the operator, or the whole URL the browser was sent to.
type CompleteRequest struct {
	Code          string `json:"code,omitempty"`
	RedirectedURL string `json:"redirected_url,omitempty"`
}

type errorBody struct {
	Error string `json:"error"`
}

// jsonOnly refuses POSTs that are not application/json: a web page can
// send those cross-origin only after a CORS preflight, which this listener
// never grants, so a page cannot drive the API from an operator's browser.
func jsonOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			writeJSON(w, http.StatusUnsupportedMediaType, errorBody{Error: "Content-Type must be application/json"})
			return
		}
		next(w, r)
	}
}

// handleAPIBegin mints a CLI state: the browser that consents is not the
// CLI, so no cookie can bind it; holding admin access is the binding.
func (a *Admin) handleAPIBegin(w http.ResponseWriter, r *http.Request) {
	authURL, state, expires, err := a.begin(r.PathValue("name"), "")
	if err != nil {
		writeFlowError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, BeginResponse{AuthorizeURL: authURL, State: state, ExpiresAt: expires})
}

// handleAPIWait long-polls until the state's flow finishes, WaitTimeout
// passes or the Admin is closed; the CLI then polls again. A finished flow
// is reported even when the timeout or Close fires at the same moment.
func (a *Admin) handleAPIWait(w http.ResponseWriter, r *http.Request) {
	st, ok := a.states.lookup(r.PathValue("state"))
	if !ok {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "unknown or expired state"})
		return
	}
	t := time.NewTimer(a.opts.WaitTimeout)
	defer t.Stop()
	if a.onWait != nil {
		a.onWait()
	}
	select {
	case <-st.done:
	case <-t.C:
	case <-a.closing:
	case <-r.Context().Done():
		return
	}
	select {
	case <-st.done:
		res, err := a.states.outcome(st)
		writeJSON(w, http.StatusOK, waitResponse(res, err))
	default:
		writeJSON(w, http.StatusOK, WaitResponse{Done: false})
	}
}

func waitResponse(res Result, err error) WaitResponse {
	if err != nil {
		return WaitResponse{Done: true, Error: flowMessage(err)}
	}
	return WaitResponse{Done: true, Result: &res}
}

func (a *Admin) handleAPIComplete(w http.ResponseWriter, r *http.Request) {
	state := r.PathValue("state")
	st, ok := a.states.lookup(state)
	if !ok {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "unknown or expired state"})
		return
	}
	var req CompleteRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "body must be JSON {\"code\": ...} or {\"redirected_url\": ...}"})
		return
	}
	code := req.Code
	if req.RedirectedURL != "" {
		c, s, err := ParseRedirect(req.RedirectedURL)
		if err != nil {
			writeFlowError(w, err)
			return
		}
		if s != "" && s != state {
			writeFlowError(w, errStateMismatch)
			return
		}
		code = c
	}
	res, err := a.complete(r.Context(), state, "", code, nil)
	if errors.Is(err, errUsedState) {
		// The callback got there first: report its outcome, so the CLI
		// learns the truth whichever way the code arrived.
		select {
		case <-st.done:
			res, err := a.states.outcome(st)
			writeJSON(w, http.StatusOK, waitResponse(res, err))
		case <-r.Context().Done():
		}
		return
	}
	if err != nil {
		writeFlowError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, WaitResponse{Done: true, Result: &res})
}

func flowMessage(err error) string {
	var fe *FlowError
	if errors.As(err, &fe) {
		return fe.Message
	}
	return "internal error; see the proxy's log"
}

func writeFlowError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var fe *FlowError
	if errors.As(err, &fe) {
		status = fe.HTTPStatus
	}
	writeJSON(w, status, errorBody{Error: flowMessage(err)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
