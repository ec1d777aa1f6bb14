package metrics

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// populated returns Metrics on a fresh registry with one series in every
// family (a vector without series is not gathered).
func populated(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := New(reg, "v1.2.3", "go1.26")
	m.ObserveRequest("main", "GET", 200, 30*time.Millisecond)
	m.UpstreamAPIError("main", 40100)
	m.Refresh("main", true, time.Second)
	m.Refresh("main", false, time.Second)
	exp := time.Unix(1_900_000_000, 0)
	m.CredentialState("main", true, false, exp, exp.Add(time.Hour))
	m.SetBreakerState("main", BreakerOpen)
	m.StoreWriteFailed()
	m.SetGrantUnpersisted("main", true)
	m.RateLimitWaited("main", 100*time.Millisecond)
	m.RateLimitedBy("main", SourceTikTok)
	m.UpstreamRetry("main", "40100")
	m.AppPaused("7123456789012345678", exp)
	return m, reg
}

func TestSpecMetricsAndLabels(t *testing.T) {
	m, reg := populated(t)

	want := map[string][]string{
		"tiktok_auth_proxy_requests_total":                         {"credential", "method", "status"},
		"tiktok_auth_proxy_request_duration_seconds":               {"credential"},
		"tiktok_auth_proxy_upstream_api_errors_total":              {"code", "credential"},
		"tiktok_auth_proxy_token_refreshes_total":                  {"credential", "result"},
		"tiktok_auth_proxy_token_refresh_duration_seconds":         {"credential"},
		"tiktok_auth_proxy_access_token_expiry_timestamp_seconds":  {"credential"},
		"tiktok_auth_proxy_refresh_token_expiry_timestamp_seconds": {"credential"},
		"tiktok_auth_proxy_credential_authorized":                  {"credential"},
		"tiktok_auth_proxy_credential_reauthorization_required":    {"credential"},
		"tiktok_auth_proxy_circuit_breaker_state":                  {"credential"},
		"tiktok_auth_proxy_build_info":                             {"goversion", "version"},
		"tiktok_auth_proxy_store_write_failures_total":             nil,
		"tiktok_auth_proxy_grant_unpersisted":                      {"credential"},
		"tiktok_auth_proxy_rate_limit_wait_seconds":                {"credential"},
		"tiktok_auth_proxy_rate_limited_total":                     {"credential", "source"},
		"tiktok_auth_proxy_upstream_retries_total":                 {"code", "credential"},
		"tiktok_auth_proxy_app_pause_until_timestamp_seconds":      {"app_id"},
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, f := range families {
		var names []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			names = append(names, l.GetName())
		}
		got[f.GetName()] = names
	}
	for name, labels := range want {
		if strings.Join(got[name], ",") != strings.Join(labels, ",") {
			t.Errorf("%s: labels %v, want %v", name, got[name], labels)
		}
	}
	if len(got) != len(want) {
		t.Errorf("gathered %d families, want %d: %v", len(got), len(want), got)
	}
	if v := testutil.ToFloat64(m.TokenRefreshes.WithLabelValues("main", "failure")); v != 1 {
		t.Errorf("failure refreshes = %v, want 1", v)
	}
	if v := testutil.ToFloat64(m.AccessExpiry.WithLabelValues("main")); v != 1_900_000_000 {
		t.Errorf("access expiry = %v", v)
	}
	if v := testutil.ToFloat64(m.BreakerState.WithLabelValues("main")); v != 2 {
		t.Errorf("breaker state = %v, want 2", v)
	}
	if v := testutil.ToFloat64(m.GrantUnpersisted.WithLabelValues("main")); v != 1 {
		t.Errorf("grant unpersisted = %v, want 1", v)
	}
	if v := testutil.ToFloat64(m.StoreWriteFailures); v != 1 {
		t.Errorf("store write failures = %v, want 1", v)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestZeroExpiryRemovesGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, "dev", "go")
	m.CredentialState("main", true, false, time.Unix(100, 0), time.Unix(200, 0))
	m.CredentialState("main", true, true, time.Time{}, time.Time{})
	if n := testutil.CollectAndCount(m.AccessExpiry); n != 0 {
		t.Errorf("access expiry series = %d, want 0 for a long-lived token", n)
	}
	if n := testutil.CollectAndCount(m.RefreshExpiry); n != 0 {
		t.Errorf("refresh expiry series = %d, want 0", n)
	}
	if v := testutil.ToFloat64(m.ReauthRequired.WithLabelValues("main")); v != 1 {
		t.Errorf("reauth gauge = %v, want 1", v)
	}
}

func TestInitCredentialCreatesSeriesBeforeAnyEvent(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, "dev", "go")
	m.InitCredential("main")
	want := `
# HELP tiktok_auth_proxy_token_refreshes_total Access token refresh attempts, by credential and result (success, failure).
# TYPE tiktok_auth_proxy_token_refreshes_total counter
tiktok_auth_proxy_token_refreshes_total{credential="main",result="failure"} 0
tiktok_auth_proxy_token_refreshes_total{credential="main",result="success"} 0
# HELP tiktok_auth_proxy_credential_authorized 1 when the credential holds a grant, else 0.
# TYPE tiktok_auth_proxy_credential_authorized gauge
tiktok_auth_proxy_credential_authorized{credential="main"} 0
# HELP tiktok_auth_proxy_credential_reauthorization_required 1 when the credential must be authorized again on /authorize, else 0.
# TYPE tiktok_auth_proxy_credential_reauthorization_required gauge
tiktok_auth_proxy_credential_reauthorization_required{credential="main"} 0
# HELP tiktok_auth_proxy_circuit_breaker_state Circuit breaker towards TikTok per credential: 0 closed, 1 half-open, 2 open.
# TYPE tiktok_auth_proxy_circuit_breaker_state gauge
tiktok_auth_proxy_circuit_breaker_state{credential="main"} 0
# HELP tiktok_auth_proxy_rate_limited_total Requests rate limited, by credential and source: proxy (refused with 90012) or tiktok (answered 40100, 40016, 40133 or 61000).
# TYPE tiktok_auth_proxy_rate_limited_total counter
tiktok_auth_proxy_rate_limited_total{credential="main",source="proxy"} 0
tiktok_auth_proxy_rate_limited_total{credential="main",source="tiktok"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"tiktok_auth_proxy_token_refreshes_total", "tiktok_auth_proxy_credential_authorized",
		"tiktok_auth_proxy_credential_reauthorization_required", "tiktok_auth_proxy_circuit_breaker_state",
		"tiktok_auth_proxy_rate_limited_total"); err != nil {
		t.Error(err)
	}
	for _, h := range []*prometheus.HistogramVec{m.RequestDuration, m.RefreshDuration, m.RateLimitWait} {
		if n := testutil.CollectAndCount(h); n != 1 {
			t.Errorf("histogram series = %d, want 1 for credential main", n)
		}
	}

	// A state reported before InitCredential is kept.
	m.CredentialState("shop", true, false, time.Time{}, time.Time{})
	m.InitCredential("shop")
	if v := testutil.ToFloat64(m.Authorized.WithLabelValues("shop")); v != 1 {
		t.Errorf("credential_authorized after InitCredential = %v, want the reported 1", v)
	}
}

func TestNilMetricsIsNoop(t *testing.T) {
	var m *Metrics
	m.InitCredential("a")
	m.ObserveRequest("a", "GET", 200, 0)
	m.UpstreamAPIError("a", 1)
	m.Refresh("a", true, 0)
	m.CredentialState("a", true, true, time.Now(), time.Now())
	m.SetBreakerState("a", 1)
	m.StoreWriteFailed()
	m.SetGrantUnpersisted("a", true)
	m.RateLimitWaited("a", 0)
	m.RateLimitedBy("a", SourceProxy)
	m.UpstreamRetry("a", "reset")
	m.AppPaused("1", time.Now())
}

func TestAppPausedSetsAndRemovesTheSeries(t *testing.T) {
	m := New(prometheus.NewRegistry(), "dev", "go")
	until := time.Unix(1_900_000_300, 0)
	m.AppPaused("7123", until)
	if v := testutil.ToFloat64(m.AppPauseUntil.WithLabelValues("7123")); v != 1_900_000_300 {
		t.Errorf("app_pause_until = %v, want %v", v, 1_900_000_300)
	}
	m.AppPaused("7123", time.Time{})
	if n := testutil.CollectAndCount(m.AppPauseUntil); n != 0 {
		t.Errorf("series after the pause ended = %d, want 0", n)
	}
}

// fakeBound is a ClientBound the test sets.
type fakeBound struct {
	held, limit, queued int
	waited              uint64
}

func (b *fakeBound) Held() int      { return b.held }
func (b *fakeBound) Limit() int     { return b.limit }
func (b *fakeBound) Waited() uint64 { return b.waited }
func (b *fakeBound) Queued() (int, bool) {
	return b.queued, b.queued >= 0
}

// The alert rules and the dashboard must only use metrics that exist,
// the listeners' bound (registered by serve, not New) included.
func TestDeployFilesUseExistingMetrics(t *testing.T) {
	_, reg := populated(t)
	RegisterClientBound(reg, &fakeBound{})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range families {
		known[f.GetName()] = true
	}
	suffix := regexp.MustCompile(`_(bucket|sum|count)$`)
	name := regexp.MustCompile(`tiktok_auth_proxy_[a-z_]+`)
	for _, file := range []string{"../deploy/prometheus/alerts.yaml", "../deploy/grafana/dashboard.json"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		found := name.FindAllString(string(data), -1)
		if len(found) == 0 {
			t.Errorf("%s names no metric", file)
		}
		for _, n := range found {
			if !known[n] && !known[suffix.ReplaceAllString(n, "")] {
				t.Errorf("%s uses %s, which the proxy does not export", file, n)
			}
		}
	}
}
