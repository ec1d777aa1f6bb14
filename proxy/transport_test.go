package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// TestDefaultTransportIgnoresProxyEnv: HTTPS_PROXY may point at this very
// process (forward-proxy mode), so the transport New builds must never
// follow the environment's proxy variables.
func TestDefaultTransportIgnoresProxyEnv(t *testing.T) {
	h := newHarness(t, nil, nil)
	tr, ok := h.p.core.base.(*http.Transport)
	if !ok {
		t.Fatalf("default transport is %T, want *http.Transport", h.p.core.base)
	}
	if tr.Proxy != nil {
		t.Errorf("default transport has a Proxy func; it would follow HTTPS_PROXY")
	}
	if !tr.ForceAttemptHTTP2 || !tr.DisableCompression {
		t.Errorf("ForceAttemptHTTP2 %v DisableCompression %v, want both", tr.ForceAttemptHTTP2, tr.DisableCompression)
	}
}

// TestTransportSpeaksHTTP2 reaches a TLS upstream with HTTP/2 through the
// proxy's own transport: its custom dialer would turn HTTP/2 off unless it
// is forced on.
func TestTransportSpeaksHTTP2(t *testing.T) {
	var proto atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(int32(r.ProtoMajor))
		writeEnvelope(w, 0)
	}))
	up.EnableHTTP2 = true
	up.StartTLS()
	defer up.Close()
	tr := newTransport(MaxUpstreamConns)
	defer tr.CloseIdleConnections()
	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())
	tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	h := newHarness(t, nil, func(c *config.Config, o *Options) {
		c.Upstream.BaseURL = up.URL
		o.Transport = tr
	})
	w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if got := proto.Load(); got != 2 {
		t.Errorf("upstream saw HTTP/%d, want HTTP/2", got)
	}
}
