package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/proxy"
)

// newForward builds the forward-proxy (HTTPS_PROXY) front end over the
// reverse proxy px; handle is px as the proxy listener serves it (counted
// among the running handlers).
func newForward(fp config.ForwardProxy, px *proxy.Proxy, handle http.Handler, log *slog.Logger) (*proxy.Forward, error) {
	ca, err := fp.LoadCA()
	if err != nil {
		return nil, err
	}
	return proxy.NewForward(proxy.ForwardOptions{CA: ca, Hosts: fp.Hosts, Logger: log}, reverseTunnel{px: px, handle: handle})
}

// reverseTunnel is a temporary adapter that serves the forward front end
// through the reverse proxy until the proxy core provides Tunnel (issue 10,
// item 1). Each request of a tunnel is rewritten to the form a script
// sends to the proxy listener (origin-form path, Host localhost, the
// CONNECT's Proxy-Authorization) and served by the same handler, so
// selection, injection, breaker, metrics and the log line are those of a
// direct request. The client is authenticated on CONNECT by asking
// px.Prepare about a probe request carrying the CONNECT's
// Proxy-Authorization: Prepare checks the client before anything that
// depends on the request itself, and neither logs nor counts.
type reverseTunnel struct {
	px     *proxy.Proxy
	handle http.Handler
}

// probePath is any path the reverse proxy forwards; the probe never is.
const probePath = "/open_api/v1.3/"

// Tunnel authenticates the CONNECT (or plain proxy request) and returns
// the RoundTripper for its requests, or the refusal.
func (t reverseTunnel) Tunnel(connect *http.Request) (http.RoundTripper, *http.Response) {
	auth := connect.Header.Get("Proxy-Authorization")
	probe := httptest.NewRequest(http.MethodGet, probePath, nil).WithContext(connect.Context())
	probe.Host = "localhost"
	if auth != "" {
		probe.Header.Set("Proxy-Authorization", auth)
	}
	if _, perr := t.px.Prepare(probe); perr != nil && perr.Code == proxy.CodeClientAuth && perr.Status == http.StatusUnauthorized {
		rec := httptest.NewRecorder()
		proxy.WriteError(rec, perr, "")
		return nil, rec.Result()
	}
	return tunnelTransport{handle: t.handle, auth: auth}, nil
}

// tunnelTransport serves one tunnel's requests with the reverse proxy's
// handler, streaming its response.
type tunnelTransport struct {
	handle http.Handler
	auth   string // the CONNECT's Proxy-Authorization
}

func (t tunnelTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	in := r.Clone(r.Context())
	in.URL = &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	in.RequestURI = in.URL.RequestURI()
	in.Host = "localhost"
	in.Header.Del("Proxy-Authorization")
	if t.auth != "" {
		in.Header.Set("Proxy-Authorization", t.auth)
	}
	pr, pw := io.Pipe()
	w := &pipeResponse{header: http.Header{}, body: pw, bodyR: pr, req: r, ready: make(chan *http.Response, 1)}
	go func() {
		defer func() {
			// ReverseProxy aborts a copy that failed (the client went
			// away) with http.ErrAbortHandler; here it ends the body.
			err := io.EOF
			if v := recover(); v != nil {
				err = fmt.Errorf("forward: response aborted: %v", v)
			}
			w.WriteHeader(http.StatusOK) // no-op once written
			pw.CloseWithError(err)
		}()
		t.handle.ServeHTTP(w, in)
	}()
	select {
	case resp := <-w.ready:
		return resp, nil
	case <-r.Context().Done():
		pr.CloseWithError(r.Context().Err())
		return nil, r.Context().Err()
	}
}

// pipeResponse is an http.ResponseWriter whose response is read as an
// *http.Response: the header once written, the body as it is written.
type pipeResponse struct {
	header http.Header
	body   *io.PipeWriter
	bodyR  *io.PipeReader
	req    *http.Request
	ready  chan *http.Response
	wrote  bool
}

func (w *pipeResponse) Header() http.Header { return w.header }

func (w *pipeResponse) WriteHeader(status int) {
	// A 1xx (TikTok's 100 Continue) is no answer yet.
	if w.wrote || status < http.StatusOK {
		return
	}
	w.wrote = true
	n, err := strconv.ParseInt(w.header.Get("Content-Length"), 10, 64)
	if err != nil {
		n = -1
	}
	w.ready <- &http.Response{
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.header.Clone(), Body: w.bodyR, ContentLength: n, Request: w.req,
	}
}

func (w *pipeResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// Flush is a no-op: every Write reaches the reader when it reads.
func (w *pipeResponse) Flush() {}
