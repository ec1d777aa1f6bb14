package proxy

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/quota"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

// peekSize bounds how much of a response is looked at for its envelope code.
const peekSize = 4 << 10

var (
	// errFailure is a breaker failure: transport error, timeout, HTTP 5xx,
	// TikTok server code.
	errFailure = errors.New("proxy: upstream failure")
	// errExcluded is an outcome that says nothing about TikTok's health
	// (the client hung up, no token to send, the proxy itself ran short).
	errExcluded = errors.New("proxy: outcome excluded")
)

// isServerCode reports TikTok envelope codes that mean TikTok itself is
// failing; 4xxxx codes are the caller's business and never trip the breaker.
func isServerCode(code int) bool {
	return (code >= 50000 && code <= 52999) || code == tiktok.CodeMaintenance
}

// tokenAttempt is one round trip to TikTok, its envelope code peeked, and
// one retry with a fresh token after 40105/40102 when the token alone
// authenticated the request and its body can be replayed.
func (c *Core) tokenAttempt(ex *exchange, out *http.Request) (*http.Response, error) {
	sent := time.Now()
	resp, err := c.upstreamRoundTrip(ex, out)
	if err != nil {
		return nil, err
	}
	c.inspect(ex, resp, sent)
	if !ex.codeOK || (ex.code != tiktok.CodeTokenInvalid && ex.code != tiktok.CodeTokenExpired) || !ex.route.tokenOnly {
		return resp, nil
	}
	// The store hears of every rejection of a request the token alone
	// authenticated, retry or not: it refreshes or checks the credential,
	// which the next request benefits from. A request that also carried an
	// app's credentials may have been refused for those, so it says
	// nothing about the token.
	cred := ex.route.Credential
	retryable := c.tokens.Rejected(ex.ctx, cred, ex.token, ex.code)
	if !retryable || ex.route.sel == nil || !ex.route.sel.replayable() {
		return resp, nil
	}
	token, err := c.tokens.Token(ex.ctx, cred)
	if err != nil || token == ex.token {
		return resp, nil
	}
	retry := replay(ex, out)
	retry.Header.Set(headerAccessToken, token)
	_ = resp.Body.Close()
	ex.token, ex.retried, ex.codeOK = token, true, false
	sent = time.Now()
	resp, err = c.upstreamRoundTrip(ex, retry)
	if err != nil {
		return nil, err
	}
	c.inspect(ex, resp, sent)
	return resp, nil
}

// upstreamRoundTrip sends out to TikTok, counted among the requests
// heading there until the exchange settles. Only when the proxy may run
// short — more of them than traceFrom, near the bound of connections to
// TikTok, or a dial waiting for a descriptor — does it carry the
// connection trace that tells a request queued for a connection from one
// TikTok left unanswered (connTrace.classify); below that, every request
// gets a connection or dials at once.
func (c *Core) upstreamRoundTrip(ex *exchange, out *http.Request) (*http.Response, error) {
	n := c.heading.Add(1)
	ex.heading++
	ex.conn.reset()
	ex.conn.localFailures = localDialFailures.Load()
	if n > c.traceFrom || dialsWaiting.Load() > 0 {
		out = out.WithContext(ex.conn.trace(out.Context()))
	}
	return c.base.RoundTrip(out)
}

// replay is out again, with the body selection kept (the caller checked
// that it can be replayed).
func replay(ex *exchange, out *http.Request) *http.Request {
	again := out.Clone(out.Context())
	again.Body = nil
	if len(ex.route.sel.replay) > 0 {
		again.Body = io.NopCloser(bytes.NewReader(ex.route.sel.replay))
	}
	return again
}

// inspect peeks at resp's envelope code, counts a non-zero one, and logs
// TikTok's rate-limit codes with the advertisers that burn the budget and
// has the quota learn the pause they call for (the request was sent at
// sent).
func (c *Core) inspect(ex *exchange, resp *http.Response, sent time.Time) {
	head := peekCode(resp)
	code, ok := head.Code, head.CodeOK
	ex.code, ex.codeOK, ex.upstreamID, ex.message = code, ok, head.RequestID, head.Message
	// 20001 (partial success) is counted too, as SPEC counts every code
	// other than 0; isServerCode keeps it from ever tripping the breaker.
	if !ok || code == tiktok.CodeOK {
		return
	}
	cred := ex.route.Credential
	c.metrics.UpstreamAPIError(cred, code)
	if quota.IsLimitCode(code) {
		c.log.Warn("TikTok rate limit hit", "request_id", ex.id, "credential", cred, "tiktok_code", code, "message", ex.message,
			"advertiser_ids", ex.route.Advertisers, "client", ex.route.Client, "path", resp.Request.URL.Path)
		c.quota.Observe(quotaRequest(ex, resp.Request), sent, code, ex.message)
	}
}

// peekCode reads the envelope code from the start of a JSON response, and
// TikTok's message and request_id when they came with the code
// (tiktok.PeekEnvelope), leaving resp.Body intact: what was read is served
// again first (peekedBody). It reads no more than peekSize bytes and returns
// as soon as the code is known, so a streamed response is not held back.
// Only application/json is read: TikTok sends its envelope as JSON, and a
// page or file that happens to start with {"code": is not an envelope.
func peekCode(resp *http.Response) tiktok.EnvelopeHead {
	if !isJSON(resp.Header.Get("Content-Type")) {
		return tiktok.EnvelopeHead{}
	}
	gz := false
	switch strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))) {
	case "", "identity":
	case "gzip":
		gz = true
	default:
		return tiktok.EnvelopeHead{}
	}
	pb := &peekedBody{ReadCloser: resp.Body}
	resp.Body = pb
	// The first read usually holds the whole envelope head: a 4 KiB
	// buffer (bufio's) per response was more to allocate and clear than
	// the read itself.
	buf := make([]byte, 0, firstPeek)
	defer func() { pb.head = buf }()
	for empty := 0; empty < maxEmptyReads; {
		if len(buf) == cap(buf) {
			if len(buf) >= peekSize {
				return tiktok.EnvelopeHead{}
			}
			buf = append(buf, make([]byte, min(2*cap(buf), peekSize)-len(buf))...)[:len(buf)]
		}
		n, err := pb.ReadCloser.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			pb.err = err
		}
		if n == 0 && err == nil {
			empty++
			continue
		}
		empty = 0
		data := buf
		if gz {
			data = gunzipPrefix(buf)
		}
		if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] != '{' {
			return tiktok.EnvelopeHead{}
		}
		if h := tiktok.PeekEnvelope(data); h.CodeOK {
			return h
		}
		if err != nil {
			return tiktok.EnvelopeHead{}
		}
	}
	return tiktok.EnvelopeHead{}
}

const (
	// firstPeek is the buffer of the first read of a response: TikTok's
	// envelope head (code, message, request_id) fits in it.
	firstPeek = 512
	// maxEmptyReads bounds reads that return nothing, as bufio does.
	maxEmptyReads = 100
)

// peekedBody is a response body whose head peekCode read: the head is
// served first, then the error the peek ended on (EOF for a body it read
// whole), or else the rest of the stream.
type peekedBody struct {
	head []byte
	err  error
	io.ReadCloser
}

func (b *peekedBody) Read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		if len(b.head) == 0 && b.err != nil {
			return n, b.err
		}
		return n, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	return b.ReadCloser.Read(p)
}

// isJSON reports whether a Content-Type is application/json. TikTok's own
// forms are recognised without mime.ParseMediaType, which allocates.
func isJSON(ct string) bool {
	if isPlainJSON(ct) {
		return true
	}
	mt, _, _ := mime.ParseMediaType(ct)
	return mt == jsonType
}

const jsonType = "application/json"

// isPlainJSON reports the Content-Types TikTok and its SDKs send for JSON,
// which need no parsing.
func isPlainJSON(ct string) bool {
	return ct == jsonType || ct == jsonType+"; charset=utf-8" || ct == jsonType+";charset=utf-8"
}

// gunzipPrefix decompresses as much of a gzip stream's prefix as it can, at
// most peekSize bytes.
func gunzipPrefix(b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	out, _ := io.ReadAll(io.LimitReader(zr, peekSize))
	return out
}
