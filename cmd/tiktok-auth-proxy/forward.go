package main

import (
	"io"
	"log/slog"
	"net/http"
	"sync"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/proxy"
)

// newForward builds the forward-proxy (HTTPS_PROXY) front end over the
// proxy core: a tunnel idles as long as a listener's connection, and a
// body inside it must arrive within upstream.timeout. The requests inside
// its tunnels are counted in handlers until their response body is closed:
// they run on hijacked connections, which http.Server.Shutdown does not
// wait for.
func newForward(cfg *config.Config, core *proxy.Core, handlers *inFlight, log *slog.Logger) (*proxy.Forward, error) {
	fp := cfg.ForwardProxy
	ca, err := fp.LoadCA()
	if err != nil {
		return nil, err
	}
	return proxy.NewForward(proxy.ForwardOptions{CA: ca, Hosts: fp.Hosts, Logger: log,
		IdleTimeout: idleTimeout, ReadTimeout: cfg.Upstream.Timeout}, countedCore{core: core, n: handlers})
}

// countedCore is the core whose tunnels count their requests in n.
type countedCore struct {
	core *proxy.Core
	n    *inFlight
}

func (c countedCore) Tunnel(connect *http.Request) (http.RoundTripper, *http.Response) {
	rt, refusal := c.core.Tunnel(connect)
	if refusal != nil {
		return nil, refusal
	}
	return countedTransport{rt: rt, n: c.n}, nil
}

type countedTransport struct {
	rt http.RoundTripper
	n  *inFlight
}

func (t countedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.begin()
	resp, err := t.rt.RoundTrip(r)
	if err != nil {
		t.n.end()
		return nil, err
	}
	resp.Body = &endOnClose{ReadCloser: resp.Body, end: sync.OnceFunc(t.n.end)}
	return resp, nil
}

// endOnClose calls end when the body is closed (once, however often).
type endOnClose struct {
	io.ReadCloser
	end func()
}

func (b *endOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.end()
	return err
}
