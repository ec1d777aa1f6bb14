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
// token store's Status plus the configured description and kind. It never
// holds a token or secret.
type CredentialState struct {
	tokens.Status
	Description  string `json:"description"`
	Kind         string `json:"kind"`
	BreakerState string `json:"breaker_state,omitempty"`
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
		cs := CredentialState{Status: s, Description: c.Description, Kind: c.Kind}
		if a.opts.BreakerState != nil {
			cs.BreakerState = a.opts.BreakerState(name)
		}
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
