package quota

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcraScript is Take in Redis: one GCRA step on the bucket KEYS[1] at
// Redis's own clock (so replicas' clocks need not agree), for an interval
// of ARGV[1] and a tolerance (burst-1 intervals) of ARGV[2], both in
// microseconds. It returns 0 when it took a slot, else the wait in
// microseconds: until the pause KEYS[2] ends when one is set. The bucket's
// key expires once the bucket is full again.
var gcraScript = redis.NewScript(`
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return paused * 1000 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tonumber(ARGV[2]) - now
if wait > 0 then return wait end
local new = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.ceil((new - now) / 1000) + 1000)
return 0
`)

// pauseScript pauses the bucket whose pause key is KEYS[1] for ARGV[1]
// milliseconds, unless it is paused longer already.
var pauseScript = redis.NewScript(`
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
`)

// heartbeatScript records replica ARGV[1] as live in the sorted set
// KEYS[1] (scored by Redis's clock, in milliseconds), forgets replicas not
// seen for ARGV[2] milliseconds, and returns how many are live.
var heartbeatScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
`)

// Defaults of RedisOptions.
const (
	DefaultHeartbeat    = 5 * time.Second
	DefaultRedisTimeout = 250 * time.Millisecond
	// unknownReplicas is the share assumed when Redis failed before any
	// heartbeat answered: a replica that never saw the others must not
	// spend the whole quota, and with a shared store there are usually
	// at least two.
	unknownReplicas = 2
)

// RedisOptions configure a Redis backend.
type RedisOptions struct {
	// Prefix starts every key (store.redis.key_prefix); "quota:" follows it.
	Prefix string
	// Heartbeat is how often the replica tells Redis it is live; one not
	// heard from for three heartbeats is no longer counted. Default 5s.
	Heartbeat time.Duration
	// Timeout bounds each Redis call, so a Redis that hangs holds no line
	// for long. Default 250ms.
	Timeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Redis is a Backend whose buckets live in Redis, so every replica spends
// from the same budget. When Redis cannot be reached, each replica falls
// back to buckets of its own holding its share of the budget: the budget
// divided by the number of live replicas it last saw through the
// heartbeats (Run), never the whole budget. Safe for concurrent use.
type Redis struct {
	client redis.Scripter
	prefix string
	id     string
	beat   time.Duration
	wait   time.Duration
	log    *slog.Logger
	local  Local

	mu       sync.Mutex
	replicas int       // live replicas last seen; 0 before the first heartbeat
	retryAt  time.Time // zero: the last call succeeded; else Take spends the local share until then
}

// downRetry is how often Take tries Redis again while it is down: a Redis
// that hangs would otherwise cost every request the call's timeout.
const downRetry = time.Second

// NewRedis returns a Redis backend on client; call Run to send heartbeats.
func NewRedis(client redis.Scripter, opts RedisOptions) *Redis {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	r := &Redis{
		client: client,
		prefix: opts.Prefix + "quota:",
		id:     hex.EncodeToString(id),
		beat:   opts.Heartbeat,
		wait:   opts.Timeout,
		log:    opts.Logger,
	}
	if r.beat <= 0 {
		r.beat = DefaultHeartbeat
	}
	if r.wait <= 0 {
		r.wait = DefaultRedisTimeout
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r
}

// Take implements Backend on Redis, or on the local share when Redis fails.
func (r *Redis) Take(key string, rate Rate, now time.Time) time.Duration {
	if rate.Interval <= 0 {
		return 0
	}
	if n, down := r.stillDown(); down {
		return r.local.Take(key, share(rate, n), now)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.wait)
	defer cancel()
	tolerance := rate.Interval * time.Duration(rate.Burst-1)
	wait, err := gcraScript.Run(ctx, r.client, []string{r.prefix + key, r.prefix + key + ":pause"},
		rate.Interval.Microseconds(), tolerance.Microseconds()).Int64()
	if err == nil {
		r.reachable(nil)
		return time.Duration(wait) * time.Microsecond
	}
	return r.local.Take(key, share(rate, r.reachable(err)), now)
}

// share is one of n replicas' part of rate.
func share(rate Rate, n int) Rate {
	return Rate{Interval: rate.Interval * time.Duration(n), Burst: max(rate.Burst/n, 1)}
}

// stillDown reports whether Redis failed less than downRetry ago, with the
// number of replicas to share with.
func (r *Redis) stillDown() (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sharersLocked(), time.Now().Before(r.retryAt)
}

// Pause implements Pauser: every replica's Take on the bucket key waits d.
// When Redis cannot be reached the pause stays this replica's.
func (r *Redis) Pause(key string, d time.Duration) {
	ms := d.Milliseconds()
	if ms <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.wait)
	defer cancel()
	r.reachable(pauseScript.Run(ctx, r.client, []string{r.prefix + key + ":pause"}, ms).Err())
}

// reachable records the outcome of a Redis call and returns the number of
// replicas to share the budget with when it failed.
func (r *Redis) reachable(err error) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	// The change is logged once, not on every call.
	down := !r.retryAt.IsZero()
	switch {
	case err == nil && down:
		r.log.Info("quota: Redis is back; the budget is shared again")
	case err != nil && !down:
		r.log.Warn("quota: Redis unreachable; spending this replica's share of each budget", "replicas", r.sharersLocked(), "err", err)
	}
	r.retryAt = time.Time{}
	if err != nil {
		r.retryAt = time.Now().Add(downRetry)
	}
	return r.sharersLocked()
}

func (r *Redis) sharersLocked() int {
	if r.replicas == 0 {
		return unknownReplicas
	}
	return r.replicas
}

// Heartbeat tells Redis this replica is live and learns how many are.
func (r *Redis) Heartbeat(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, r.wait)
	defer cancel()
	n, err := heartbeatScript.Run(ctx, r.client, []string{r.prefix + "replicas"}, r.id, (3 * r.beat).Milliseconds()).Int()
	if err != nil {
		return 0, fmt.Errorf("quota: heartbeat: %w", err)
	}
	r.mu.Lock()
	r.replicas = max(n, 1)
	r.mu.Unlock()
	r.reachable(nil)
	return n, nil
}

// Run sends a heartbeat every RedisOptions.Heartbeat until ctx ends.
func (r *Redis) Run(ctx context.Context) {
	t := time.NewTicker(r.beat)
	defer t.Stop()
	for {
		if _, err := r.Heartbeat(ctx); err != nil && ctx.Err() == nil {
			r.reachable(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
