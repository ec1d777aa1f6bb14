package tiktoksim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// listing answers with what list returns, under key.
func listing[T any](key string, list func() T) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{key: list()})
	}
}

// clearing empties a list with clear and answers with it empty, under key.
func clearing[T any](key string, clear func()) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		clear()
		writeJSON(w, http.StatusOK, map[string]any{key: []T{}})
	}
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("/open_api/", s.serveAPI)
	m.HandleFunc("GET /portal/auth", s.consent(KindAdvertiser))
	m.HandleFunc("POST /portal/auth", s.consent(KindAdvertiser))
	m.HandleFunc("GET /v2/auth/authorize/{$}", s.consent(KindTikTokAccount))
	m.HandleFunc("POST /v2/auth/authorize/{$}", s.consent(KindTikTokAccount))
	m.HandleFunc("POST /sim/code", s.ctlCode)
	m.HandleFunc("GET /sim/requests", listing("requests", s.Requests))
	m.HandleFunc("DELETE /sim/requests", clearing[Request]("requests", s.ClearRequests))
	m.HandleFunc("GET /sim/stats", listing("apps", s.Stats))
	m.HandleFunc("GET /sim/fault", listing("faults", s.Faults))
	m.HandleFunc("POST /sim/fault", s.ctlFault)
	m.HandleFunc("DELETE /sim/fault", clearing[Fault]("faults", s.ClearFaults))
	m.HandleFunc("GET /sim/quota", listing("quotas", s.Quotas))
	m.HandleFunc("POST /sim/quota", s.ctlQuota)
	m.HandleFunc("DELETE /sim/quota", clearing[Quota]("quotas", s.ClearQuotas))
	m.HandleFunc("GET /sim/persecond", s.ctlPerSecond)
	m.HandleFunc("DELETE /sim/persecond", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearPerSecond()
		writeJSON(w, http.StatusOK, map[string]any{})
	})
	m.HandleFunc("POST /sim/revoke", s.ctlRevoke)
	m.HandleFunc("GET /sim/config", s.ctlConfig)
	m.HandleFunc("POST /sim/config", s.ctlConfig)
	m.HandleFunc("POST /sim/clock", s.ctlClock)
	m.HandleFunc("GET /sim/grants", listing("grants", s.Grants))
	m.HandleFunc("GET /sim/issued", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Issued())
	})
	m.HandleFunc("GET /sim/inflight", listing("requests", s.Inflight))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf(format, args...)})
}

// decodeControl reads a control request's JSON body strictly.
func decodeControl(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func (s *Server) ctlCode(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	appID := q.Get("app_id")
	if _, ok := s.app(appID); !ok {
		badRequest(w, "unknown app_id %q", appID)
		return
	}
	kind := q.Get("kind")
	switch kind {
	case "", KindAdvertiser, KindTikTokAccount:
	default:
		badRequest(w, "kind %q: want advertiser or tiktok_account", kind)
		return
	}
	code := s.issueCode(appID, kind, splitIDs(q.Get("advertiser_ids")), q.Get("redirect_uri"), q.Get("scope"))
	writeJSON(w, http.StatusOK, map[string]string{"code": code})
}

func (s *Server) ctlFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if err := decodeControl(r, &f); err != nil {
		badRequest(w, "fault: %v", err)
		return
	}
	if err := s.AddFault(f); err != nil {
		badRequest(w, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"faults": s.Faults()})
}

func (s *Server) ctlRevoke(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n := 0
	switch {
	case q.Get("app_id") != "":
		n = s.RevokeApp(q.Get("app_id"))
	case q.Get("access_token") != "":
		if s.RevokeToken(q.Get("access_token")) {
			n = 1
		}
	default:
		badRequest(w, "revoke needs app_id or access_token")
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

type configJSON struct {
	AccessTTL      string `json:"access_ttl,omitempty"`
	RefreshTTL     string `json:"refresh_ttl,omitempty"`
	OddTokenFields *bool  `json:"odd_token_fields,omitempty"`
}

func (s *Server) ctlConfig(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		var c configJSON
		if err := decodeControl(r, &c); err != nil {
			badRequest(w, "config: %v", err)
			return
		}
		var access, refresh time.Duration
		var err error
		if c.AccessTTL != "" {
			if access, err = time.ParseDuration(c.AccessTTL); err != nil {
				badRequest(w, "access_ttl: %v", err)
				return
			}
		}
		if c.RefreshTTL != "" {
			if refresh, err = time.ParseDuration(c.RefreshTTL); err != nil {
				badRequest(w, "refresh_ttl: %v", err)
				return
			}
		}
		if c.AccessTTL != "" {
			s.SetAccessTTL(access)
		}
		if c.RefreshTTL != "" {
			s.SetRefreshTTL(refresh)
		}
		if c.OddTokenFields != nil {
			s.SetOddTokenFields(*c.OddTokenFields)
		}
	}
	access, refresh := s.TTLs()
	s.mu.Lock()
	odd := s.oddTokenFields
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, configJSON{AccessTTL: access.String(), RefreshTTL: refresh.String(), OddTokenFields: &odd})
}

func (s *Server) ctlClock(w http.ResponseWriter, r *http.Request) {
	var c struct {
		Advance string `json:"advance"`
	}
	if err := decodeControl(r, &c); err != nil {
		badRequest(w, "clock: %v", err)
		return
	}
	d, err := time.ParseDuration(c.Advance)
	if err != nil || d < 0 {
		badRequest(w, "advance: want a non-negative Go duration")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"now": s.Advance(d).UTC().Format(time.RFC3339)})
}
