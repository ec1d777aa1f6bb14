package tiktoksim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Fault scopes.
const (
	// ScopeAPI matches every /open_api/ path except the OAuth token
	// endpoints (exchange, refresh, revoke of both kinds). The default.
	ScopeAPI = "api"
	// ScopeToken matches only the OAuth token endpoints: "TikTok's token
	// endpoint is down".
	ScopeToken = "token"
	// ScopeAll matches every /open_api/ path.
	ScopeAll = "all"
)

// Fault breaks matching requests. Latency is waited first; then Reset,
// HTTPStatus, Redirect, Body or Code answers, in that order of precedence. A Fault with
// only Latency delays the request and serves it; one with Hold serves it and
// delays the answer.
type Fault struct {
	// Scope is ScopeAPI (""), ScopeToken or ScopeAll.
	Scope string `json:"scope,omitempty"`
	// PathPrefix narrows the match ("" matches every path in Scope).
	PathPrefix string `json:"path_prefix,omitempty"`
	// AccessToken narrows the match to requests carrying this Access-Token
	// ("" matches any): with Code 40105 it is TikTok invalidating one
	// access token while the grant, and the tokens a refresh issues, live on.
	AccessToken string `json:"access_token,omitempty"`
	// Code answers HTTP 200 with this envelope code (40100, 50002, ...).
	Code    int    `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// HTTPStatus answers with this status and a text body, no envelope.
	HTTPStatus int `json:"http_status,omitempty"`
	// Redirect answers 307 Temporary Redirect to this URL, which a client
	// must not follow with the secret it sent.
	Redirect string `json:"redirect,omitempty"`
	// Body answers HTTP 200 with exactly these bytes: garbage, a truncated
	// envelope, a login wall standing where TikTok should be.
	Body string `json:"body,omitempty"`
	// Latency delays the answer (JSON: a Go duration string).
	Latency time.Duration `json:"-"`
	// Hold serves the request (a refresh rotates the token) and then holds
	// the answer this long before sending it (JSON: a Go duration string):
	// a client that dies meanwhile never learns what TikTok did.
	Hold time.Duration `json:"-"`
	// Reset closes the connection with a TCP RST instead of answering.
	Reset bool `json:"reset,omitempty"`
	// Count applies the fault to the next Count matching requests, then
	// removes it; 0 keeps it until cleared.
	Count int `json:"count,omitempty"`
}

// MarshalJSON writes Latency as a Go duration string.
func (f Fault) MarshalJSON() ([]byte, error) {
	type plain Fault
	j := struct {
		plain
		Latency string `json:"latency,omitempty"`
		Hold    string `json:"hold,omitempty"`
	}{plain: plain(f)}
	if f.Latency > 0 {
		j.Latency = f.Latency.String()
	}
	if f.Hold > 0 {
		j.Hold = f.Hold.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads Latency as a Go duration string.
func (f *Fault) UnmarshalJSON(b []byte) error {
	type plain Fault
	j := struct {
		*plain
		Latency string `json:"latency"`
		Hold    string `json:"hold"`
	}{plain: (*plain)(f)}
	// Strict, so a misspelt knob is an error rather than a fault that
	// silently does something else.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	if j.Latency != "" {
		d, err := time.ParseDuration(j.Latency)
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		f.Latency = d
	}
	if j.Hold != "" {
		d, err := time.ParseDuration(j.Hold)
		if err != nil {
			return fmt.Errorf("hold: %w", err)
		}
		f.Hold = d
	}
	return nil
}

func (f Fault) validate() error {
	switch f.Scope {
	case "", ScopeAPI, ScopeToken, ScopeAll:
	default:
		return fmt.Errorf("scope %q: want api, token or all", f.Scope)
	}
	if f.Code == 0 && f.HTTPStatus == 0 && f.Body == "" && f.Redirect == "" && f.Latency <= 0 && f.Hold <= 0 && !f.Reset {
		return errors.New("a fault needs code, http_status, redirect, body, latency, hold or reset")
	}
	if f.HTTPStatus != 0 && (f.HTTPStatus < 400 || f.HTTPStatus > 599) {
		return fmt.Errorf("http_status %d: want 400-599", f.HTTPStatus)
	}
	if f.Count < 0 || f.Latency < 0 || f.Hold < 0 {
		return errors.New("count, latency and hold must not be negative")
	}
	return nil
}

// AddFault installs f after the existing faults; the first match wins.
func (s *Server) AddFault(f Fault) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("tiktoksim: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
	return nil
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Faults returns the installed faults with their remaining counts.
func (s *Server) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, 0, len(s.faults))
	for _, f := range s.faults {
		out = append(out, *f)
	}
	return out
}

// takeFault finds the fault for a request and uses up one of its count.
func (s *Server) takeFault(path, accessToken string, tokenEndpoint bool) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		switch {
		case f.Scope == ScopeToken && !tokenEndpoint,
			(f.Scope == "" || f.Scope == ScopeAPI) && tokenEndpoint,
			!strings.HasPrefix(path, f.PathPrefix),
			f.AccessToken != "" && f.AccessToken != accessToken:
			continue
		}
		taken := *f
		if f.Count > 0 {
			f.Count--
			if f.Count == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		return taken, true
	}
	return Fault{}, false
}
