// Package metrics defines every Prometheus metric of tiktok-auth-proxy on
// one struct, registered on a given prometheus.Registerer so tests use a
// fresh registry each. All methods are safe on a nil *Metrics (no-ops), so
// packages can take an optional *Metrics.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "tiktok_auth_proxy"

// Metrics holds the collectors of SPEC's metrics table. Labels are bounded:
// credential names, HTTP status codes and TikTok envelope codes only.
type Metrics struct {
	Requests          *prometheus.CounterVec
	RequestDuration   *prometheus.HistogramVec
	UpstreamAPIErrors *prometheus.CounterVec
	TokenRefreshes    *prometheus.CounterVec
	RefreshDuration   *prometheus.HistogramVec
	AccessExpiry      *prometheus.GaugeVec
	RefreshExpiry     *prometheus.GaugeVec
	Authorized        *prometheus.GaugeVec
	ReauthRequired    *prometheus.GaugeVec
	BreakerState      *prometheus.GaugeVec
	BuildInfo         *prometheus.GaugeVec
	// StoreWriteFailures and GrantUnpersisted show a grant TikTok issued
	// that lives only in memory: it is lost if the process stops.
	StoreWriteFailures prometheus.Counter
	GrantUnpersisted   *prometheus.GaugeVec
	RateLimitWait      *prometheus.HistogramVec
	RateLimited        *prometheus.CounterVec
	UpstreamRetries    *prometheus.CounterVec
	AppPauseUntil      *prometheus.GaugeVec
}

// Sources of rate_limited_total.
const (
	// SourceProxy counts requests the proxy refused with 90012.
	SourceProxy = "proxy"
	// SourceTikTok counts TikTok's answers with a rate-limit code.
	SourceTikTok = "tiktok"
)

// Results of token_refreshes_total.
const (
	resultSuccess = "success"
	resultFailure = "failure"
)

// New creates the metrics and registers them on reg. version and
// goVersion fill build_info.
func New(reg prometheus.Registerer, version, goVersion string) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "requests_total",
			Help: "Requests proxied, by credential, method and HTTP status code returned to the client.",
		}, []string{"credential", "method", "status"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "request_duration_seconds",
			Help:    "Time from receiving a request to the end of its response, by credential.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"credential"}),
		UpstreamAPIErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_api_errors_total",
			Help: "TikTok responses whose envelope code is not 0, by credential and code.",
		}, []string{"credential", "code"}),
		TokenRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "token_refreshes_total",
			Help: "Access token refresh attempts, by credential and result (success, failure).",
		}, []string{"credential", "result"}),
		RefreshDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "token_refresh_duration_seconds",
			Help:    "Duration of token refresh calls to TikTok, by credential.",
			Buckets: prometheus.DefBuckets,
		}, []string{"credential"}),
		AccessExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "access_token_expiry_timestamp_seconds",
			Help: "Unix time at which the credential's access token expires (expiring tokens only).",
		}, []string{"credential"}),
		RefreshExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "refresh_token_expiry_timestamp_seconds",
			Help: "Unix time at which the credential's refresh token expires (when TikTok gives one).",
		}, []string{"credential"}),
		Authorized: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "credential_authorized",
			Help: "1 when the credential holds a grant, else 0.",
		}, []string{"credential"}),
		ReauthRequired: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "credential_reauthorization_required",
			Help: "1 when the credential must be authorized again on /authorize, else 0.",
		}, []string{"credential"}),
		BreakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "circuit_breaker_state",
			Help: "Circuit breaker towards TikTok per credential: 0 closed, 1 half-open, 2 open.",
		}, []string{"credential"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "build_info",
			Help: "Always 1; labels carry the version and the Go version.",
		}, []string{"version", "goversion"}),
		StoreWriteFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "store_write_failures_total",
			Help: "Writes to the token store that failed (read-only or full disk, unreachable store).",
		}),
		GrantUnpersisted: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "grant_unpersisted",
			Help: "1 while a grant TikTok issued for the credential is held only in memory because the store refused it, else 0.",
		}, []string{"credential"}),
		RateLimitWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "rate_limit_wait_seconds",
			Help:    "Time a request waited for its turn in the app's budget (rate_limits, rate_limit, pauses), by credential.",
			Buckets: []float64{.001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"credential"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "rate_limited_total",
			Help: "Requests rate limited, by credential and source: proxy (refused with 90012) or tiktok (answered 40100, 40016, 40133 or 61000).",
		}, []string{"credential", "source"}),
		UpstreamRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_retries_total",
			Help: "Requests sent to TikTok again, by credential and the code that caused the retry (TikTok envelope code, HTTP status, or reset).",
		}, []string{"credential", "code"}),
		AppPauseUntil: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "app_pause_until_timestamp_seconds",
			Help: "Unix time until which the app is paused after TikTok answered a rate-limit code (only while paused).",
		}, []string{"app_id"}),
	}
	reg.MustRegister(m.Requests, m.RequestDuration, m.UpstreamAPIErrors, m.TokenRefreshes,
		m.RefreshDuration, m.AccessExpiry, m.RefreshExpiry, m.Authorized, m.ReauthRequired,
		m.BreakerState, m.BuildInfo, m.StoreWriteFailures, m.GrantUnpersisted,
		m.RateLimitWait, m.RateLimited, m.UpstreamRetries, m.AppPauseUntil)
	m.BuildInfo.WithLabelValues(version, goVersion).Set(1)
	return m
}

// InitCredential creates every series of credential whose labels are known
// before the first event: token_refreshes_total for both results, the
// request, refresh and rate-limit wait histograms, rate_limited_total for
// both sources, and the credential_* and circuit_breaker_state gauges. Prometheus practice: rate(), absent() and
// alerts only work on series that exist, and a proxy that has not refreshed
// yet would otherwise export none. Series that already exist keep their
// values, so calling it after the token manager reported a state is safe.
// Series labelled by status or TikTok code appear with their first event.
func (m *Metrics) InitCredential(credential string) {
	if m == nil {
		return
	}
	m.TokenRefreshes.WithLabelValues(credential, resultSuccess)
	m.TokenRefreshes.WithLabelValues(credential, resultFailure)
	m.RefreshDuration.WithLabelValues(credential)
	m.RequestDuration.WithLabelValues(credential)
	m.Authorized.WithLabelValues(credential)
	m.ReauthRequired.WithLabelValues(credential)
	m.BreakerState.WithLabelValues(credential)
	m.RateLimitWait.WithLabelValues(credential)
	m.RateLimited.WithLabelValues(credential, SourceProxy)
	m.RateLimited.WithLabelValues(credential, SourceTikTok)
}

// RateLimitWaited records how long a request waited for its turn.
func (m *Metrics) RateLimitWaited(credential string, d time.Duration) {
	if m == nil {
		return
	}
	m.RateLimitWait.WithLabelValues(credential).Observe(d.Seconds())
}

// RateLimitedBy counts a request limited by source (SourceProxy, SourceTikTok).
func (m *Metrics) RateLimitedBy(credential, source string) {
	if m == nil {
		return
	}
	m.RateLimited.WithLabelValues(credential, source).Inc()
}

// UpstreamRetry counts a retry caused by code: a TikTok envelope code, an
// HTTP status, or "reset" for a broken connection.
func (m *Metrics) UpstreamRetry(credential, code string) {
	if m == nil {
		return
	}
	m.UpstreamRetries.WithLabelValues(credential, code).Inc()
}

// AppPaused sets app_pause_until_timestamp_seconds; a zero until removes
// the series (the app is not paused).
func (m *Metrics) AppPaused(appID string, until time.Time) {
	if m == nil {
		return
	}
	setOrDelete(m.AppPauseUntil, appID, until)
}

// ObserveRequest records one proxied request.
func (m *Metrics) ObserveRequest(credential, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.Requests.WithLabelValues(credential, method, statusLabel(status)).Inc()
	m.RequestDuration.WithLabelValues(credential).Observe(d.Seconds())
}

// statusLabels are the status label values of the usual answers, so the
// request counter's label costs no allocation (strconv.Itoa allocates for
// numbers of three digits).
var statusLabels = func() map[int]string {
	m := map[int]string{}
	for _, s := range []int{200, 201, 204, 400, 401, 403, 404, 405, 407, 408, 413, 421, 429, 499, 500, 502, 503, 504} {
		m[s] = strconv.Itoa(s)
	}
	return m
}()

// statusLabel is status as the request counter's label.
func statusLabel(status int) string {
	if s, ok := statusLabels[status]; ok {
		return s
	}
	return strconv.Itoa(status)
}

// UpstreamAPIError counts a TikTok envelope code != 0.
func (m *Metrics) UpstreamAPIError(credential string, code int) {
	if m == nil {
		return
	}
	m.UpstreamAPIErrors.WithLabelValues(credential, strconv.Itoa(code)).Inc()
}

// Refresh records one refresh attempt.
func (m *Metrics) Refresh(credential string, ok bool, d time.Duration) {
	if m == nil {
		return
	}
	result := resultSuccess
	if !ok {
		result = resultFailure
	}
	m.TokenRefreshes.WithLabelValues(credential, result).Inc()
	m.RefreshDuration.WithLabelValues(credential).Observe(d.Seconds())
}

// CredentialState sets the per-credential gauges from the credential's
// current record. A zero expiry removes its gauge (long-lived or unknown).
func (m *Metrics) CredentialState(credential string, authorized, reauth bool, accessExpiry, refreshExpiry time.Time) {
	if m == nil {
		return
	}
	m.Authorized.WithLabelValues(credential).Set(b2f(authorized))
	m.ReauthRequired.WithLabelValues(credential).Set(b2f(reauth))
	setOrDelete(m.AccessExpiry, credential, accessExpiry)
	setOrDelete(m.RefreshExpiry, credential, refreshExpiry)
}

// StoreWriteFailed counts one failed write to the token store.
func (m *Metrics) StoreWriteFailed() {
	if m == nil {
		return
	}
	m.StoreWriteFailures.Inc()
}

// SetGrantUnpersisted sets grant_unpersisted: whether a grant of the
// credential is held only in memory.
func (m *Metrics) SetGrantUnpersisted(credential string, unpersisted bool) {
	if m == nil {
		return
	}
	m.GrantUnpersisted.WithLabelValues(credential).Set(b2f(unpersisted))
}

// Breaker states for SetBreakerState.
const (
	BreakerClosed   = 0
	BreakerHalfOpen = 1
	BreakerOpen     = 2
)

// SetBreakerState sets circuit_breaker_state.
func (m *Metrics) SetBreakerState(credential string, state int) {
	if m == nil {
		return
	}
	m.BreakerState.WithLabelValues(credential).Set(float64(state))
}

func setOrDelete(g *prometheus.GaugeVec, label string, t time.Time) {
	if t.IsZero() {
		g.DeleteLabelValues(label)
		return
	}
	g.WithLabelValues(label).Set(float64(t.UnixNano()) / 1e9)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
