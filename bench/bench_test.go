// Package bench measures what tiktok-auth-proxy costs on every request
// against a bare httputil.ReverseProxy measured in the same run: both
// forward to the same local upstream over loopback, so the difference is
// credential selection, token injection, the breaker, envelope peeking,
// metrics and the log line. Run with `make bench`; compare the two ns/op
// figures as a ratio (benchstat works on repeated runs).
package bench

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/proxy"
)

const body = `{"code":0,"message":"OK","request_id":"20261124000000","data":{"list":[{"campaign_id":"1800000000000000001","campaign_name":"bench"}],"page_info":{"page":1,"total_number":1}}}`

// staticTokens is a token store that always has a token, so the benchmark
// measures the request path, not refreshes.
type staticTokens struct{}

func (staticTokens) Token(context.Context, string) (string, error)      { return "bench-token", nil }
func (staticTokens) Rejected(context.Context, string, string, int) bool { return false }
func (staticTokens) CredentialFor(id string) (string, bool) {
	return "main", id == "7012345678901234567"
}
func (staticTokens) Claimants(string) []string { return nil }

func upstream(b *testing.B) *httptest.Server {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Access-Token") == "" {
			b.Error("upstream got no Access-Token")
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// run drives h with b.N requests from parallel clients over loopback.
func run(b *testing.B, h http.Handler) {
	front := httptest.NewServer(h)
	defer front.Close()
	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256}}
	target := front.URL + "/open_api/v1.3/campaign/get/?advertiser_id=7012345678901234567"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(target)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || n != int64(len(body)) {
				b.Errorf("HTTP %d, %d bytes", resp.StatusCode, n)
				return
			}
		}
	})
}

func BenchmarkBareReverseProxy(b *testing.B) {
	up, _ := url.Parse(upstream(b).URL)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(up)
		pr.Out.Header.Set("Access-Token", "bench-token")
	}}
	run(b, rp)
}

func BenchmarkTikTokAuthProxy(b *testing.B) {
	up := upstream(b)
	cfg, err := config.Parse([]byte(`upstream:
  base_url: `+up.URL+`
credentials:
  - name: main
    app_id: "1"
    app_secret: bench
`), "")
	if err != nil {
		b.Fatal(err)
	}
	p, err := proxy.New(proxy.Options{
		Config:  cfg,
		Tokens:  staticTokens{},
		Metrics: metrics.New(prometheus.NewRegistry(), "bench", "go"),
		Logger:  slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	run(b, p)
}
