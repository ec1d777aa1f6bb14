package quota

import (
	"context"
	"slices"
	"sync"
	"time"
)

// queue is one budget's fair line: requests are let through in the order
// they arrived, each when the backend has a slot and no pause holds the
// line. One timer per queue wakes it for the head's turn.
type queue struct {
	key     string // the backend's bucket
	rate    Rate
	backend Backend
	clock   Clock

	mu      sync.Mutex
	waiters []*waiter
	paused  time.Time   // nobody goes before this
	pause   string      // why, for a refusal's message
	stop    func() bool // the pending wake-up, nil when none
	wakeAt  time.Time   // when it fires
	what    string      // the budget, for messages ("app 7123 at 10 requests/s")
}

// waiter is one request in line. Exactly one of admit, expire, remove
// (its caller gave up) and pauseUntil settles it, under the queue's lock.
type waiter struct {
	deadline time.Time
	done     chan error // receives nil (go) or a *LimitedError
	settled  bool
}

func newQueue(key, what string, r Rate, b Backend, c Clock) *queue {
	return &queue{key: key, what: what, rate: r, backend: b, clock: c}
}

// wait returns nil once it is the caller's turn, a *LimitedError when the
// turn would come after deadline, or ctx's error when ctx ends first; a
// caller that gives up leaves the line, and those behind it move up.
func (q *queue) wait(ctx context.Context, deadline time.Time) error {
	q.mu.Lock()
	now := q.clock.Now()
	var next time.Duration // the backend's wait for the head, when asked
	if len(q.waiters) == 0 && !now.Before(q.paused) {
		if next = q.backend.Take(q.key, q.rate, now); next <= 0 {
			q.mu.Unlock()
			return nil
		}
	}
	if turn := q.turn(now, next); turn.After(deadline) {
		q.mu.Unlock()
		return q.refusal(now, turn)
	}
	w := &waiter{deadline: deadline, done: make(chan error, 1)}
	q.waiters = append(q.waiters, w)
	if len(q.waiters) == 1 {
		q.wake(later(now.Add(next), q.paused))
	}
	q.mu.Unlock()

	stopExpiry := q.clock.AfterFunc(deadline.Sub(now), func() { q.expire(w) })
	defer stopExpiry()
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		q.mu.Lock()
		defer q.mu.Unlock()
		if w.settled {
			// Let through (or refused) as ctx ended: the slot is spent.
			return ctx.Err()
		}
		q.remove(w)
		return ctx.Err()
	}
}

// turn estimates when a request joining the line now would go: after the
// pause, after the head's wait, one interval per request ahead. Other
// replicas spending from a shared backend can only make it later.
func (q *queue) turn(now time.Time, next time.Duration) time.Time {
	t := later(now.Add(next), q.paused)
	if len(q.waiters) > 0 {
		t = later(t, q.wakeAt)
	}
	return t.Add(q.rate.Interval * time.Duration(len(q.waiters)))
}

// refusal is the error for a turn after the caller's deadline.
func (q *queue) refusal(now, turn time.Time) *LimitedError {
	// Retry-After speaks in whole seconds; a client told 0 would come
	// straight back.
	e := &LimitedError{RetryAfter: max(turn.Sub(now), time.Second), Budget: q.what}
	if turn.Equal(q.paused) || now.Before(q.paused) {
		e.Pause = q.pause
	}
	return e
}

// wake sets the queue's one timer to run admit at t.
func (q *queue) wake(t time.Time) {
	if q.stop != nil {
		q.stop()
	}
	q.wakeAt = t
	q.stop = q.clock.AfterFunc(t.Sub(q.clock.Now()), q.admit)
}

// admit lets through every waiter whose turn has come and sets the timer
// for the next one.
func (q *queue) admit() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stop = nil
	for len(q.waiters) > 0 {
		now := q.clock.Now()
		if now.Before(q.paused) {
			q.wake(q.paused)
			return
		}
		if next := q.backend.Take(q.key, q.rate, now); next > 0 {
			q.wake(now.Add(next))
			return
		}
		w := q.waiters[0]
		q.waiters = q.waiters[1:]
		w.settled = true
		w.done <- nil
	}
}

// expire refuses w if it is still in line at its deadline.
func (q *queue) expire(w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.settled {
		return
	}
	// Its turn was due i intervals after the head's, which the timer
	// holds; a shared backend may have pushed both later, so that is the
	// earliest it could have come.
	i := slices.Index(q.waiters, w)
	turn := later(q.wakeAt, q.paused).Add(q.rate.Interval * time.Duration(i))
	q.remove(w)
	w.done <- q.refusal(q.clock.Now(), turn)
}

// remove takes w out of the line (q.mu held); when it was the head, the
// timer is moved for the new head.
func (q *queue) remove(w *waiter) {
	i := slices.Index(q.waiters, w)
	w.settled = true
	if i < 0 {
		return
	}
	q.waiters = slices.Delete(q.waiters, i, i+1)
	if len(q.waiters) == 0 && q.stop != nil {
		q.stop()
		q.stop = nil
	}
}

// pauseUntil holds the line until t (for reason) and refuses at once every
// waiter whose deadline comes before it.
func (q *queue) pauseUntil(t time.Time, reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !t.After(q.paused) {
		return
	}
	q.paused, q.pause = t, reason
	now := q.clock.Now()
	for _, w := range slices.Clone(q.waiters) {
		if w.deadline.Before(t) {
			q.remove(w)
			w.done <- q.refusal(now, t)
		}
	}
	if len(q.waiters) > 0 {
		q.wake(t)
	}
}

// length is the number of requests in line.
func (q *queue) length() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiters)
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
