package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Codes of the errors the proxy itself returns (SPEC "Errors the proxy
// itself returns"). They sit in TikTok's envelope so scripts that check
// code != 0 handle them.
const (
	CodeNoCredential      = 90001 // 400: no credential can be picked
	CodeUnknownCredential = 90002 // 400: the selection header names no credential
	CodeNotAuthorized     = 90003 // 503: never authorized
	CodeReauthRequired    = 90004 // 503: re-authorization required
	CodeRefreshFailed     = 90005 // 503: expired and refresh failed; Retry-After
	CodeBreakerOpen       = 90006 // 503: circuit breaker open; Retry-After
	CodeUpstream          = 90007 // 502 unreachable / 504 timed out
	CodeBodyTooLarge      = 90008 // 413: JSON body over max_inspect_bytes
	CodeNotFound          = 90009 // 404: not /open_api/, or another host
	CodeClientAuth        = 90010 // 401 / 403
	CodeMalformed         = 90011 // 400: bad JSON or header
	CodeRateLimited       = 90012 // 429: own rate limit; Retry-After
	CodeOverloaded        = 90013 // 503: the proxy itself is at capacity; Retry-After
)

// Headers the proxy reads or writes.
const (
	// HeaderError carries the proxy error code on the proxy's own errors.
	HeaderError = "X-TikTok-Auth-Proxy-Error"
	// HeaderCredential names the credential used, on every forwarded response.
	HeaderCredential = "X-TikTok-Auth-Proxy-Credential"
	// HeaderRequestID is the proxy's request id, also in its log line.
	HeaderRequestID = "X-TikTok-Auth-Proxy-Request-Id"

	headerAccessToken = "Access-Token"
	// headerLogID is TikTok's id of a request, which TikTok support asks
	// for; the log line carries it.
	headerLogID     = "X-Tt-Logid"
	headerProxyAuth = "Proxy-Authorization"
)

// The canonical forms of the headers set on every forwarded response, so
// setting them allocates no name.
var (
	credentialKey = http.CanonicalHeaderKey(HeaderCredential)
	// retryKey is HeaderRetry's key in an http.Header: Get and Del would
	// canonicalise "X-TikTok-Retry" again on every request, allocating.
	retryKey     = http.CanonicalHeaderKey(HeaderRetry)
	requestIDKey = http.CanonicalHeaderKey(HeaderRequestID)
)

// Error is a proxy error: one of the 900xx codes with its HTTP status and a
// message telling the user what to do. It never carries a secret.
type Error struct {
	Code       int           // 90001..90013
	Status     int           // HTTP status sent to the client
	Message    string        // shown to the user in the envelope
	RetryAfter time.Duration // > 0: sent as Retry-After (whole seconds, at least 1)
}

func (e *Error) Error() string { return fmt.Sprintf("proxy: %d: %s", e.Code, e.Message) }

func newError(code, status int, format string, args ...any) *Error {
	return &Error{Code: code, Status: status, Message: fmt.Sprintf(format, args...)}
}

// envelope is TikTok's response shape, used for the proxy's own errors.
type envelope struct {
	Code      int      `json:"code"`
	Message   string   `json:"message"`
	RequestID string   `json:"request_id"`
	Data      struct{} `json:"data"`
}

// WriteError sends e to the client as TikTok's envelope with e's HTTP
// status, the X-TikTok-Auth-Proxy-Error header and Retry-After when due.
// requestID is the proxy's id for this request (also in its log line).
func WriteError(w http.ResponseWriter, e *Error, requestID string) {
	body := e.envelope(w.Header(), requestID)
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}

// errorResponse is e as the response to req that WriteError would write,
// for front ends that return an *http.Response.
func errorResponse(e *Error, requestID string, req *http.Request) *http.Response {
	h := http.Header{}
	body := e.envelope(h, requestID)
	return &http.Response{
		Status: fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status)), StatusCode: e.Status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req,
	}
}

// envelope sets the headers of e's response on h and returns its body.
func (e *Error) envelope(h http.Header, requestID string) []byte {
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set(HeaderError, strconv.Itoa(e.Code))
	if requestID != "" {
		h.Set(HeaderRequestID, requestID)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds(e.RetryAfter)))
	}
	body, err := json.Marshal(envelope{Code: e.Code, Message: e.Message, RequestID: requestID})
	if err != nil {
		// A struct of strings and ints always marshals.
		panic(err)
	}
	body = append(body, '\n')
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return body
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
