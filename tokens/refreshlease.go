package tokens

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptrace"
	"sync"
	"time"
)

// Lease timing. A lease outlives the refresh it guards by construction:
// every refresh is bounded by refreshTimeout, the lease lasts leaseTTL =
// refreshTimeout + leaseMargin from its last extension, and it is extended
// every leaseRenew (a third of its TTL, so two extensions may fail before
// it lapses) for as long as it is held: during the TikTok call, and after
// it while a grant the store refused waits to be stored.
const (
	leaseMargin = 30 * time.Second
	leaseTTL    = refreshTimeout + leaseMargin
	leaseRenew  = leaseTTL / 3
	// leaseReleaseTimeout bounds Release, a network call for a shared
	// store; a release that fails leaves the lease to expire.
	leaseReleaseTimeout = 5 * time.Second
)

// heldLease is a refresh lease this process holds, extended in the
// background until released or lost. It is kept with an unstored grant
// (another replica refreshing meanwhile would spend a refresh token TikTok
// already rotated), and the attempt that stores the grant uses it instead
// of acquiring again, which a lease that is not re-entrant would refuse to
// its own holder.
type heldLease struct {
	m     *Manager
	cred  string
	lease Lease
	stop  chan struct{} // closed by release: the keep-alive ends
	once  sync.Once
}

// holdLease returns the refresh lease for a refresh of the access token
// used: the one kept with an unstored grant, or a newly acquired one. The
// error is the refresh's answer when the lease cannot be had, another
// process holding it included.
func (s *Source) holdLease(ctx context.Context, used string) (*heldLease, error) {
	if held := s.keptLease(); held != nil {
		return held, nil
	}
	held, got, err := s.acquireLease(ctx)
	switch {
	case err != nil:
		return nil, s.fail(ctx, used, fmt.Errorf("tokens: refresh lease: %w", err))
	case !got:
		return nil, s.elsewhere(used)
	}
	return held, nil
}

// releaseUnlessKept releases held at the end of a refresh unless it is kept
// with the unstored grant it was obtained for.
func (s *Source) releaseUnlessKept(held *heldLease) {
	s.mu.Lock()
	kept := s.pending != nil && s.pending.lease == held
	s.mu.Unlock()
	if !kept {
		held.release()
	}
}

// acquireLease tries to take the credential's refresh lease and keeps it
// extended until released. ok is false when another process holds it.
func (s *Source) acquireLease(ctx context.Context) (h *heldLease, ok bool, err error) {
	l, ok, err := s.m.leaser.Acquire(ctx, s.cred.Name, leaseTTL)
	if err != nil || !ok {
		return nil, false, err
	}
	h = &heldLease{m: s.m, cred: s.cred.Name, lease: l, stop: make(chan struct{})}
	if !s.m.track() {
		h.release()
		return nil, false, errClosed
	}
	go func() {
		defer s.m.wg.Done()
		h.keepAlive()
	}()
	return h, true, nil
}

// keepAlive extends the lease every leaseRenew until it is released or
// lost, or the Manager closes. A failed extension that did not lose the
// lease is retried at the next tick: the TTL leaves room for two.
func (h *heldLease) keepAlive() {
	m := h.m
	for {
		select {
		case <-h.stop:
			return
		case <-h.lease.Lost():
			return
		case <-m.ctx.Done():
			return
		case <-m.after(leaseRenew):
		}
		ctx, cancel := context.WithTimeout(m.ctx, leaseRenew)
		err := h.lease.Extend(ctx)
		cancel()
		switch {
		case errors.Is(err, ErrLeaseLost):
			m.log.Warn("the refresh lease was lost", "credential", h.cred)
			return
		case err != nil && m.ctx.Err() == nil:
			m.log.Warn("extending the refresh lease failed", "credential", h.cred, "error", err.Error())
		}
	}
}

// release gives the lease up once, however many paths drop it; nil is a
// no-op.
func (h *heldLease) release() {
	if h == nil {
		return
	}
	h.once.Do(func() {
		close(h.stop)
		ctx, cancel := context.WithTimeout(context.Background(), leaseReleaseTimeout)
		defer cancel()
		if err := h.lease.Release(ctx); err != nil {
			h.m.log.Warn("releasing the refresh lease failed; it expires by itself", "credential", h.cred, "error", err.Error())
		}
	})
}

// lost reports whether the lease is known lost; false for nil (no lease).
func (h *heldLease) lost() bool {
	if h == nil {
		return false
	}
	select {
	case <-h.lease.Lost():
		return true
	default:
		return false
	}
}

// guard returns the context for the TikTok call made under h: ctx,
// cancelled too when the lease is lost before the request has a connection
// to go out on. Once it is being sent it is never cancelled for the lease:
// TikTok may rotate the refresh token, and its answer must be read and
// stored (the store's compare-and-swap refuses it should a newer grant be
// stored meanwhile). end releases the guard's resources.
func (h *heldLease) guard(ctx context.Context) (_ context.Context, end func()) {
	if h == nil {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	sending, cancelled := false, false
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) {
			mu.Lock()
			defer mu.Unlock()
			sending = !cancelled
		},
	})
	done := make(chan struct{})
	go func() {
		select {
		case <-h.lease.Lost():
			mu.Lock()
			if !sending {
				cancelled = true
				cancel()
			}
			mu.Unlock()
		case <-done:
		}
	}()
	return ctx, func() {
		close(done)
		cancel()
	}
}
