package quota

import (
	"sync"
	"time"
)

// Rate is a budget: one request every Interval, with up to Burst requests
// at once after a quiet spell. A zero Interval is no budget at all (a
// queue that only honours pauses).
type Rate struct {
	Interval time.Duration
	Burst    int
}

// pacing is the share of a configured QPS the proxy actually spends. TikTok
// counts requests per second as they arrive; requests the proxy sends
// exactly 1/QPS apart reach it with a few milliseconds of jitter each, and
// ten such jitters can slip an eleventh request into one of TikTok's
// seconds. Spacing them 5 % wider leaves that jitter room.
const pacing = 0.95

// perSecond is the Rate of qps requests per second with burst (at least 1);
// zero when qps is not positive.
func perSecond(qps float64, burst int) Rate {
	if qps <= 0 {
		return Rate{}
	}
	return Rate{Interval: time.Duration(float64(time.Second) / (qps * pacing)), Burst: max(burst, 1)}
}

// Backend keeps the buckets. Take is GCRA (the generic cell rate
// algorithm): it takes one slot of the bucket key at now when one is free
// and returns 0, else takes nothing and returns how long until one is.
// Implementations must be safe for concurrent use; a shared one (Redis)
// makes every replica spend from the same buckets.
type Backend interface {
	Take(key string, r Rate, now time.Time) time.Duration
}

// Pauser is a Backend that shares the pauses TikTok prescribes: after
// Pause, Take on the bucket key waits until d has passed, for every user
// of the backend (every replica on one Redis). A Limiter pauses its own
// lines in any case; it calls Pause on a backend that has it, for buckets
// with a budget (a bucket without one never asks the backend).
type Pauser interface {
	Pause(key string, d time.Duration)
}

// Local keeps buckets in this process. The zero value is ready to use.
type Local struct {
	mu  sync.Mutex
	tat map[string]time.Time // theoretical arrival time of the next request, per bucket
}

// Take implements Backend.
func (l *Local) Take(key string, r Rate, now time.Time) time.Duration {
	if r.Interval <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tat == nil {
		l.tat = map[string]time.Time{}
	}
	tat, wait := gcra(l.tat[key], r, now)
	if wait > 0 {
		return wait
	}
	l.tat[key] = tat
	return 0
}

// gcra is one GCRA step: the bucket's new theoretical arrival time when a
// request is let through at now, or the wait until one can be.
func gcra(tat time.Time, r Rate, now time.Time) (time.Time, time.Duration) {
	if tat.Before(now) {
		tat = now
	}
	tolerance := r.Interval * time.Duration(r.Burst-1)
	if wait := tat.Sub(now) - tolerance; wait > 0 {
		return time.Time{}, wait
	}
	return tat.Add(r.Interval), 0
}
