// Package quota keeps every TikTok app under its quota. TikTok's quota
// belongs to the app, not to a credential or an advertiser: every
// credential with the same app_id spends from one budget (rate_limits.tier,
// or the smallest rate_limit among them), and some endpoints have budgets
// of their own (rate_limits.endpoints, /report/task/create/ built in).
//
// A request waits its turn in a fair line (first come, first served) up to
// rate_limits.max_wait, else Wait refuses it with a *LimitedError carrying
// Retry-After; a caller whose context ends leaves the line and those behind
// it move up. TikTok's answers teach the rest: after a rate-limit code the
// app (endpoint, advertiser) is paused as TikTok prescribes (Observe), and
// Pauses lists the pauses for the setup page.
//
// Buckets live in a Backend: Local in this process, or Redis so that
// several replicas share one budget.
package quota

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
)

// BuiltinEndpoints are TikTok's per-endpoint QPS limits that hold on every
// tier; rate_limits.endpoints adds to them and overrides them.
var BuiltinEndpoints = map[string]float64{
	"/open_api/v1.3/report/task/create/": 2,
}

// Request is what the limiter needs to know of a request.
type Request struct {
	// Credential is the configured credential the request is sent with;
	// its app_id picks the app's budget.
	Credential string
	// Path is the API path (/open_api/v1.3/report/task/create/).
	Path string
	// Advertisers are the advertiser ids the request names.
	Advertisers []string
	// Retry marks a request sent again after TikTok's transient answer: its
	// wait and refusal are not the caller's (who gets TikTok's answer when
	// it is refused), so the metrics leave them out.
	Retry bool
}

// LimitedError is Wait's answer when the request's turn would come after
// rate_limits.max_wait: the proxy answers 90012 with Retry-After.
type LimitedError struct {
	// RetryAfter is when the turn would have come, at least a second.
	RetryAfter time.Duration
	// Budget names the budget ("app 7123 at 10 requests/s").
	Budget string
	// Pause says why the budget is paused ("paused until 14:05:00 UTC:
	// per-minute limit (TikTok 40100)"); "" when it is only busy.
	Pause string
}

func (e *LimitedError) Error() string {
	if e.Pause != "" {
		return fmt.Sprintf("quota: %s is %s; retry after %s", e.Budget, e.Pause, e.RetryAfter.Round(time.Second))
	}
	return fmt.Sprintf("quota: %s is booked beyond rate_limits.max_wait; retry after %s", e.Budget, e.RetryAfter.Round(time.Second))
}

// Options configure a Limiter.
type Options struct {
	// Backend keeps the buckets; nil means a new Local.
	Backend Backend
	// Clock; nil means the wall clock.
	Clock Clock
	// Metrics; nil disables them.
	Metrics *metrics.Metrics
}

// Limiter is the budget of every configured app. Safe for concurrent use.
type Limiter struct {
	clock   Clock
	backend Backend
	metrics *metrics.Metrics
	maxWait time.Duration
	appOf   map[string]string // credential → app_id
	rates   map[string]float64
	ends    map[string]float64 // per-path QPS

	mu        sync.Mutex
	apps      map[string]*queue // by app_id
	endpoints map[appKey]*queue // by app_id and path
	adverts   map[appKey]*queue // by app_id and advertiser id; only once paused
	pauses    map[string]*pauseState
}

// New builds the limiter of cfg's credentials, rate_limits and their
// defaults (a loaded Config has them filled).
func New(cfg *config.Config, opts Options) *Limiter {
	l := &Limiter{
		clock:     opts.Clock,
		backend:   opts.Backend,
		metrics:   opts.Metrics,
		maxWait:   cfg.RateLimits.MaxWait,
		appOf:     map[string]string{},
		rates:     map[string]float64{},
		ends:      maps.Clone(BuiltinEndpoints),
		apps:      map[string]*queue{},
		endpoints: map[appKey]*queue{},
		adverts:   map[appKey]*queue{},
		pauses:    map[string]*pauseState{},
	}
	if l.clock == nil {
		l.clock = realClock{}
	}
	if l.backend == nil {
		l.backend = &Local{}
	}
	if l.maxWait <= 0 {
		l.maxWait = config.DefaultRateMaxWait
	}
	maps.Copy(l.ends, cfg.RateLimits.Endpoints)
	tier := config.TierQPS[cfg.RateLimits.Tier]
	bursts := map[string]int{}
	for _, c := range cfg.Credentials {
		l.appOf[c.Name] = c.AppID
		if _, seen := l.rates[c.AppID]; !seen {
			l.rates[c.AppID] = tier
			bursts[c.AppID] = 1
		}
		// The smallest budget wins: TikTok's quota is the app's, so no
		// credential may spend faster than any other one is told to.
		if qps := c.RateLimit.QPS; qps > 0 && (l.rates[c.AppID] == 0 || qps < l.rates[c.AppID]) {
			l.rates[c.AppID], bursts[c.AppID] = qps, c.RateLimit.Burst
		}
	}
	for app, qps := range l.rates {
		what := "app " + app
		if qps > 0 {
			what = fmt.Sprintf("app %s at %g requests/s", app, qps)
		}
		l.apps[app] = newQueue("app:"+app, what, perSecond(qps, bursts[app]), l.backend, l.clock)
	}
	return l
}

// Wait holds the request until its turn: until every pause of its
// advertisers ends, then in its endpoint's line, then in its app's line,
// all within rate_limits.max_wait. It returns how long it waited, and a
// *LimitedError when the turn would come later than that, or ctx's error
// when ctx ends first. A credential not in the config is not limited.
func (l *Limiter) Wait(ctx context.Context, req Request) (time.Duration, error) {
	app, ok := l.appOf[req.Credential]
	if !ok {
		return 0, nil
	}
	start := l.clock.Now()
	deadline := start.Add(l.maxWait)
	var buf [4]*queue // the usual request's lines fit: no allocation
	for _, q := range l.lines(buf[:0], app, req) {
		if err := q.wait(ctx, deadline); err != nil {
			if _, limited := err.(*LimitedError); limited && !req.Retry {
				l.metrics.RateLimitedBy(req.Credential, metrics.SourceProxy)
			}
			return l.clock.Now().Sub(start), err
		}
	}
	waited := l.clock.Now().Sub(start)
	if !req.Retry {
		l.metrics.RateLimitWaited(req.Credential, waited)
	}
	return waited, nil
}

// appKey is the key of an app's endpoint or advertiser queue: a struct,
// not a joined string, so a lookup allocates nothing.
type appKey struct{ app, name string }

// lines appends to qs the queues a request of app passes, in order.
func (l *Limiter) lines(qs []*queue, app string, req Request) []*queue {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range req.Advertisers {
		if q := l.adverts[appKey{app, a}]; q != nil {
			qs = append(qs, q)
		}
	}
	if q := l.endpointLocked(app, req.Path, false); q != nil {
		qs = append(qs, q)
	}
	return append(qs, l.apps[app])
}

// endpointLocked is app's queue for path: made when the path has a budget,
// or when create is set (TikTok paused the endpoint); nil otherwise.
func (l *Limiter) endpointLocked(app, path string, create bool) *queue {
	key := appKey{app, path}
	if q := l.endpoints[key]; q != nil {
		return q
	}
	qps := l.ends[path]
	if qps <= 0 && !create {
		return nil
	}
	what := fmt.Sprintf("endpoint %s of app %s", path, app)
	if qps > 0 {
		what = fmt.Sprintf("endpoint %s of app %s at %g requests/s", path, app, qps)
	}
	q := newQueue("endpoint:"+app+":"+path, what, perSecond(qps, 1), l.backend, l.clock)
	l.endpoints[key] = q
	return q
}

// advertiserLocked is the queue of one advertiser of app, made on first use.
func (l *Limiter) advertiserLocked(app, advertiser string) *queue {
	key := appKey{app, advertiser}
	q := l.adverts[key]
	if q == nil {
		q = newQueue("advertiser:"+app+":"+advertiser, fmt.Sprintf("advertiser %s of app %s", advertiser, app), Rate{}, l.backend, l.clock)
		l.adverts[key] = q
	}
	return q
}

// waiting is the number of requests in every line, for tests.
func (l *Limiter) waiting() int {
	l.mu.Lock()
	qs := slices.Concat(slices.Collect(maps.Values(l.apps)), slices.Collect(maps.Values(l.endpoints)), slices.Collect(maps.Values(l.adverts)))
	l.mu.Unlock()
	n := 0
	for _, q := range qs {
		n += q.length()
	}
	return n
}
