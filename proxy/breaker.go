package proxy

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
)

// breaker is one credential's circuit breaker. gobreaker's two-step form is
// used because the outcome is known only once the response has been peeked.
// gobreaker keeps its own time.Now clock, so openedAt does too.
type breaker struct {
	cb      *gobreaker.TwoStepCircuitBreaker[struct{}]
	timeout time.Duration

	mu       sync.Mutex
	openedAt time.Time
	// lastFailure is the most recent failure reported, and openError the
	// one that opened the breaker (Core.Breaker).
	lastFailure, openError string
}

func (c *Core) newBreaker(cred string, failures uint32, timeout time.Duration) *breaker {
	b := &breaker{timeout: timeout}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        cred,
		MaxRequests: 1,
		Timeout:     timeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsExcluded:  func(err error) bool { return errors.Is(err, errExcluded) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.mu.Lock()
				b.openedAt, b.openError = time.Now(), b.lastFailure
				b.mu.Unlock()
				// gobreaker turns half-open only when asked (a request, State),
				// so an idle credential's gauge would stay "open" for good.
				// Asking once the open period is over moves it, and this
				// callback, on time. The extra millisecond lands past the
				// expiry, which gobreaker compares with Before.
				time.AfterFunc(timeout+time.Millisecond, func() { b.cb.State() })
			}
			c.metrics.SetBreakerState(name, breakerGauge(to))
			c.log.Warn("circuit breaker state changed", "credential", name, "from", from.String(), "to", to.String())
		},
	})
	c.metrics.SetBreakerState(cred, metrics.BreakerClosed)
	return b
}

func breakerGauge(s gobreaker.State) int {
	switch s {
	case gobreaker.StateOpen:
		return metrics.BreakerOpen
	case gobreaker.StateHalfOpen:
		return metrics.BreakerHalfOpen
	}
	return metrics.BreakerClosed
}

// allow asks the breaker for a request; done reports its outcome: nil
// success, errFailure, errExcluded. probe is true for the one request a
// half-open breaker lets through: every other is refused until done is
// called. (While the probe is out the breaker can only stay half-open, so
// reading the state after Allow cannot mistake a closed breaker's request
// for it.)
func (b *breaker) allow() (done func(error), probe bool, perr *Error) {
	done, err := b.cb.Allow()
	if err == nil {
		return done, b.cb.State() == gobreaker.StateHalfOpen, nil
	}
	wait := time.Second
	if errors.Is(err, gobreaker.ErrOpenState) {
		b.mu.Lock()
		wait = b.timeout - time.Since(b.openedAt)
		b.mu.Unlock()
	}
	e := newError(CodeBreakerOpen, http.StatusServiceUnavailable,
		"TikTok has been failing for credential %q, so requests are paused (circuit breaker open); retry after the Retry-After seconds",
		b.cb.Name())
	e.RetryAfter = max(wait, time.Second)
	return nil, false, e
}

// failure records why a request failed, just before its outcome is
// reported, so the failure that opens the breaker can be told.
func (b *breaker) failure(why string) {
	b.mu.Lock()
	b.lastFailure = why
	b.mu.Unlock()
}

// fail reports a failure on its own, for a request whose success was
// reported already: a probe whose body broke off after its headers had
// closed the breaker. An open breaker has nothing to learn from it.
func (b *breaker) fail() {
	if done, err := b.cb.Allow(); err == nil {
		done(errFailure)
	}
}
