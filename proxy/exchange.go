package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

// exchange is one request's state from RoundTrip until its response body
// is closed. The round trip runs on the caller's goroutine; only the
// watched bodies are read elsewhere (they lock), and the settled body
// settles it once.
type exchange struct {
	id     string
	start  time.Time
	method string
	path   string
	// deadline ends the whole request, upstream.timeout after it arrived
	// (or the caller's earlier context deadline): reading its body,
	// waiting for a token and TikTok's answer. ctx carries it; cancel ends
	// it once the exchange is settled.
	deadline  time.Time
	ctx       context.Context
	cancel    context.CancelFunc
	clientCtx context.Context // the caller's own context, to tell a hang-up from a timeout
	route     *Route
	client    string // the authenticated client's name ("" without clients)
	token     string
	breaker   *breaker
	done      func(error) // breaker outcome; nil once reported
	probe     bool        // the half-open breaker's one request
	// outcome is reported to the breaker when the request ends: nil
	// success, errFailure, errExcluded (the default: nothing learnt).
	outcome error
	// failure says what failed when outcome is errFailure, with no secret
	// (the URL's query may hold one): the setup page's "last error".
	failure string
	code    int // TikTok envelope code of the response, when codeOK
	codeOK  bool
	// upstreamID is the envelope's request_id and logID TikTok's
	// X-Tt-Logid header, for the log line; "" when TikTok sent none.
	upstreamID string
	logID      string
	message    string // the envelope's message, for a failure's description
	retried    bool   // sent again with a fresh token after 40105/40102
	// retryWrites is set by X-TikTok-Retry: writes: the caller accepts
	// that a write TikTok answered with a transient code is sent again.
	retryWrites bool
	retries     int // transient answers retried (retry.attempts)
	proxyErr    int
	status      int          // overrides the status logged, for a response cut off mid-body
	hungUp      bool         // the client went away
	body        *watchedBody // the client's body
	resp        *watchedBody // TikTok's response body once headers arrived: settled's
	conn        connTrace    // how far the round trip to TikTok got towards a connection
	heading     int64        // round trips counted in Core.heading, released at settle
	// settled wraps TikTok's response body (received); idValue is the
	// request id header's value.
	settled settledBody
	idValue [1]string
}

// newExchange starts the exchange of r, which ends at deadline, or, when
// that is zero, upstream.timeout from now; the caller's context ending
// earlier ends it too.
func (c *Core) newExchange(r *http.Request, deadline time.Time) *exchange {
	if deadline.IsZero() {
		deadline = time.Now().Add(c.timeout)
	}
	if d, ok := r.Context().Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ex := &exchange{id: newRequestID(), start: c.now(), method: r.Method, path: r.URL.Path,
		deadline: deadline, clientCtx: r.Context(), outcome: errExcluded}
	ex.ctx, ex.cancel = context.WithDeadline(r.Context(), deadline)
	return ex
}

// pastDeadline reports whether the request's deadline has passed.
func (ex *exchange) pastDeadline() bool { return !time.Now().Before(ex.deadline) }

// clientGone reports whether the client hung up. On HTTP/1 a body read
// failing at the read deadline the reverse front end sets also cancels the
// client's context, so a cancellation from then on is the timeout's, not
// the client's.
func (ex *exchange) clientGone() bool {
	return ex.clientCtx.Err() != nil && !ex.pastDeadline()
}

// refuse answers the exchange with the proxy error perr, as TikTok's
// envelope; a client that hung up is logged 499 instead. The exchange is
// settled before the answer leaves, so the breaker, the metrics and the
// log have it by the time the client does.
func (c *Core) refuse(ex *exchange, out *http.Request, perr *Error) *http.Response {
	if perr == errClientGone || ex.clientGone() {
		ex.hungUp = true
		perr = errClientGone
	} else {
		ex.proxyErr = perr.Code
	}
	resp := errorResponse(perr, ex.id, out)
	if ex.route != nil {
		resp.Header.Set(HeaderCredential, ex.route.Credential)
	}
	c.settle(ex, resp.StatusCode, true, resp.ContentLength)
	return resp
}

// failed is the proxy error for a failed round trip: 90013 when the proxy
// itself ran short (connTrace.classify), 90011 when the client's own body
// failed (408 when it stalled), the refusal of an upload's later parts,
// else 90007 (502 unreachable, 504 timed out).
func (c *Core) failed(ex *exchange, err error) *Error {
	if ex.clientGone() {
		return errClientGone
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// url.Error quotes the URL, whose query may carry an app secret.
		err = ue.Err
	}
	// The transport reads the client's body only once connected, and a
	// TikTok that reads it slowly blocks the transport's writes, not its
	// reads: a Read waiting on the client at the deadline (or failed by
	// it) means the client stalled, which says nothing about TikTok.
	reading, bodyErr := ex.body.state()
	var perr *Error
	var local *localError
	switch {
	case errors.As(ex.conn.classify(err), &local):
		// Out of descriptors, ports or connection slots: the proxy's own
		// trouble, which says nothing about TikTok.
		ex.outcome = errExcluded
		perr = overloaded("%v", local.err)
	case errors.As(err, &perr):
		// The check of an upload's later parts refused it (verifiedBody).
		ex.outcome = errExcluded
	case bodyErr != nil && !isTimeout(bodyErr):
		ex.outcome = errExcluded
		perr = c.bodyError(bodyErr)
	case isTimeout(bodyErr) || (reading && ex.pastDeadline()):
		ex.outcome = errExcluded
		perr = c.bodyTimeout()
	case ex.pastDeadline() || isTimeout(err):
		ex.outcome = errFailure
		ex.failure = fmt.Sprintf("TikTok did not answer within upstream.timeout (%s)", c.timeout)
		perr = c.upstreamTimeout()
	default:
		ex.outcome = errFailure
		ex.failure = fmt.Sprintf("TikTok could not be reached: %v", err)
		perr = newError(CodeUpstream, http.StatusBadGateway,
			"TikTok (%s) could not be reached: %v; try again later", c.target.Host, err)
	}
	if ex.outcome == errFailure {
		c.log.Warn("upstream request failed", "request_id", ex.id, "credential", ex.route.Credential, "err", err)
	}
	return perr
}

// received labels TikTok's response with its credential and request id,
// decides the breaker outcome now that the envelope code has been peeked,
// and watches the body, which settles the exchange once closed.
func (c *Core) received(ex *exchange, resp *http.Response) {
	// Header.Set would canonicalise each name again, allocating; the
	// credential's value is made once per credential (send reached TikTok,
	// so the credential is a configured one), the id's lives in the
	// exchange.
	resp.Header[credentialKey] = c.credentialValues[ex.route.Credential]
	ex.idValue[0] = ex.id
	resp.Header[requestIDKey] = ex.idValue[:]
	ex.logID = resp.Header.Get(headerLogID)
	switch {
	case resp.StatusCode >= 500:
		ex.outcome, ex.failure = errFailure, fmt.Sprintf("HTTP %d from TikTok", resp.StatusCode)
	case ex.codeOK && isServerCode(ex.code):
		ex.outcome, ex.failure = errFailure, fmt.Sprintf("TikTok code %d", ex.code)
		if ex.message != "" {
			ex.failure += ": " + ex.message
		}
	default:
		ex.outcome = nil
		// Status and envelope show TikTok is back. A half-open breaker
		// refuses everything else while its probe is out, and a long
		// report would keep it out for up to upstream.timeout, so a
		// probe's success is reported now; its body breaking off later
		// is then a failure of its own (finish), towards tripping the
		// breaker again. Other requests wait for their body's end:
		// reported early, every success would reset the consecutive
		// failures of a TikTok that stalls mid-body, which would then
		// never trip it.
		if ex.probe {
			ex.finish(nil)
		}
	}
	// The wrapper lives in the exchange: no allocation of its own.
	ex.settled.ReadCloser, ex.settled.core, ex.settled.ex, ex.settled.status = resp.Body, c, ex, resp.StatusCode
	ex.resp = &ex.settled.watchedBody
	resp.Body = &ex.settled
}

// settle ends the exchange once its response body is closed, having
// delivered n bytes (all of them when eof): the breaker hears the outcome,
// so a body cut off half-way counts too, and the request is counted and
// logged.
func (c *Core) settle(ex *exchange, status int, eof bool, n int64) {
	if ex.resp != nil && (!eof || ex.respErr() != nil) {
		c.cutOff(ex)
	}
	ex.finish(ex.outcome)
	ex.cancel()
	c.heading.Add(-ex.heading)
	c.observe(ex, status, n)
}

// respErr is the error that ended the copy of TikTok's response body.
func (ex *exchange) respErr() error {
	if ex.resp == nil {
		return nil
	}
	_, err := ex.resp.state()
	return err
}

// cutOff settles a response that ended before its body did. A client that
// hung up says nothing about TikTok. Nor does one too slow to take the body
// within upstream.timeout: the copy waits on the client while it writes and
// on TikTok while it reads, so a read that failed at the deadline having
// begun only after it means the copy had been stuck writing, and a copy
// that ended past the deadline with TikTok's body intact ended on a write
// (to a client that stopped reading: WriteGrace after the deadline); the
// request is logged and counted as 408. Otherwise TikTok's body broke off or
// upstream.timeout cut it while TikTok kept the copy waiting: the client
// has a 200 and half a body, but the request is logged and counted as the
// 504 (or 502) it really was, and it is a breaker failure.
func (c *Core) cutOff(ex *exchange) {
	err := ex.respErr()
	timedOut := ex.pastDeadline() || isTimeout(err)
	switch {
	case ex.clientGone():
		ex.outcome, ex.hungUp = errExcluded, true
	case err == nil && !ex.pastDeadline():
		// Closed with TikTok's body intact: the write to the client
		// failed without its context ending. Nothing to hold against TikTok.
		ex.outcome = errExcluded
	case timedOut && (err == nil || !ex.resp.failedReadBegan().Before(ex.deadline)):
		ex.outcome, ex.status = errExcluded, http.StatusRequestTimeout
		c.log.Warn("client too slow: response not delivered within upstream.timeout", "request_id", ex.id,
			"credential", ex.route.Credential, "timeout", c.timeout.String())
	case timedOut:
		ex.outcome, ex.proxyErr, ex.status = errFailure, CodeUpstream, http.StatusGatewayTimeout
		ex.failure = fmt.Sprintf("TikTok's response was cut off by upstream.timeout (%s)", c.timeout)
		c.log.Warn("upstream response cut off by upstream.timeout", "request_id", ex.id, "credential", ex.route.Credential,
			"timeout", c.timeout.String(), "err", err)
	default:
		ex.outcome, ex.proxyErr, ex.status = errFailure, CodeUpstream, http.StatusBadGateway
		ex.failure = fmt.Sprintf("TikTok's response broke off: %v", err)
		c.log.Warn("upstream response broke off", "request_id", ex.id, "credential", ex.route.Credential, "err", err)
	}
}

// maxLoggedAdvertisers caps the advertiser ids on a log line; the rest
// are counted in advertiser_ids_more.
const maxLoggedAdvertisers = 5

// observe writes the request's metrics and its access log line.
func (c *Core) observe(ex *exchange, status int, n int64) {
	d := c.now().Sub(ex.start)
	switch {
	case ex.hungUp:
		status = 499
	case ex.status != 0:
		status = ex.status
	}
	cred := "none" // the metrics' label for a request refused before it had one
	if ex.route != nil {
		cred = ex.route.Credential
	}
	c.metrics.ObserveRequest(cred, methodLabel(ex.method), status, d)
	c.logRequest(ex, status, d, n)
}

// logRequest writes the request's access log line: an attribute appears
// only when its value is known, and a TikTok code other than success (0)
// or partial success (20001) is logged at WARN.
func (c *Core) logRequest(ex *exchange, status int, d time.Duration, n int64) {
	level := slog.LevelInfo
	if ex.codeOK && ex.code != tiktok.CodeOK && ex.code != tiktok.CodePartialSuccess {
		level = slog.LevelWarn
	}
	if !c.accessLog.Enabled(ex.clientCtx, level) {
		return
	}
	// Built in an array on the stack, handed to LogAttrs, which copies
	// them: a line costs no allocation per attribute (issue 14).
	var buf [16]slog.Attr
	attrs := append(buf[:0],
		slog.String("request_id", ex.id),
		slog.String("method", ex.method),
		slog.String("path", ex.path),
		slog.Int("status", status),
		slog.Duration("duration", d),
		slog.Int64("bytes", n),
	)
	if ex.client != "" {
		attrs = append(attrs, slog.String("client", ex.client))
	}
	if rt := ex.route; rt != nil {
		attrs = append(attrs, slog.String("credential", rt.Credential))
		if rt.sel != nil {
			attrs = append(attrs, slog.String("selected_by", rt.sel.by))
			if ids := rt.sel.picked; len(ids) > 0 {
				attrs = append(attrs, slog.Any("advertiser_ids", ids[:min(len(ids), maxLoggedAdvertisers)]))
				if more := len(ids) - maxLoggedAdvertisers; more > 0 {
					attrs = append(attrs, slog.Int("advertiser_ids_more", more))
				}
			}
		}
	}
	if ex.codeOK {
		attrs = append(attrs, slog.Int("tiktok_code", ex.code))
	}
	if ex.logID != "" {
		attrs = append(attrs, slog.String("tt_logid", ex.logID))
	}
	if ex.upstreamID != "" {
		attrs = append(attrs, slog.String("upstream_request_id", ex.upstreamID))
	}
	if ex.proxyErr != 0 {
		attrs = append(attrs, slog.Int("proxy_error", ex.proxyErr))
	}
	if ex.retried {
		attrs = append(attrs, slog.Bool("retried", true))
	}
	if ex.retries > 0 {
		attrs = append(attrs, slog.Int("retries", ex.retries))
	}
	if c.accessJSON != nil {
		// A concrete call: through an interface the attributes' array
		// would escape to the heap.
		c.accessJSON.LogAttrs(ex.clientCtx, level, "request", attrs...)
		return
	}
	c.accessLog.LogAttrs(ex.clientCtx, level, "request", attrs...)
}

// finish reports the breaker outcome once; after a probe's early success
// only a failure is reported, on its own.
func (ex *exchange) finish(err error) {
	if err == errFailure && (ex.done != nil || ex.probe) {
		ex.breaker.failure(ex.failure)
	}
	switch {
	case ex.done != nil:
		ex.done(err)
		ex.done = nil
	case ex.probe && err == errFailure:
		ex.breaker.fail()
	}
}

// settledBody is TikTok's response body, watched (the exchange's resp),
// that settles its exchange once when it is closed, saying how much was
// read and whether to its end. A front end closes it after copying it to
// the client, or when the copy failed.
type settledBody struct {
	watchedBody
	core   *Core
	ex     *exchange
	status int
	once   sync.Once
}

func (b *settledBody) Close() error {
	err := b.watchedBody.Close()
	b.once.Do(func() {
		eof, n := b.delivered()
		b.core.settle(b.ex, b.status, eof, n)
	})
	return err
}
