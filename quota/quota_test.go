package quota

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
)

const (
	appA = "7123456789012345678"
	appB = "7999999999999999999"
)

// t0 is the tests' start: 14:03:20.300 UTC, mid-second and mid-day.
var t0 = time.Date(2026, 12, 2, 14, 3, 20, 300_000_000, time.UTC)

// basic is a config of two credentials of appA and one of appB on the
// Basic tier.
func basic() *config.Config {
	return &config.Config{
		RateLimits: config.RateLimits{Tier: config.TierBasic, MaxWait: 10 * time.Second},
		Credentials: []config.Credential{
			{Name: "main", AppID: appA},
			{Name: "shop", AppID: appA},
			{Name: "other", AppID: appB},
		},
	}
}

type harness struct {
	t     *testing.T
	clock *fakeClock
	l     *Limiter
	m     *metrics.Metrics
}

func newHarness(t *testing.T, cfg *config.Config) *harness {
	t.Helper()
	c := newFakeClock(t0)
	m := metrics.New(prometheus.NewRegistry(), "test", "go")
	return &harness{t: t, clock: c, m: m, l: New(cfg, Options{Clock: c, Metrics: m})}
}

// result is one Wait's outcome.
type result struct {
	id     int
	waited time.Duration
	err    error
}

// start runs Wait in the background and returns once the request is in
// line (waiting went up by one).
func (h *harness) start(ctx context.Context, id int, req Request) <-chan result {
	h.t.Helper()
	before := h.l.waiting()
	ch := make(chan result, 1)
	go func() {
		w, err := h.l.Wait(ctx, req)
		ch <- result{id, w, err}
	}()
	h.until(func() bool { return h.l.waiting() > before }, "request in line")
	return ch
}

// until polls cond with a deadline: the request goroutines run on their own.
func (h *harness) until(cond func() bool, what string) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// now runs Wait and requires it to return at once.
func (h *harness) now(req Request) (time.Duration, error) {
	h.t.Helper()
	ch := make(chan result, 1)
	go func() {
		w, err := h.l.Wait(context.Background(), req)
		ch <- result{0, w, err}
	}()
	select {
	case r := <-ch:
		return r.waited, r.err
	case <-time.After(5 * time.Second):
		h.t.Fatal("Wait did not return without the clock moving")
		return 0, nil
	}
}

// done requires ch to have a result (Advance ran the admission synchronously).
func done(t *testing.T, ch <-chan result, what string) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still waiting", what)
		return result{}
	}
}

func pending(t *testing.T, ch <-chan result, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: returned early: waited %v, err %v", what, r.waited, r.err)
	default:
	}
}

func interval(qps float64) time.Duration { return perSecond(qps, 1).Interval }

func TestCredentialsOfOneAppShareTheSmallestBudget(t *testing.T) {
	cfg := basic()
	cfg.Credentials[0].RateLimit = config.RateLimit{QPS: 6, Burst: 1}
	cfg.Credentials[1].RateLimit = config.RateLimit{QPS: 4, Burst: 1}
	h := newHarness(t, cfg)
	main := Request{Credential: "main", Path: "/open_api/v1.3/campaign/get/"}
	shop := Request{Credential: "shop", Path: "/open_api/v1.3/campaign/get/"}

	if w, err := h.now(main); err != nil || w != 0 {
		t.Fatalf("first request: waited %v, err %v; want at once", w, err)
	}
	// shop's 4 QPS is the app's budget, for main too.
	ch := h.start(context.Background(), 1, shop)
	h.clock.Advance(interval(4) - time.Millisecond)
	pending(t, ch, "second request of the app before 1/4 s")
	h.clock.Advance(time.Millisecond)
	if r := done(t, ch, "second request"); r.err != nil || r.waited != interval(4) {
		t.Fatalf("second request: waited %v, err %v; want %v", r.waited, r.err, interval(4))
	}
	// Another app has its own bucket at the tier's 10 QPS.
	if w, err := h.now(Request{Credential: "other"}); err != nil || w != 0 {
		t.Fatalf("other app: waited %v, err %v; want at once", w, err)
	}
	ch = h.start(context.Background(), 2, Request{Credential: "other"})
	h.clock.Advance(interval(10))
	if r := done(t, ch, "other app's second request"); r.waited != interval(10) {
		t.Fatalf("other app's second request waited %v, want %v (tier basic)", r.waited, interval(10))
	}
}

func TestTheLineIsFirstComeFirstServed(t *testing.T) {
	h := newHarness(t, basic())
	req := Request{Credential: "main", Path: "/open_api/v1.3/campaign/get/"}
	if _, err := h.now(req); err != nil {
		t.Fatal(err)
	}
	var chans []<-chan result
	for i := range 5 {
		// Alternate credentials: both spend from the app's one line.
		r := req
		if i%2 == 1 {
			r.Credential = "shop"
		}
		chans = append(chans, h.start(context.Background(), i, r))
	}
	for i, ch := range chans {
		h.clock.Advance(interval(10))
		r := done(t, ch, "request")
		if r.id != i || r.waited != time.Duration(i+1)*interval(10) {
			t.Fatalf("turn %d went to request %d after %v, want request %d after %v", i, r.id, r.waited, i, time.Duration(i+1)*interval(10))
		}
		for _, later := range chans[i+1:] {
			pending(t, later, "a request further back")
		}
	}
}

func TestACallerThatGoesAwayLeavesTheLine(t *testing.T) {
	h := newHarness(t, basic())
	req := Request{Credential: "main"}
	if _, err := h.now(req); err != nil {
		t.Fatal(err)
	}
	first := h.start(context.Background(), 1, req)
	ctx, cancel := context.WithCancel(context.Background())
	second := h.start(ctx, 2, req)
	third := h.start(context.Background(), 3, req)
	cancel()
	if r := done(t, second, "cancelled request"); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled request: err %v, want context.Canceled", r.err)
	}
	h.until(func() bool { return h.l.waiting() == 2 }, "the cancelled request out of line")
	h.clock.Advance(interval(10))
	done(t, first, "first")
	pending(t, third, "third, one interval in")
	// The third takes the second's slot: two intervals, not three.
	h.clock.Advance(interval(10))
	if r := done(t, third, "third"); r.waited != 2*interval(10) {
		t.Fatalf("third waited %v, want %v (the slot freed moved it up)", r.waited, 2*interval(10))
	}
}

func TestATurnBeyondMaxWaitIsRefusedAtOnce(t *testing.T) {
	cfg := basic()
	cfg.RateLimits.MaxWait = time.Second
	h := newHarness(t, cfg)
	req := Request{Credential: "main"}
	var queued []<-chan result
	if _, err := h.now(req); err != nil {
		t.Fatal(err)
	}
	// 9 more fit within a second at 9.5 requests/s.
	for i := range 9 {
		queued = append(queued, h.start(context.Background(), i, req))
	}
	_, err := h.now(req)
	var le *LimitedError
	if !errors.As(err, &le) {
		t.Fatalf("11th request within a second: err %v, want *LimitedError", err)
	}
	if want := 10 * interval(10); le.RetryAfter != want {
		t.Errorf("RetryAfter = %v, want %v (its turn)", le.RetryAfter, want)
	}
	if !strings.Contains(le.Error(), "app "+appA+" at 10 requests/s") {
		t.Errorf("error %q does not name the budget", le)
	}
	if v := testutil.ToFloat64(h.m.RateLimited.WithLabelValues("main", metrics.SourceProxy)); v != 1 {
		t.Errorf("rate_limited_total{source=proxy} = %v, want 1", v)
	}
	h.clock.Advance(time.Second)
	for _, ch := range queued {
		if r := done(t, ch, "queued"); r.err != nil {
			t.Fatalf("queued request: %v", r.err)
		}
	}
}

func TestReportTaskCreateHasItsOwnTwoQPS(t *testing.T) {
	h := newHarness(t, basic())
	report := Request{Credential: "main", Path: "/open_api/v1.3/report/task/create/"}
	if _, err := h.now(report); err != nil {
		t.Fatal(err)
	}
	ch := h.start(context.Background(), 1, report)
	// The app's line is not held up by the endpoint's.
	h.clock.Advance(interval(10))
	if w, err := h.now(Request{Credential: "shop", Path: "/open_api/v1.3/campaign/get/"}); err != nil || w != 0 {
		t.Fatalf("another endpoint: waited %v, err %v; want at once", w, err)
	}
	pending(t, ch, "second report task within half a second")
	h.clock.Advance(interval(2) - interval(10))
	if r := done(t, ch, "second report task"); r.waited != interval(2) {
		t.Fatalf("second report task waited %v, want %v", r.waited, interval(2))
	}
}

func TestRateLimitsEndpointsAddBudgets(t *testing.T) {
	cfg := basic()
	cfg.RateLimits.Endpoints = map[string]float64{"/open_api/v1.3/ad/create/": 1}
	h := newHarness(t, cfg)
	ad := Request{Credential: "main", Path: "/open_api/v1.3/ad/create/"}
	if _, err := h.now(ad); err != nil {
		t.Fatal(err)
	}
	ch := h.start(context.Background(), 1, ad)
	h.clock.Advance(interval(1))
	if r := done(t, ch, "second ad/create"); r.waited != interval(1) {
		t.Fatalf("second ad/create waited %v, want %v", r.waited, interval(1))
	}
}

func TestAPerSecondLimitPausesTheAppUntilTheNextSecond(t *testing.T) {
	h := newHarness(t, basic())
	req := Request{Credential: "main", Path: "/open_api/v1.3/campaign/get/"}
	h.l.Observe(req, t0, CodeAppLimit, "Too many requests. Please retry in some time.")
	next := time.Date(2026, 12, 2, 14, 3, 21, 0, time.UTC)
	if p := h.l.Pauses(); len(p) != 1 || !p[0].Until.Equal(next) || p[0].Scope != ScopeApp {
		t.Fatalf("Pauses() = %v, want the app until %v", p, next)
	}
	// Both credentials of the app wait; the other app does not.
	ch := h.start(context.Background(), 1, Request{Credential: "shop"})
	if w, err := h.now(Request{Credential: "other"}); err != nil || w != 0 {
		t.Fatalf("other app: waited %v, err %v", w, err)
	}
	h.clock.Advance(next.Sub(t0) - time.Millisecond)
	pending(t, ch, "request during the pause")
	h.clock.Advance(time.Millisecond)
	if r := done(t, ch, "request after the pause"); r.err != nil || r.waited != next.Sub(t0) {
		t.Fatalf("after the pause: waited %v, err %v; want %v", r.waited, r.err, next.Sub(t0))
	}
	if v := testutil.ToFloat64(h.m.RateLimited.WithLabelValues("main", metrics.SourceTikTok)); v != 1 {
		t.Errorf("rate_limited_total{source=tiktok} = %v, want 1", v)
	}
}

func TestAPerMinuteLimitPausesFiveMinutes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		observe func(h *harness, req Request)
		reason  string
	}{
		{"message says minute", func(h *harness, req Request) {
			h.l.Observe(req, t0, CodeAppLimit, "The number of requests per minute exceeds the limit.")
		}, "per-minute limit (TikTok 40100)"},
		{"limits repeat within a minute", func(h *harness, req Request) {
			h.l.Observe(req, t0, CodeAppLimit, "Too many requests.")
			h.clock.Advance(700 * time.Millisecond)
			// Answers to requests sent before TikTok's first limit was
			// read repeat nothing.
			h.l.Observe(req, t0, CodeAppLimit, "Too many requests.")
			if p := h.l.Pauses(); len(p) != 0 {
				h.t.Fatalf("an answer to a request sent before the pause escalated it: %v", p)
			}
			h.clock.Advance(30 * time.Second)
			h.l.Observe(req, h.clock.Now(), CodeTooManyRequests, "Too many requests.")
		}, "limits repeated within a minute (TikTok 61000)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, basic())
			req := Request{Credential: "shop", Path: "/open_api/v1.3/campaign/get/"}
			tc.observe(h, req)
			at := h.clock.Now()
			want := Pause{AppID: appA, Scope: ScopeApp, Until: at.Add(5 * time.Minute), Reason: tc.reason}
			if p := h.l.Pauses(); len(p) != 1 || p[0] != want {
				t.Fatalf("Pauses() = %v, want [%v]", p, want)
			}
			// Five minutes is beyond max_wait: refused at once, with the pause's end as Retry-After.
			_, err := h.now(Request{Credential: "main"})
			var le *LimitedError
			if !errors.As(err, &le) || le.RetryAfter != 5*time.Minute || !strings.Contains(le.Pause, tc.reason) {
				t.Fatalf("request during the pause: %v, want a LimitedError after 5m naming %q", err, tc.reason)
			}
			if v, w := testutil.ToFloat64(h.m.AppPauseUntil.WithLabelValues(appA)), float64(want.Until.UnixNano())/1e9; v != w {
				t.Errorf("app_pause_until_timestamp_seconds = %v, want %v", v, w)
			}
			h.clock.Advance(5*time.Minute - 11*time.Second)
			if _, err := h.now(Request{Credential: "main"}); err == nil {
				t.Fatal("request 11 s before the pause ends went through")
			}
			// Within max_wait of the end a request waits for it.
			h.clock.Advance(2 * time.Second)
			ch := h.start(context.Background(), 1, Request{Credential: "main"})
			h.clock.Advance(9 * time.Second)
			if r := done(t, ch, "request at the pause's end"); r.err != nil || r.waited != 9*time.Second {
				t.Fatalf("at the pause's end: waited %v, err %v", r.waited, r.err)
			}
			if n := testutil.CollectAndCount(h.m.AppPauseUntil); n != 0 {
				t.Errorf("app_pause_until_timestamp_seconds series after the pause: %d, want 0", n)
			}
			if p := h.l.Pauses(); len(p) != 0 {
				t.Errorf("Pauses() after the end = %v", p)
			}
		})
	}
}

func TestAPerDayLimitPausesUntilMidnightUTC(t *testing.T) {
	h := newHarness(t, basic())
	h.l.Observe(Request{Credential: "main"}, t0, CodeAppLimit, "The number of requests per day exceeds the limit.")
	midnight := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	p := h.l.Pauses()
	if len(p) != 1 || !p[0].Until.Equal(midnight) {
		t.Fatalf("Pauses() = %v, want the app until %v", p, midnight)
	}
	if got, want := p[0].String(), "app "+appA+" paused until 00:00:00 UTC: per-day limit (TikTok 40100)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	_, err := h.now(Request{Credential: "shop"})
	var le *LimitedError
	if !errors.As(err, &le) || le.RetryAfter != midnight.Sub(t0) {
		t.Fatalf("request during the day's pause: %v, want Retry-After %v", err, midnight.Sub(t0))
	}
	h.clock.Advance(midnight.Sub(t0))
	if w, err := h.now(Request{Credential: "shop"}); err != nil || w != 0 {
		t.Fatalf("after midnight: waited %v, err %v; want at once", w, err)
	}
}

func TestEndpointAndAdvertiserLimitsPauseOnlyThem(t *testing.T) {
	h := newHarness(t, basic())
	const adv, other = "7012345678901234567", "7012345678901234568"
	get := "/open_api/v1.3/campaign/get/"
	h.l.Observe(Request{Credential: "main", Path: get}, t0, CodeEndpointLimit, "Too many requests for this endpoint per minute.")
	h.l.Observe(Request{Credential: "main", Path: "/open_api/v1.3/ad/get/", Advertisers: []string{adv}}, t0, CodeAdvertiserLimit, "QPS per day exceeded")
	if p := h.l.Pauses(); len(p) != 2 || p[0].Scope != ScopeAdvertiser || p[0].Target != adv || p[1].Scope != ScopeEndpoint || p[1].Target != get {
		t.Fatalf("Pauses() = %v, want the advertiser and the endpoint", p)
	}
	var le *LimitedError
	if _, err := h.now(Request{Credential: "shop", Path: get}); !errors.As(err, &le) {
		t.Errorf("paused endpoint: err %v, want LimitedError", err)
	}
	if _, err := h.now(Request{Credential: "shop", Path: "/open_api/v1.3/ad/get/", Advertisers: []string{other, adv}}); !errors.As(err, &le) {
		t.Errorf("paused advertiser: err %v, want LimitedError", err)
	}
	if _, err := h.now(Request{Credential: "shop", Path: "/open_api/v1.3/ad/get/", Advertisers: []string{other}}); err != nil {
		t.Errorf("another advertiser on another endpoint: %v", err)
	}
	if n := testutil.CollectAndCount(h.m.AppPauseUntil); n != 0 {
		t.Errorf("app_pause_until_timestamp_seconds has %d series; the app itself is not paused", n)
	}
}

func TestWaitObservesTheWait(t *testing.T) {
	h := newHarness(t, basic())
	if _, err := h.now(Request{Credential: "main"}); err != nil {
		t.Fatal(err)
	}
	ch := h.start(context.Background(), 1, Request{Credential: "main"})
	h.clock.Advance(interval(10))
	done(t, ch, "second")
	var m dto.Metric
	if err := h.m.RateLimitWait.WithLabelValues("main").(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetHistogram(); got.GetSampleCount() != 2 || got.GetSampleSum() != interval(10).Seconds() {
		t.Errorf("rate_limit_wait_seconds: count %d sum %v, want 2 and %v", got.GetSampleCount(), got.GetSampleSum(), interval(10).Seconds())
	}
}
