package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

const campaignCreate = "/open_api/v1.3/campaign/create/"

// answers returns a handler answering the i-th request with codes[i] (the
// last one from then on); a negative code is that HTTP status, -1 a reset.
func answers(codes ...int) http.HandlerFunc {
	var n atomic.Int32
	return func(w http.ResponseWriter, r *http.Request) {
		i := min(int(n.Add(1))-1, len(codes)-1)
		switch c := codes[i]; {
		case c == -1:
			conn, _, _ := http.NewResponseController(w).Hijack()
			_ = conn.Close()
		case c < 0:
			http.Error(w, "upstream trouble", -c)
		default:
			writeEnvelope(w, c)
		}
	}
}

func envelopeCode(t *testing.T, w *httptest.ResponseRecorder) int {
	t.Helper()
	if w.Header().Get(HeaderError) != "" {
		t.Fatalf("proxy error %s: %s", w.Header().Get(HeaderError), w.Body)
	}
	var env struct{ Code *int }
	if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil || env.Code == nil {
		t.Fatalf("no envelope in %q", w.Body)
	}
	return *env.Code
}

func TestReadsRetriedOnTransientAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		first  int
		reason string
	}{
		{"processing error", 50002, "50002"},
		{"write conflict", 40202, "40202"},
		{"maintenance", 60001, "60001"},
		{"app limit", 40100, "40100"},
		{"http 503", -503, "503"},
		{"reset", -1, "reset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, answers(tc.first, 0), nil)
			w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil))
			if w.Code != http.StatusOK || envelopeCode(t, w) != 0 {
				t.Fatalf("after a retry: %d %s, want TikTok's 0", w.Code, w.Body)
			}
			if n := len(h.up.requests()); n != 2 {
				t.Errorf("TikTok got %d requests, want 2", n)
			}
			if v := testutil.ToFloat64(h.m.UpstreamRetries.WithLabelValues("main", tc.reason)); v != 1 {
				t.Errorf("upstream_retries_total{main,%s} = %v, want 1", tc.reason, v)
			}
		})
	}
}

func TestTheFinalAnswerPassesThroughUnchanged(t *testing.T) {
	h := newHarness(t, answers(-502), func(c *config.Config, _ *Options) { c.Retry.Attempts = 3 })
	w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil))
	if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "upstream trouble") || w.Header().Get(HeaderError) != "" {
		t.Fatalf("after the last try: %d %q, want TikTok's own 502", w.Code, w.Body)
	}
	if n := len(h.up.requests()); n != 3 {
		t.Errorf("TikTok got %d requests, want retry.attempts = 3", n)
	}
	if v := testutil.ToFloat64(h.m.UpstreamRetries.WithLabelValues("main", "502")); v != 2 {
		t.Errorf("upstream_retries_total{main,502} = %v, want 2", v)
	}
}

func TestAttemptsOneMeansNoRetry(t *testing.T) {
	h := newHarness(t, answers(50002, 0), func(c *config.Config, _ *Options) { c.Retry.Attempts = 1 })
	if w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil)); envelopeCode(t, w) != 50002 {
		t.Fatalf("%s, want 50002 passed through", w.Body)
	}
	if n := len(h.up.requests()); n != 1 {
		t.Errorf("TikTok got %d requests, want 1", n)
	}
}

func TestWritesRetriedOnlyWhenAsked(t *testing.T) {
	body := `{"advertiser_id":"` + advMain + `","campaign_name":"c"}`
	post := func(h *harness, header string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, campaignCreate, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if header != "" {
			r.Header.Set(HeaderRetry, header)
		}
		return h.do(r)
	}
	h := newHarness(t, answers(50002, 0), nil)
	if w := post(h, ""); envelopeCode(t, w) != 50002 {
		t.Fatalf("POST: %s, want 50002 unchanged", w.Body)
	}
	if n := len(h.up.requests()); n != 1 {
		t.Fatalf("a POST without %s reached TikTok %d times, want once", HeaderRetry, n)
	}

	h = newHarness(t, answers(50002, 0), nil)
	if w := post(h, "writes"); envelopeCode(t, w) != 0 {
		t.Fatalf("POST with %s: writes: %s, want 0 after a retry", HeaderRetry, w.Body)
	}
	seen := h.up.requests()
	if len(seen) != 2 || string(seen[1].Body) != body {
		t.Fatalf("TikTok got %d requests, want 2 with the same body", len(seen))
	}
	for _, r := range seen {
		if v := r.Header.Get(HeaderRetry); v != "" {
			t.Errorf("%s reached TikTok: %q", HeaderRetry, v)
		}
	}
}

func TestTheBreakerCountsTheFinalOutcome(t *testing.T) {
	h := newHarness(t, answers(50002, 0, 50002, 0), func(c *config.Config, _ *Options) {
		c.Breaker.ConsecutiveFailures = 2
	})
	for range 2 {
		if w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil)); envelopeCode(t, w) != 0 {
			t.Fatalf("%s", w.Body)
		}
	}
	// Two failed tries in a row, each retried to success: counted per try
	// they would have opened the breaker.
	if got := h.p.Breaker("main").State; got != "closed" {
		t.Errorf("breaker %s, want closed", got)
	}
}

func TestRetryBudget(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newRetryPolicy(config.Retry{}, func() time.Time { return now }).budget
	for i := range retryBurst / retryUnit {
		if !b.take() {
			t.Fatalf("retry %d of a fresh budget refused", i+1)
		}
	}
	if b.take() {
		t.Fatal("a retry beyond the saved-up budget allowed")
	}
	for range 10 {
		b.sent()
	}
	if !b.take() || b.take() {
		t.Fatal("ten requests should buy one retry (10 %), no more")
	}
	now = now.Add(time.Second)
	for i := range retryFloor / retryUnit {
		if !b.take() {
			t.Fatalf("floor retry %d after a quiet second refused", i+1)
		}
	}
	if b.take() {
		t.Fatal("more than the floor after one quiet second")
	}
}
