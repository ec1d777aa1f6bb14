package proxy

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/quota"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

// HeaderRetry set to "writes" lets the proxy retry a POST TikTok answered
// with a transient code. TikTok has no idempotency keys, so a retried
// write may be done twice (two campaigns); without the header writes are
// never retried. The proxy removes it before forwarding.
const HeaderRetry = "X-TikTok-Retry"

// Codes TikTok answers a request with that the same request may not get a
// moment later: rate limits, processing error, write conflict, maintenance.
var transientCodes = map[int]bool{
	quota.CodeAppLimit: true, quota.CodeEndpointLimit: true, quota.CodeAdvertiserLimit: true,
	quota.CodeTooManyRequests: true, tiktok.CodeProcessingError: true, 40202: true, tiktok.CodeMaintenance: true,
}

// The retry budget, in thousandths of a retry: retries may add about
// retryRatio of the requests sent, and at least retryFloor per second
// however quiet the proxy is, saved up to retryBurst; so a TikTok that
// keeps failing sees little more traffic than it would without retries.
const (
	retryUnit  = 1000
	retryRatio = retryUnit / 10 // 10 % of each request sent
	retryFloor = 3 * retryUnit  // per second
	retryBurst = 10 * retryUnit
)

// retryBackoff is the first retry's backoff; each further one doubles it.
const retryBackoff = 100 * time.Millisecond

// retryPolicy is retry: of the config, and the budget every credential
// shares.
type retryPolicy struct {
	attempts int
	maxWait  time.Duration
	budget   *retryBudget
}

func newRetryPolicy(r config.Retry, now func() time.Time) retryPolicy {
	return retryPolicy{
		attempts: max(orDefault(r.Attempts, config.DefaultRetryAttempts), 1),
		maxWait:  orDefault(r.MaxWait, config.DefaultRetryMaxWait),
		budget:   &retryBudget{now: now, tokens: retryBurst},
	}
}

// retryBudget is a token bucket filled by traffic and by time.
type retryBudget struct {
	now func() time.Time

	mu     sync.Mutex
	tokens int64 // thousandths of a retry
	last   time.Time
}

// refill adds the floor's tokens for the time passed (b.mu held).
func (b *retryBudget) refill() {
	now := b.now()
	if !b.last.IsZero() {
		b.tokens = min(b.tokens+int64(now.Sub(b.last).Seconds()*retryFloor), retryBurst)
	}
	b.last = now
}

// sent adds a request's share.
func (b *retryBudget) sent() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	b.tokens = min(b.tokens+retryRatio, retryBurst)
}

// take spends a retry, false when the budget is empty.
func (b *retryBudget) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	if b.tokens < retryUnit {
		return false
	}
	b.tokens -= retryUnit
	return true
}

// quotaRequest is the request as the quota sees it.
func quotaRequest(ex *exchange, out *http.Request) quota.Request {
	return quota.Request{Credential: ex.route.Credential, Path: out.URL.Path, Advertisers: ex.route.Advertisers}
}

// waitTurn waits for the request's turn in its app's budget: 90012 with
// Retry-After when it would come after rate_limits.max_wait.
func (c *Core) waitTurn(ex *exchange, out *http.Request) *Error {
	_, err := c.quota.Wait(ex.ctx, quotaRequest(ex, out))
	if err == nil {
		return nil
	}
	// Declared only now: errors.As moves it to the heap.
	var le *quota.LimitedError
	switch {
	case errors.As(err, &le):
		e := newError(CodeRateLimited, http.StatusTooManyRequests, "%s", strings.TrimPrefix(le.Error(), "quota: "))
		e.RetryAfter = le.RetryAfter
		return e
	default:
		return c.interrupted(ex)
	}
}

// attempts sends out until TikTok's answer is final: a read (or a write
// with X-TikTok-Retry: writes) answered with a transient code, an HTTP 5xx
// or a connection reset is sent again after a jittered backoff, up to
// retry.attempts tries within retry.max_wait, while the retry budget lasts
// and the app's budget gives it a turn. The final answer is returned
// unchanged, so the breaker and the client only see that one.
func (c *Core) attempts(ex *exchange, out *http.Request) (*http.Response, error) {
	c.retry.budget.sent()
	until := time.Now().Add(c.retry.maxWait)
	for try := 1; ; try++ {
		resp, err := c.tokenAttempt(ex, out)
		reason := c.retryReason(ex, resp, err)
		if reason == "" || try >= c.retry.attempts || !c.retryable(ex, out) {
			return resp, err
		}
		backoff := retryBackoff << (try - 1)
		backoff = backoff/2 + rand.N(backoff/2+1)
		if time.Now().Add(backoff).After(until) || !c.retry.budget.take() {
			return resp, err
		}
		if !c.pauseForRetry(ex, out, backoff, until) {
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, peekSize))
			_ = resp.Body.Close()
		}
		ex.retries++
		c.metrics.UpstreamRetry(ex.route.Credential, reason)
		c.log.Info("retrying TikTok's transient answer", "request_id", ex.id, "credential", ex.route.Credential,
			"reason", reason, "try", try+1)
		out = replay(ex, out)
	}
}

// retryReason is why TikTok's answer (resp or err) may be retried: the
// envelope code, the HTTP status, or "reset"; "" when it is final.
func (c *Core) retryReason(ex *exchange, resp *http.Response, err error) string {
	switch {
	case err != nil:
		if _, bodyErr := ex.body.state(); bodyErr == nil && ex.ctx.Err() == nil && isReset(err) {
			return "reset"
		}
	case resp.StatusCode >= 500:
		return strconv.Itoa(resp.StatusCode)
	case ex.codeOK && transientCodes[ex.code]:
		return strconv.Itoa(ex.code)
	}
	return ""
}

// isReset reports a connection TikTok's side closed or reset: the request
// may not have been read, and a read can be sent again.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// retryable reports whether out may be sent again: a GET, or a POST whose
// caller asked for it, with a body the proxy holds whole.
func (c *Core) retryable(ex *exchange, out *http.Request) bool {
	if out.Method != http.MethodGet && !ex.retryWrites {
		return false
	}
	return ex.route.sel == nil || ex.route.sel.replayable()
}

// pauseForRetry waits backoff, then for a turn in the app's budget, both
// before until; false when either cannot be had (the caller then passes
// TikTok's last answer on).
func (c *Core) pauseForRetry(ex *exchange, out *http.Request, backoff time.Duration, until time.Time) bool {
	ctx, cancel := context.WithDeadline(ex.ctx, until)
	defer cancel()
	t := time.NewTimer(backoff)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	req := quotaRequest(ex, out)
	req.Retry = true
	_, err := c.quota.Wait(ctx, req)
	return err == nil
}
