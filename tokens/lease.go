package tokens

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Leaser grants refresh leases on credentials. Implementations must be safe for concurrent use.
type Leaser interface {
	// Acquire tries to take the refresh lease on credential for ttl. ok is false (and err nil) when another holder has it.
	Acquire(ctx context.Context, credential string, ttl time.Duration) (l Lease, ok bool, err error)
}

// Lease is a held refresh lease.
type Lease interface {
	// Extend pushes the lease's expiry to now+ttl; it fails with ErrLeaseLost when the lease was lost.
	Extend(ctx context.Context) error
	// Release gives the lease up; releasing a lost lease is not an error.
	Release(ctx context.Context) error
	// Lost is closed when the lease is known lost (Extend failed).
	Lost() <-chan struct{}
}

// ErrLeaseLost is returned by Lease.Extend once the lease expired or
// another holder took it.
var ErrLeaseLost = errors.New("tokens: refresh lease lost")

// MemoryLeaser is a Leaser within one process, for the file backend: its
// leases expire after their TTL on the clock it was given, like a shared
// store's, so the Manager's lease logic runs the same on both backends.
type MemoryLeaser struct {
	now func() time.Time

	mu     sync.Mutex
	seq    uint64
	leases map[string]memLease // by credential
}

// memLease is the current holder of one credential's lease.
type memLease struct {
	holder  uint64
	expires time.Time
}

var _ Leaser = (*MemoryLeaser)(nil)

// NewMemoryLeaser returns an empty MemoryLeaser reading the clock now; nil
// means time.Now.
func NewMemoryLeaser(now func() time.Time) *MemoryLeaser {
	if now == nil {
		now = time.Now
	}
	return &MemoryLeaser{now: now, leases: map[string]memLease{}}
}

// Acquire takes credential's lease for ttl when it is free or expired.
func (l *MemoryLeaser) Acquire(_ context.Context, credential string, ttl time.Duration) (Lease, bool, error) {
	if ttl <= 0 {
		return nil, false, errors.New("tokens: lease TTL must be positive")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if cur, held := l.leases[credential]; held && now.Before(cur.expires) {
		return nil, false, nil
	}
	l.seq++
	l.leases[credential] = memLease{holder: l.seq, expires: now.Add(ttl)}
	return &memoryLease{l: l, credential: credential, holder: l.seq, ttl: ttl, lost: make(chan struct{})}, true, nil
}

// memoryLease is one holder's lease of a MemoryLeaser.
type memoryLease struct {
	l          *MemoryLeaser
	credential string
	holder     uint64
	ttl        time.Duration
	lostOnce   sync.Once
	lost       chan struct{}
}

func (m *memoryLease) Extend(context.Context) error {
	m.l.mu.Lock()
	defer m.l.mu.Unlock()
	now := m.l.now()
	cur, held := m.l.leases[m.credential]
	if !held || cur.holder != m.holder || !now.Before(cur.expires) {
		m.lostOnce.Do(func() { close(m.lost) })
		return ErrLeaseLost
	}
	m.l.leases[m.credential] = memLease{holder: m.holder, expires: now.Add(m.ttl)}
	return nil
}

func (m *memoryLease) Release(context.Context) error {
	m.l.mu.Lock()
	defer m.l.mu.Unlock()
	if cur, held := m.l.leases[m.credential]; held && cur.holder == m.holder {
		delete(m.l.leases, m.credential)
	}
	return nil
}

func (m *memoryLease) Lost() <-chan struct{} { return m.lost }
