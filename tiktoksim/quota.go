package tiktoksim

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Quota scopes and the codes TikTok answers each with.
const (
	QuotaApp        = "app"        // 40100
	QuotaEndpoint   = "endpoint"   // 40016
	QuotaAdvertiser = "advertiser" // 40133
)

// Quota windows: TikTok publishes limits per second, minute and day.
const (
	WindowSecond = "second"
	WindowMinute = "minute"
	WindowDay    = "day"
)

// Envelope codes of the quotas.
const (
	codeAppLimit        = 40100
	codeEndpointLimit   = 40016
	codeAdvertiserLimit = 40133
)

// qpsHistory bounds the per-second counter: the last hour.
const qpsHistory = 3600

// Quota is one of TikTok's limits: within one Window (a calendar second,
// minute or UTC day of the simulator's clock) the Limit+1st API call and
// every one after it are answered HTTP 200 with 40100 (app), 40016
// (endpoint) or 40133 (advertiser), with a message naming the window
// ("too many requests per minute"). Every call counts, answered or refused,
// as every call reaches TikTok. Only calls with a token the simulator
// issued count (the token names the app); OAuth token endpoints never do.
type Quota struct {
	// Scope is QuotaApp (""), QuotaEndpoint or QuotaAdvertiser.
	Scope string `json:"scope,omitempty"`
	// AppID narrows the quota to one app; "" gives every app its own count.
	AppID string `json:"app_id,omitempty"`
	// Path is the endpoint of a QuotaEndpoint quota ("" counts every path
	// apart); other scopes count every path together.
	Path string `json:"path,omitempty"`
	// Limit is the number of calls allowed per window.
	Limit int `json:"limit"`
	// Window is WindowSecond (""), WindowMinute or WindowDay.
	Window string `json:"window,omitempty"`
}

func (q Quota) validate() error {
	switch q.Scope {
	case "", QuotaApp, QuotaEndpoint, QuotaAdvertiser:
	default:
		return fmt.Errorf("scope %q: want app, endpoint or advertiser", q.Scope)
	}
	switch q.Window {
	case "", WindowSecond, WindowMinute, WindowDay:
	default:
		return fmt.Errorf("window %q: want second, minute or day", q.Window)
	}
	if q.Limit < 1 {
		return fmt.Errorf("limit %d: want at least 1", q.Limit)
	}
	return nil
}

// windowStart is the start of now's window.
func (q Quota) windowStart(now time.Time) time.Time {
	now = now.UTC()
	switch q.Window {
	case WindowMinute:
		return now.Truncate(time.Minute)
	case WindowDay:
		y, m, d := now.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	}
	return now.Truncate(time.Second)
}

// AddQuota installs q; every installed quota applies.
func (s *Server) AddQuota(q Quota) error {
	if err := q.validate(); err != nil {
		return fmt.Errorf("tiktoksim: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quotas = append(s.quotas, q)
	return nil
}

// ClearQuotas removes every quota and its counts.
func (s *Server) ClearQuotas() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quotas, s.quotaCounts = nil, nil
}

// Quotas returns the installed quotas.
func (s *Server) Quotas() []Quota {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.quotas)
}

// takeQuotaLocked counts a call of app to path naming advertisers, which
// arrived at now, against every quota and returns the code and message of
// the first one exceeded (0 when none is). s.mu held.
func (s *Server) takeQuotaLocked(now time.Time, app, path string, advertisers []string) (int, string) {
	if s.quotaCounts == nil {
		s.quotaCounts = map[quotaKey]int{}
	}
	code, msg := 0, ""
	for i, q := range s.quotas {
		if q.AppID != "" && q.AppID != app {
			continue
		}
		window := q.windowStart(now)
		var targets []string
		var c int
		var what string
		switch q.Scope {
		case QuotaEndpoint:
			if q.Path != "" && q.Path != path {
				continue
			}
			targets, c, what = []string{path}, codeEndpointLimit, "this endpoint"
		case QuotaAdvertiser:
			targets, c, what = advertisers, codeAdvertiserLimit, "this advertiser"
		default:
			targets, c, what = []string{""}, codeAppLimit, "the app"
		}
		for _, t := range targets {
			key := quotaKey{i, app, t, window.Unix()}
			s.quotaCounts[key]++
			if s.quotaCounts[key] > q.Limit && code == 0 {
				code = c
				msg = fmt.Sprintf("Too many requests: %s exceeded %d requests per %s. Please retry later.", what, q.Limit, cmpOr(q.Window, WindowSecond))
			}
		}
	}
	s.pruneQuotaCountsLocked(now)
	return code, msg
}

// quotaKey is one quota's count for one app and target in one window.
type quotaKey struct {
	quota       int
	app, target string
	window      int64 // the window's start, Unix seconds
}

// pruneQuotaCountsLocked drops counts of windows that began over a day ago,
// once there are many.
func (s *Server) pruneQuotaCountsLocked(now time.Time) {
	if len(s.quotaCounts) < 10000 {
		return
	}
	cut := now.Add(-25 * time.Hour).Unix()
	for k := range s.quotaCounts {
		if k.window < cut {
			delete(s.quotaCounts, k)
		}
	}
}

func cmpOr(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

// countSecondLocked adds one API call of app, which arrived at now, to the
// per-second counter.
func (s *Server) countSecondLocked(app string, now time.Time) {
	if s.perSecond == nil {
		s.perSecond = map[string]map[int64]int{}
	}
	m := s.perSecond[app]
	if m == nil {
		m = map[int64]int{}
		s.perSecond[app] = m
	}
	sec := now.Unix()
	m[sec]++
	if len(m) > qpsHistory {
		for k := range m {
			if k <= sec-qpsHistory {
				delete(m, k)
			}
		}
	}
}

// Second is one second of the per-second counter.
type Second struct {
	// Unix is the second's start in Unix seconds of the simulator's clock.
	Unix int64 `json:"unix"`
	// Calls is the number of API calls of the app that arrived in it.
	Calls int `json:"calls"`
}

// PerSecond returns app's API calls in each second of the last hour in
// which it made any, oldest first: what TikTok's per-second quota sees.
// Calls to the OAuth token endpoints and calls without a token the
// simulator issued are not counted.
func (s *Server) PerSecond(app string) []Second {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Second, 0, len(s.perSecond[app]))
	for sec, n := range s.perSecond[app] {
		out = append(out, Second{Unix: sec, Calls: n})
	}
	slices.SortFunc(out, func(a, b Second) int { return int(a.Unix - b.Unix) })
	return out
}

// ClearPerSecond empties the per-second counter of every app.
func (s *Server) ClearPerSecond() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.perSecond = nil
}

func (s *Server) ctlQuota(w http.ResponseWriter, r *http.Request) {
	var q Quota
	if err := decodeControl(r, &q); err != nil {
		badRequest(w, "quota: %v", err)
		return
	}
	if err := s.AddQuota(q); err != nil {
		badRequest(w, "%v", strings.TrimPrefix(err.Error(), "tiktoksim: "))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"quotas": s.Quotas()})
}

func (s *Server) ctlPerSecond(w http.ResponseWriter, r *http.Request) {
	app := r.URL.Query().Get("app_id")
	if app == "" {
		badRequest(w, "persecond needs app_id")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"app_id": app, "seconds": s.PerSecond(app)})
}
