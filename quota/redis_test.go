package quota

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/redistest"
)

// client is a go-redis client of srv that gives up at once when srv is
// down, closed when the test ends.
func client(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisBucketsAreSharedByReplicas(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a := NewRedis(client(t, srv), RedisOptions{Prefix: "t:"})
	b := NewRedis(client(t, srv), RedisOptions{Prefix: "t:"})
	rate := Rate{Interval: time.Minute, Burst: 2}
	now := time.Now()
	if w := a.Take("app:1", rate, now); w != 0 {
		t.Fatalf("replica a's first request: wait %v", w)
	}
	if w := b.Take("app:1", rate, now); w != 0 {
		t.Fatalf("replica b's request within the burst of 2: wait %v", w)
	}
	// The bucket is empty for both: the next slot is a minute after the first.
	if w := a.Take("app:1", rate, now); w < 59*time.Second || w > time.Minute {
		t.Errorf("replica a after the burst: wait %v, want about a minute", w)
	}
	if w := b.Take("app:1", rate, now); w < 59*time.Second {
		t.Errorf("replica b after the burst: wait %v, want about a minute", w)
	}
	if w := b.Take("app:2", rate, now); w != 0 {
		t.Errorf("another bucket: wait %v", w)
	}
}

// Three replicas on one Redis: the limiter of each spends from the same
// app budget, so together they let through what one would.
func TestLimitersOnRedisShareTheAppBudget(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	cfg := &config.Config{
		RateLimits:  config.RateLimits{Tier: config.TierBasic, MaxWait: time.Millisecond},
		Credentials: []config.Credential{{Name: "main", AppID: "7123"}},
	}
	var limiters []*Limiter
	for range 3 {
		limiters = append(limiters, New(cfg, Options{Backend: NewRedis(client(t, srv), RedisOptions{Prefix: "t:"})}))
	}
	// Within one interval (105 ms at 9.5/s) only one request of the three
	// replicas goes; the others' turns are beyond the 1 ms max_wait.
	went := 0
	for _, l := range limiters {
		if _, err := l.Wait(context.Background(), Request{Credential: "main"}); err == nil {
			went++
		}
	}
	if went != 1 {
		t.Errorf("%d of 3 replicas went at once, want 1: the budget is not shared", went)
	}
}

func TestRedisDownFallsBackToTheReplicasShare(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	var replicas []*Redis
	for range 3 {
		replicas = append(replicas, NewRedis(client(t, srv), RedisOptions{Prefix: "t:"}))
	}
	for i, r := range replicas {
		if n, err := r.Heartbeat(context.Background()); err != nil || n != i+1 {
			t.Fatalf("heartbeat of replica %d: %d live, %v", i, n, err)
		}
	}
	if n, _ := replicas[0].Heartbeat(context.Background()); n != 3 {
		t.Fatalf("replica 0 sees %d live replicas, want 3", n)
	}
	srv.Stop()

	rate := Rate{Interval: 100 * time.Millisecond, Burst: 3}
	now := time.Now()
	r := replicas[0]
	// A third of the budget: burst 1, one request every 300 ms.
	if w := r.Take("app:1", rate, now); w != 0 {
		t.Fatalf("first request with Redis down: wait %v", w)
	}
	if w := r.Take("app:1", rate, now); w != 300*time.Millisecond {
		t.Errorf("second request with Redis down: wait %v, want 300ms (a third of the budget)", w)
	}
	if w := r.Take("app:1", rate, now.Add(300*time.Millisecond)); w != 0 {
		t.Errorf("a share's interval later: wait %v", w)
	}
}

func TestRedisNeverSeenAssumesAShare(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	r := NewRedis(client(t, srv), RedisOptions{Prefix: "t:"})
	srv.Stop()
	now := time.Now()
	rate := Rate{Interval: 100 * time.Millisecond, Burst: 1}
	r.Take("app:1", rate, now)
	if w := r.Take("app:1", rate, now); w != unknownReplicas*100*time.Millisecond {
		t.Errorf("without a heartbeat ever answered: wait %v, want %v (never the whole budget)", w, unknownReplicas*100*time.Millisecond)
	}
}

func TestHeartbeatsForgetSilentReplicas(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	beat := 100 * time.Millisecond
	a := NewRedis(client(t, srv), RedisOptions{Prefix: "t:", Heartbeat: beat})
	b := NewRedis(client(t, srv), RedisOptions{Prefix: "t:", Heartbeat: beat})
	if _, err := b.Heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.Heartbeat(context.Background()); n != 2 {
		t.Fatalf("live replicas %d, want 2", n)
	}
	// b falls silent: after three heartbeats it is no longer counted.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := a.Heartbeat(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a silent replica is still counted after 10 s")
		}
		time.Sleep(beat)
	}
}

// A pause one replica learnt from TikTok holds every replica's requests.
func TestRedisPausesAreShared(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a := NewRedis(client(t, srv), RedisOptions{Prefix: "t:"})
	b := NewRedis(client(t, srv), RedisOptions{Prefix: "t:"})
	rate := Rate{Interval: time.Millisecond, Burst: 1}
	a.Pause("app:1", 2*time.Minute)
	a.Pause("app:1", time.Second) // a shorter pause never shortens a longer one
	if w := b.Take("app:1", rate, time.Now()); w < 119*time.Second || w > 2*time.Minute {
		t.Errorf("replica b during a's pause: wait %v, want about 2m", w)
	}
	if w := b.Take("app:2", rate, time.Now()); w != 0 {
		t.Errorf("another bucket: wait %v", w)
	}

	cfg := &config.Config{
		RateLimits:  config.RateLimits{Tier: config.TierBasic, MaxWait: 10 * time.Second},
		Credentials: []config.Credential{{Name: "main", AppID: "7123"}},
	}
	la := New(cfg, Options{Backend: NewRedis(client(t, srv), RedisOptions{Prefix: "u:"})})
	lb := New(cfg, Options{Backend: NewRedis(client(t, srv), RedisOptions{Prefix: "u:"})})
	la.Observe(Request{Credential: "main"}, time.Now().Add(-time.Millisecond), CodeAppLimit, "too many requests per minute")
	_, err := lb.Wait(context.Background(), Request{Credential: "main"})
	var le *LimitedError
	if !errors.As(err, &le) || le.RetryAfter < 4*time.Minute {
		t.Errorf("replica b after a's per-minute limit: %v, want refused for about 5 minutes", err)
	}
}

// countingClient counts the scripts run on Redis.
type countingClient struct {
	*redis.Client
	calls atomic.Int32
}

func (c *countingClient) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	c.calls.Add(1)
	return c.Client.EvalSha(ctx, sha, keys, args...)
}

// While Redis is down, requests do not each pay for a call that fails:
// Redis is tried again once a second, or as soon as a heartbeat answers.
func TestRedisDownIsNotAskedByEveryRequest(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := &countingClient{Client: client(t, srv)}
	r := NewRedis(c, RedisOptions{Prefix: "t:"})
	srv.Stop()
	rate := Rate{Interval: time.Millisecond, Burst: 1}
	now := time.Now()
	for i := range 5 {
		r.Take("app:1", rate, now.Add(time.Duration(i)*time.Second))
	}
	if n := c.calls.Load(); n != 1 {
		t.Errorf("Redis asked %d times for 5 requests while down, want once", n)
	}
	srv.Start()
	if _, err := r.Heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := c.calls.Load()
	if w := r.Take("app:1", rate, now); w != 0 || c.calls.Load() == before {
		t.Errorf("after a heartbeat answered: wait %v, Redis asked %v", w, c.calls.Load() > before)
	}
}
