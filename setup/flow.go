package setup

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// FlowError is why an authorization could not complete. Message is safe to
// show (it never holds a token, secret or auth code); HTTPStatus says whose
// fault it is: 400 the request's, 404 an unknown credential, 502 TikTok's
// (504 when it did not answer in time), 500 the proxy's own.
type FlowError struct {
	HTTPStatus int
	Message    string
	Err        error // the underlying cause, for errors.Is/As; may be nil
	// brief is TikTok's denial without its free-text description.
	brief string
}

func (e *FlowError) Error() string { return "setup: " + e.Message }

func (e *FlowError) Unwrap() error { return e.Err }

func clientError(msg string) *FlowError {
	return &FlowError{HTTPStatus: http.StatusBadRequest, Message: msg}
}

// The state and binding failures; each stores nothing.
var (
	errMissingState = clientError("The callback carried no state parameter.")
	errUnknownState = clientError("This authorization was not started here, or the proxy restarted since it was started. Start again from the setup page.")
	errUsedState    = clientError("This authorization link has already been used; each one works once. Start again from the setup page.")
	errExpiredState = clientError("This authorization expired: it must be completed within 10 minutes. Start again from the setup page.")
	errNoBinding    = clientError("This authorization was started in another browser (its cookie is missing here). Start again from the setup page in the browser you consent with.")
	errWrongBinding = clientError("This authorization was started in a different browser. Start again from the setup page in the browser you consent with.")
	errMissingCode  = clientError("TikTok's redirect carried no authorization code.")
	errUnknownCred  = &FlowError{HTTPStatus: http.StatusNotFound, Message: "No credential of that name is configured."}
)

// Result is a completed authorization: the credential's state as stored.
type Result struct {
	Credential string        `json:"credential"`
	Status     tokens.Status `json:"status"`
}

// exchangeTimeout bounds the exchange and the store write. They run detached
// from the browser's request: an auth code is single-use, so a browser that
// hangs up must not lose a grant TikTok has already issued.
const exchangeTimeout = 2 * time.Minute

// Begin mints a fresh single-use state for credential name and returns
// TikTok's consent URL carrying it.
//
// A non-empty browserBinding binds the state to the browser holding that
// value in its cookie: only a callback presenting it can complete. An empty
// browserBinding mints a CLI state that any callback or Complete call with
// the state can finish. That is acceptable because minting a CLI state takes
// admin access (the admin token, or a loopback listener), and the state
// itself is a 256-bit secret known only to the minter and TikTok.
func (a *Admin) Begin(name, browserBinding string) (authURL, state string, err error) {
	authURL, state, _, err = a.begin(name, browserBinding)
	return authURL, state, err
}

func (a *Admin) begin(name, binding string) (authURL, state string, expires time.Time, err error) {
	c, ok := a.creds[name]
	if !ok {
		return "", "", time.Time{}, errUnknownCred
	}
	state, st, err := a.states.mint(name, binding)
	if err != nil {
		return "", "", time.Time{}, &FlowError{HTTPStatus: http.StatusInternalServerError, Message: "Could not create a state.", Err: err}
	}
	a.log.Info("setup: authorization started", "credential", name, "cli", binding == "")
	return a.opts.Exchanger.AuthCodeURL(c.App, state), state, st.expires, nil
}

// Complete finishes the flow of state with code: it checks the state
// (known, unexpired, unused, bound to binding unless it is a CLI state),
// consumes it, exchanges the code and stores the grant. Every error is a
// *FlowError; on error nothing is stored and any existing grant is
// unchanged. The outcome is also handed to whoever waits on the state.
func (a *Admin) Complete(ctx context.Context, state, binding, code string) (Result, error) {
	return a.complete(ctx, state, binding, code, nil)
}

// complete is the one completion path of browser and CLI. denied, when
// non-nil, is TikTok's own error from the redirect: the state is still
// consumed so that it cannot be replayed.
func (a *Admin) complete(ctx context.Context, state, binding, code string, denied *FlowError) (Result, error) {
	st, err := a.states.claim(state, binding)
	if err != nil {
		if denied != nil {
			err = withDenial(err, denied)
		}
		a.log.Warn("setup: authorization refused", "reason", err.Error())
		return Result{}, err
	}
	res, err := a.exchangeAndStore(ctx, st.credential, code, denied)
	a.states.finish(st, res, err)
	if err != nil {
		a.log.Warn("setup: authorization failed", "credential", st.credential, "reason", err.Error(),
			"cause", scrub(causeText(err), code, a.creds[st.credential].App.Secret))
		return Result{}, err
	}
	// The token store logs the authorization itself ("credential
	// authorized", with its advertisers, scopes and expiry): one line per
	// authorization, not one from each layer.
	return res, nil
}

func (a *Admin) exchangeAndStore(ctx context.Context, name, code string, denied *FlowError) (Result, error) {
	if denied != nil {
		return Result{}, denied
	}
	if code == "" {
		return Result{}, errMissingCode
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exchangeTimeout)
	defer cancel()
	app := a.creds[name].App
	g, err := a.opts.Exchanger.Exchange(ctx, app, code)
	if err != nil {
		return Result{}, exchangeError(err, code, app.Secret)
	}
	s, err := a.opts.Tokens.Authorize(ctx, name, g)
	if err != nil {
		return Result{}, &FlowError{HTTPStatus: http.StatusInternalServerError,
			Message: "TikTok granted access, but the proxy could not store the grant; see the proxy's log.", Err: err}
	}
	if s.Name == "" {
		s.Name = name
	}
	return Result{Credential: name, Status: s}, nil
}

// exchangeError turns an exchange failure into a FlowError. TikTok's
// envelope messages carry no secret by contract, but they are still scrubbed
// of the code and app secret before they can reach a page.
func exchangeError(err error, code, secret string) *FlowError {
	var apiErr *tiktok.APIError
	if errors.As(err, &apiErr) {
		var msg string
		if apiErr.Code != 0 {
			msg = fmt.Sprintf("TikTok refused the authorization code: code %d: %s", apiErr.Code, apiErr.Message)
		} else {
			msg = fmt.Sprintf("TikTok's token endpoint answered HTTP %d: %s", apiErr.HTTPStatus, apiErr.Message)
		}
		if apiErr.RequestID != "" {
			msg += " (request_id " + apiErr.RequestID + ")"
		}
		return &FlowError{HTTPStatus: http.StatusBadGateway, Message: scrub(msg, code, secret), Err: err}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &FlowError{HTTPStatus: http.StatusGatewayTimeout, Message: "TikTok's token endpoint did not answer in time.", Err: err}
	}
	if errors.Is(err, tiktok.ErrBadResponse) {
		// Typically a proxy, login wall or wrong oauth.token_url answering
		// in TikTok's place; the log has the decode error.
		return &FlowError{HTTPStatus: http.StatusBadGateway,
			Message: "TikTok's token endpoint answered with an unexpected response (not a token grant); check oauth.token_url, and see the proxy's log.", Err: err}
	}
	return &FlowError{HTTPStatus: http.StatusBadGateway, Message: "The proxy could not reach TikTok's token endpoint.", Err: err}
}

// deniedErrors are the error names an OAuth authorization endpoint
// redirects with (RFC 6749 section 4.1.2.1), the only ones TikTok sends. The
// callback's error parameter is text anyone can put in a link to the admin
// page, so no other value is ever shown.
var deniedErrors = map[string]bool{
	"access_denied": true, "invalid_request": true, "unauthorized_client": true, "unsupported_response_type": true,
	"invalid_scope": true, "server_error": true, "temporarily_unavailable": true,
}

// deniedError is TikTok's error from the redirect (error, error_description).
// An error name TikTok does not send is shown as a generic refusal.
func deniedError(code, desc string) *FlowError {
	status := http.StatusBadGateway
	msg := "TikTok reported an error: " + code
	if !deniedErrors[code] {
		msg = "TikTok refused the authorization"
	}
	if code == "access_denied" {
		status = http.StatusBadRequest
		msg = "Access was not granted on TikTok's consent page (access_denied)"
	}
	brief := msg + "."
	if desc != "" {
		msg += ": " + desc
	}
	return &FlowError{HTTPStatus: status, Message: msg + ".", brief: brief}
}

// withDenial adds TikTok's own error to a refused state: the operator
// should learn why TikTok sent the browser back, not only that the state
// did not match. The state error stays reachable through errors.Is. Only
// the error code is shown, not its description: with no valid state
// anyone can craft the link, and the description is free text they choose.
func withDenial(stateErr error, denied *FlowError) *FlowError {
	return &FlowError{HTTPStatus: denied.HTTPStatus, Message: denied.brief + " " + flowMessage(stateErr), Err: stateErr}
}

func causeText(err error) string {
	if u := errors.Unwrap(err); u != nil {
		return u.Error()
	}
	return ""
}

// scrub removes secret values from text meant for a page or a log, in case
// an upstream error ever echoes one.
func scrub(text string, secrets ...string) string {
	for _, s := range secrets {
		if s != "" {
			text = strings.ReplaceAll(text, s, "[redacted]")
		}
	}
	return text
}
