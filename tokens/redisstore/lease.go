package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

var _ tokens.Leaser = (*Store)(nil)

// extendScript pushes the lease's expiry to now+ttl if the caller still
// holds it. KEYS: lease. ARGV: token, ttl in milliseconds. Returns 1 or 0.
var extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript deletes the lease if the caller still holds it, never
// another holder's. KEYS: lease. ARGV: token.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// acquirePoll is how often Acquire asks again while it waits for a held
// lease: a few cheap SET NX a second, only while another replica refreshes.
const acquirePoll = 50 * time.Millisecond

// Acquire takes credential's refresh lease for ttl: SET NX PX with a random
// token only this holder knows. While another holder has it, Acquire asks
// again every 50ms for up to Options.AcquireWait (or until ctx ends); ok is
// false (err nil) when it is still held then. The holder must Extend it
// while it works and Release it when done; it is fenced by the generation
// it reads under the lease, which Put's compare-and-swap checks.
func (s *Store) Acquire(ctx context.Context, credential string, ttl time.Duration) (tokens.Lease, bool, error) {
	if ttl < time.Millisecond {
		return nil, false, fmt.Errorf("redisstore: lease %q: ttl %s is under a millisecond", credential, ttl)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, false, fmt.Errorf("redisstore: lease %q: %w", credential, err)
	}
	token := hex.EncodeToString(b[:])
	l, ok, err := s.tryAcquire(ctx, credential, token, ttl)
	if ok || err != nil || s.acquireWait <= 0 {
		return l, ok, err
	}
	give := time.NewTimer(s.acquireWait)
	defer give.Stop()
	tick := time.NewTicker(acquirePoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, false, fmt.Errorf("redisstore: acquire lease %q: %w", credential, ctx.Err())
		case <-give.C:
			return nil, false, nil
		case <-tick.C:
		}
		if l, ok, err := s.tryAcquire(ctx, credential, token, ttl); ok || err != nil {
			return l, ok, err
		}
	}
}

// tryAcquire is one SET NX PX of token, the holder's secret, which every
// try of one Acquire shares.
func (s *Store) tryAcquire(ctx context.Context, credential, token string, ttl time.Duration) (tokens.Lease, bool, error) {
	key := s.leaseKey(credential)
	start := time.Now()
	ok, err := s.rdb.SetNX(ctx, key, token, ttl).Result()
	if err != nil {
		return nil, false, fmt.Errorf("redisstore: acquire lease %q: %w", credential, err)
	}
	if !ok {
		return nil, false, nil
	}
	l := &Lease{s: s, credential: credential, key: key, token: token, ttl: ttl, lost: make(chan struct{})}
	// Held while the timer is set, so a timer already due (the SET took
	// longer than ttl) finds it in markLost.
	l.mu.Lock()
	l.timer = time.AfterFunc(time.Until(start.Add(ttl)), l.markLost)
	l.mu.Unlock()
	return l, true, nil
}

// Lease is one holder's refresh lease on a credential, a tokens.Lease. Its
// methods are safe for concurrent use.
type Lease struct {
	s          *Store
	credential string
	key, token string
	ttl        time.Duration
	lost       chan struct{}

	mu       sync.Mutex
	timer    *time.Timer // fires when the lease may have expired
	released bool
}

// Extend pushes the lease's expiry to now+ttl. It returns an error wrapping
// tokens.ErrLeaseLost when the lease is gone (then Lost is closed), or another
// error when Redis could not be asked; the lease then still runs out at
// the expiry last set.
func (l *Lease) Extend(ctx context.Context) error {
	l.mu.Lock()
	ended := l.endedLocked()
	l.mu.Unlock()
	if ended {
		return fmt.Errorf("redisstore: lease %q: %w", l.credential, tokens.ErrLeaseLost)
	}
	start := time.Now()
	n, err := extendScript.Run(ctx, l.s.rdb, []string{l.key}, l.token, l.ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("redisstore: extend lease %q: %w", l.credential, err)
	}
	if n == 0 {
		l.markLost()
		return fmt.Errorf("redisstore: lease %q: %w", l.credential, tokens.ErrLeaseLost)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.endedLocked() {
		// The previous expiry passed while the extension was on its way:
		// Lost has been closed and stays the holder's answer.
		return fmt.Errorf("redisstore: lease %q: %w", l.credential, tokens.ErrLeaseLost)
	}
	l.timer.Reset(time.Until(start.Add(l.ttl)))
	return nil
}

// Release gives the lease up if it is still held; releasing a lost lease is
// not an error. An error means Redis could not be asked: the lease then
// runs out at its expiry.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	already := l.released
	l.released = true
	l.timer.Stop()
	l.mu.Unlock()
	if already {
		return nil
	}
	if err := releaseScript.Run(ctx, l.s.rdb, []string{l.key}, l.token).Err(); err != nil {
		return fmt.Errorf("redisstore: release lease %q: %w", l.credential, err)
	}
	return nil
}

// Lost is closed once the lease is known lost: an Extend found it gone, or
// no Acquire or Extend has succeeded for ttl (Redis unreachable), so it may
// have expired and another replica may hold it. It is not closed by Release.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

func (l *Lease) markLost() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.endedLocked() {
		return
	}
	l.timer.Stop()
	close(l.lost)
}

// endedLocked reports whether the lease is released or lost. l.mu must be
// held.
func (l *Lease) endedLocked() bool {
	if l.released {
		return true
	}
	select {
	case <-l.lost:
		return true
	default:
		return false
	}
}
