package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/jsonlog"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/proxy"
)

// Allocs is the in-process cost of one request through a handler, as
// `go test -benchmem` counts it: heap allocations and bytes per request
// (runtime.MemStats deltas over many sequential requests), and wall time.
type Allocs struct {
	Shape            string
	Handler          string // "proxy" or "baseline"
	AllocsPerRequest float64
	BytesPerRequest  float64
	NsPerRequest     float64
}

// staticTokens always has the long-lived token, so the in-process
// measurement is of the request path, not of refreshes.
type staticTokens struct{}

func (staticTokens) Token(context.Context, string) (string, error)      { return longLivedToken, nil }
func (staticTokens) Rejected(context.Context, string, string, int) bool { return false }
func (staticTokens) CredentialFor(id string) (string, bool) {
	return credentialName, id == advertiserID
}
func (staticTokens) Claimants(string) []string { return nil }

// cannedUpstream answers every round trip with apiBody without a network,
// so only the handler's own allocations differ between the two handlers.
type cannedUpstream struct{}

func (cannedUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	return &http.Response{
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(apiBody))}},
		ContentLength: int64(len(apiBody)),
		Body:          io.NopCloser(bytes.NewReader(apiBody)),
		Request:       req,
	}, nil
}

// discardWriter is a ResponseWriter that keeps nothing; its header map is
// cleared for reuse between requests.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Flush()                      {}

// inProcessProxy is the proxy handler as serve builds it (metrics on a
// registry, JSON access log at info, discarded) forwarding to canned.
func inProcessProxy() (http.Handler, error) {
	cfg, err := config.Parse([]byte(`listen: 127.0.0.1:8080
upstream:
  base_url: http://127.0.0.1:9
credentials:
  - name: `+credentialName+`
    app_id: "`+appID+`"
    app_secret: bench-secret
`), "")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	p, err := proxy.New(proxy.Options{
		Config:    cfg,
		Tokens:    staticTokens{},
		Metrics:   metrics.New(prometheus.NewRegistry(), "bench", runtime.Version()),
		Logger:    slog.New(jsonlog.New(io.Discard, nil)),
		Transport: cannedUpstream{},
	})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return p, nil
}

// measureAllocs runs n sequential requests of every shape through the
// proxy handler and the baseline handler.
func measureAllocs(n int) ([]Allocs, error) {
	p, err := inProcessProxy()
	if err != nil {
		return nil, err
	}
	target, _ := url.Parse("http://127.0.0.1:9")
	base := newBaseline(target, cannedUpstream{})
	var out []Allocs
	for _, sh := range shapes {
		for _, h := range []struct {
			name string
			h    http.Handler
		}{{"proxy", p}, {"baseline", base}} {
			a, err := allocsPerRequest(h.h, sh, n)
			if err != nil {
				return nil, fmt.Errorf("bench: %s %s: %w", h.name, sh.Name, err)
			}
			a.Shape, a.Handler = sh.Name, h.name
			out = append(out, a)
		}
	}
	return out, nil
}

// allocsPerRequest serves n requests of sh after n/10 to warm pools.
func allocsPerRequest(h http.Handler, sh Shape, n int) (Allocs, error) {
	w := &discardWriter{h: http.Header{}}
	serve := func() error {
		var body io.Reader
		if sh.body != nil {
			body = bytes.NewReader(sh.body)
		}
		req, err := http.NewRequest(sh.method, "http://127.0.0.1:8080"+sh.target, body)
		if err != nil {
			return err
		}
		// As a server reads it: origin form, the host in Host only.
		req.URL.Scheme, req.URL.Host = "", ""
		req.RemoteAddr = "127.0.0.1:40000"
		req.RequestURI = sh.target
		for k, v := range sh.header {
			req.Header[k] = v
		}
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.h.Get("X-Tiktok-Auth-Proxy-Error") != "" {
			return fmt.Errorf("proxy error %s", w.h.Get("X-Tiktok-Auth-Proxy-Error"))
		}
		return nil
	}
	for range max(n/10, 1) {
		if err := serve(); err != nil {
			return Allocs{}, err
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	for range n {
		if err := serve(); err != nil {
			return Allocs{}, err
		}
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	return Allocs{
		AllocsPerRequest: float64(after.Mallocs-before.Mallocs) / float64(n),
		BytesPerRequest:  float64(after.TotalAlloc-before.TotalAlloc) / float64(n),
		NsPerRequest:     float64(elapsed.Nanoseconds()) / float64(n),
	}, nil
}
