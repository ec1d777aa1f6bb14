package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// apiHost is the host scripts hard-code; the forward proxy intercepts it
// and sends what it intercepts to the simulator (upstream.base_url). It is
// never resolved: clients send it to the proxy in CONNECT.
const apiHost = "business-api.tiktok.com"

// forwardProxy is a running serve with forward_proxy on, its CA made by
// the binary's own `ca` command.
type forwardProxy struct {
	*proxy
	Addr   string // the forward listener, host:port
	CACert string
	roots  *x509.CertPool
}

func startForward(t *testing.T, s *sim, pc proxyConfig) *forwardProxy {
	t.Helper()
	caDir := filepath.Join(t.TempDir(), "ca")
	if code, out, errOut := runBounded(t, nil, 30*time.Second, "ca", "--out", caDir); code != 0 {
		t.Fatalf("ca: exit %d: %s %s", code, out, errOut)
	}
	fp := &forwardProxy{Addr: freeAddr(t), CACert: filepath.Join(caDir, "ca.crt"), roots: x509.NewCertPool()}
	pem, err := os.ReadFile(fp.CACert)
	if err != nil || !fp.roots.AppendCertsFromPEM(pem) {
		t.Fatalf("read %s: %v", fp.CACert, err)
	}
	pc.Extra += fmt.Sprintf("forward_proxy:\n  listen: %s\n  ca_cert: %s\n  ca_key: %s\n", fp.Addr, fp.CACert, filepath.Join(caDir, "ca.key"))
	fp.proxy = startProxy(t, s, pc)
	return fp
}

// client is a Go client using the forward proxy (with user in its URL),
// trusting roots.
func (fp *forwardProxy) client(t *testing.T, user *url.Userinfo, roots *x509.CertPool) *http.Client {
	t.Helper()
	pu := &url.URL{Scheme: "http", Host: fp.Addr, User: user}
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// get sends a request with c and returns status, headers and body.
func get(t *testing.T, c *http.Client, method, rawURL string, header http.Header, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// connect sends a raw CONNECT for hostport with extra header lines and
// returns the proxy's answer.
func (fp *forwardProxy) connect(t *testing.T, hostport, headers string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fp.Addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", hostport, hostport, headers)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	if resp.StatusCode != http.StatusOK {
		b, _ = io.ReadAll(resp.Body)
	}
	return resp, b
}

// wantClientsReleased checks that every connection the forward proxy's
// clients opened gave its slot of the client bound back once they closed
// (tiktok_auth_proxy_client_connections back at 0): a tunnel keeping its
// slot would shrink the bound for good, and enough of them would stop the
// proxy accepting anyone.
func (fp *forwardProxy) wantClientsReleased(t *testing.T, clients ...*http.Client) {
	t.Helper()
	// First the clients' idle keep-alive connections are counted: a bound
	// that never saw the forward proxy's connections would read 0 anyway.
	if v, _ := metricValue(t, fp.proxy, "tiktok_auth_proxy_client_connections"); v == 0 {
		t.Errorf("client_connections is 0 while the clients keep their connections open")
	}
	for _, c := range append(clients, plainClient) {
		c.CloseIdleConnections()
	}
	eventually(t, 10*time.Second, "every client connection's slot given back", func() bool {
		v, ok := metricValue(t, fp.proxy, "tiktok_auth_proxy_client_connections")
		return ok && v == 0
	})
}

func wantTikTokApp(t *testing.T, s *sim, what, app string) {
	t.Helper()
	if r := s.lastRequest(t); r.AppID != app || !r.TokenKnown {
		t.Errorf("%s: TikTok saw app %q (token known %v), want %s's token", what, r.AppID, r.TokenKnown, app)
	}
}

// Scripts hard-coding https://business-api.tiktok.com reach the simulator
// through HTTPS_PROXY with the right credential's token: curl, Python
// requests and Go, with selection by advertiser, header and JSON body.
func TestForwardProxyClients(t *testing.T) {
	s := startSim(t)
	fp := startForward(t, s, proxyConfig{Credentials: twoCredentials})
	fp.authorize(t, s, "main", appMain, advMain1)
	fp.authorize(t, s, "other", appOther, advOther)
	if out := fp.p.out.String(); !strings.Contains(out, `"forward_proxy":"http://`+fp.Addr+`"`) || !strings.Contains(out, `"proxy":"`+fp.URL+`"`) {
		t.Errorf("the start line does not name both listeners:\n%s", out)
	}
	api := "https://" + apiHost + "/open_api/v1.3"

	t.Run("curl", func(t *testing.T) {
		out, err := exec.CommandContext(ctxTimeout(t, 30*time.Second), "curl", "-sS", "--fail-with-body",
			"--proxy", "http://"+fp.Addr, "--cacert", fp.CACert, api+"/campaign/get/?advertiser_id="+advMain1).CombinedOutput()
		if err != nil || decodeEnvelope(t, out).Code != 0 {
			t.Fatalf("curl: %v: %s", err, out)
		}
		wantTikTokApp(t, s, "curl", appMain)
	})

	t.Run("python requests", func(t *testing.T) {
		script := `import os, requests
r = requests.get(os.environ["API"] + "/campaign/get/", params={"advertiser_id": os.environ["ADV"]}, timeout=30)
print(r.status_code)
print(r.text)
`
		cmd := exec.CommandContext(ctxTimeout(t, 30*time.Second), "python3", "-c", script)
		cmd.Env = append(os.Environ(), "HTTPS_PROXY=http://"+fp.Addr, "REQUESTS_CA_BUNDLE="+fp.CACert,
			"NO_PROXY=", "no_proxy=", "API="+api, "ADV="+advOther)
		out, err := cmd.CombinedOutput()
		status, body, _ := strings.Cut(string(out), "\n")
		if err != nil || status != "200" || decodeEnvelope(t, []byte(body)).Code != 0 {
			t.Fatalf("python: %v: %s", err, out)
		}
		wantTikTokApp(t, s, "python requests", appOther)
	})

	c := fp.client(t, nil, fp.roots)
	t.Run("go, header selection", func(t *testing.T) {
		// main is the default; the header names other.
		status, h, b := get(t, c, "GET", api+"/bc/get/", http.Header{"X-TikTok-Credential": {"other"}}, "")
		if status != 200 || decodeEnvelope(t, b).Code != 0 || h.Get("X-TikTok-Auth-Proxy-Credential") != "other" {
			t.Fatalf("HTTP %d %v %s", status, h, b)
		}
		wantTikTokApp(t, s, "header selection", appOther)
	})
	t.Run("go, JSON body selection", func(t *testing.T) {
		body := `{"advertiser_id": "` + advOther + `", "campaign_name": "forward"}`
		status, _, b := get(t, c, "POST", api+"/campaign/create/", http.Header{"Content-Type": {"application/json"}}, body)
		if status != 200 || decodeEnvelope(t, b).Code != 0 {
			t.Fatalf("HTTP %d %s", status, b)
		}
		wantTikTokApp(t, s, "JSON body selection", appOther)
		if r := s.lastRequest(t); r.BodyBytes != int64(len(body)) {
			t.Errorf("TikTok got %d body bytes, want %d", r.BodyBytes, len(body))
		}
	})
	t.Run("go, hop-by-hop headers stripped", func(t *testing.T) {
		// A header the Connection header names is the hop's own: the
		// selection header named there must not reach the core, so the
		// default credential serves.
		h := http.Header{"Connection": {"X-TikTok-Credential"}, "X-TikTok-Credential": {"other"}}
		status, rh, b := get(t, c, "GET", api+"/bc/get/", h, "")
		if status != 200 || rh.Get("X-TikTok-Auth-Proxy-Credential") != "main" {
			t.Fatalf("HTTP %d, credential %q: %s", status, rh.Get("X-TikTok-Auth-Proxy-Credential"), b)
		}
		wantTikTokApp(t, s, "hop-by-hop", appMain)
	})
	fp.wantClientsReleased(t, c)
}

// Never an open proxy, and never trusted without the CA: other hosts are
// refused, a client without the CA fails TLS, and nothing reaches TikTok.
func TestForwardProxyRefusals(t *testing.T) {
	s := startSim(t)
	fp := startForward(t, s, proxyConfig{Credentials: twoCredentials})
	fp.authorize(t, s, "main", appMain, advMain1)
	before := len(s.requests(t))

	for _, hostport := range []string{"example.com:443", "127.0.0.1:443", apiHost + ":8443"} {
		resp, b := fp.connect(t, hostport, "")
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("CONNECT %s: %s, want 403", hostport, resp.Status)
			continue
		}
		wantProxyError(t, resp.StatusCode, resp.Header, b, 403, 90009, false)
	}
	plainHTTP := fp.client(t, nil, nil)
	status, _, b := get(t, plainHTTP, "GET", "http://example.com"+campaignGet+"?advertiser_id="+advMain1, nil, "")
	if status != http.StatusForbidden || decodeEnvelope(t, b).Code != 90009 {
		t.Errorf("plain HTTP for example.com: HTTP %d %s", status, b)
	}

	untrusting := fp.client(t, nil, x509.NewCertPool())
	_, err := untrusting.Get("https://" + apiHost + campaignGet + "?advertiser_id=" + advMain1)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("Go client without the CA: %v, want an unknown-authority TLS failure", err)
	}
	// curl trusting another CA (one ca made for someone else).
	otherCA := filepath.Join(t.TempDir(), "other")
	if code, out, errOut := runBounded(t, nil, 30*time.Second, "ca", "--out", otherCA); code != 0 {
		t.Fatalf("ca: exit %d: %s %s", code, out, errOut)
	}
	out, err := exec.CommandContext(ctxTimeout(t, 30*time.Second), "curl", "-sS", "--proxy", "http://"+fp.Addr,
		"--cacert", filepath.Join(otherCA, "ca.crt"), "https://"+apiHost+campaignGet+"?advertiser_id="+advMain1).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 60 {
		t.Errorf("curl trusting another CA: %v (want exit 60, certificate problem): %s", err, out)
	}
	if after := len(s.requests(t)); after != before {
		t.Errorf("%d refused requests reached TikTok", after-before)
	}
	fp.wantClientsReleased(t, plainHTTP, untrusting)
}

// With clients configured, Proxy-Authorization is checked on CONNECT, and
// the client's credentials bind every request of its tunnel.
func TestForwardProxyClientAuthentication(t *testing.T) {
	s := startSim(t)
	fp := startForward(t, s, proxyConfig{Credentials: twoCredentials, Extra: `clients:
  - name: etl
    token: e2e-client-token-etl-77a1
    credentials: [main]
`})
	fp.authorize(t, s, "main", appMain, advMain1)
	fp.authorize(t, s, "other", appOther, advOther)
	for name, header := range map[string]string{
		"missing": "",
		"wrong":   "Proxy-Authorization: Bearer e2e-wrong-token\r\n",
	} {
		resp, b := fp.connect(t, apiHost+":443", header)
		if resp.StatusCode != http.StatusProxyAuthRequired || resp.Header.Get("Proxy-Authenticate") == "" {
			t.Errorf("%s token: %s, Proxy-Authenticate %q; want 407 with a challenge", name, resp.Status, resp.Header.Get("Proxy-Authenticate"))
		}
		if e := decodeEnvelope(t, b); e.Code != 90010 {
			t.Errorf("%s token: code %d, want 90010", name, e.Code)
		}
	}

	c := fp.client(t, url.UserPassword("etl", "e2e-client-token-etl-77a1"), fp.roots)
	api := "https://" + apiHost + campaignGet + "?advertiser_id="
	if status, _, b := get(t, c, "GET", api+advMain1, nil, ""); status != 200 || decodeEnvelope(t, b).Code != 0 {
		t.Fatalf("allowed client: HTTP %d %s", status, b)
	}
	wantTikTokApp(t, s, "allowed client", appMain)
	status, h, b := get(t, c, "GET", api+advOther, nil, "")
	wantProxyError(t, status, h, b, 403, 90010, false)
}

// A report streamed by TikTok reaches the client while TikTok is still
// sending it; and a tunnelled request is counted and logged exactly as the
// same request sent to the reverse listener.
func TestForwardProxyStreamAndMetrics(t *testing.T) {
	s := startSim(t)
	fp := startForward(t, s, proxyConfig{Credentials: twoCredentials})
	fp.authorize(t, s, "main", appMain, advMain1)
	c := fp.client(t, nil, fp.roots)

	t.Run("stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		resp, _ := startTunnelledDownload(t, ctx, c, 256<<20)
		defer resp.Body.Close()
		// The first 64 KiB arrived while TikTok is still sending the rest
		// (the client reads no more, so it cannot finish): a proxy holding
		// the body back until the end would have sent nothing yet.
		if n := len(s.inflight(t)); n != 1 {
			t.Errorf("%d requests in flight at TikTok after the first 64 KiB arrived, want the download", n)
		}
	})

	t.Run("metrics and log line", func(t *testing.T) {
		series := `tiktok_auth_proxy_requests_total{credential="main",method="GET",status="200"}`
		count := func() (float64, int) {
			v, _ := metricValue(t, fp.proxy, series)
			return v, strings.Count(fp.p.out.String(), `"msg":"request"`)
		}
		// The stream above is counted and logged once its handler ends.
		eventually(t, 20*time.Second, "the stream's log line", func() bool {
			return strings.Contains(fp.p.out.String(), `"path":"`+downloadPath+`"`)
		})
		// A request is counted and logged as its handler ends, just after
		// the client has the whole response: wait for each to land.
		next := func(what string, m, l float64) {
			t.Helper()
			eventually(t, 20*time.Second, what+" to be counted and logged", func() bool {
				mv, lv := count()
				return mv == m && float64(lv) == l
			})
		}
		path := campaignGet + "?advertiser_id=" + advMain1
		m0, l0 := count()
		if status, _, b := httpDo(t, "GET", fp.URL+path, nil, nil); status != 200 {
			t.Fatalf("direct: HTTP %d %s", status, b)
		}
		next("the direct request", m0+1, float64(l0+1))
		if status, _, b := get(t, c, "GET", "https://"+apiHost+path, nil, ""); status != 200 {
			t.Fatalf("tunnelled: HTTP %d %s", status, b)
		}
		next("the tunnelled request", m0+2, float64(l0+2))
		// One more direct request: had the tunnelled one been counted
		// twice, the total would now be past +3.
		if status, _, b := httpDo(t, "GET", fp.URL+path, nil, nil); status != 200 {
			t.Fatalf("direct: HTTP %d %s", status, b)
		}
		next("the second direct request", m0+3, float64(l0+3))
	})
}

// startTunnelledDownload asks TikTok, through the forward proxy client c,
// for a report of size bytes and reads only its first 64 KiB, which it
// returns with the response whose body holds the rest.
func startTunnelledDownload(t *testing.T, ctx context.Context, c *http.Client, size int) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("https://%s%s?advertiser_id=%s&size=%d", apiHost, downloadPath, advMain1, size), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 64<<10)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		resp.Body.Close()
		t.Fatal(err)
	}
	return resp, first
}

// SIGTERM lets a request inside a tunnel finish: tunnels run on hijacked
// connections, which the listener's graceful shutdown alone would not wait
// for. The download is held mid-way by the client reading no further, the
// proxy is told to stop, then the client reads the rest.
func TestForwardProxyShutdownFinishesTunnels(t *testing.T) {
	s := startSim(t)
	fp := startForward(t, s, proxyConfig{Credentials: twoCredentials})
	fp.authorize(t, s, "main", appMain, advMain1)
	const size = 8 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, first := startTunnelledDownload(t, ctx, fp.client(t, nil, fp.roots), size)
	defer resp.Body.Close()
	if err := fp.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the proxy to start shutting down", func() bool {
		return strings.Contains(fp.p.out.String(), "shutting down")
	})
	rest, err := io.Copy(io.Discard, resp.Body)
	if err != nil || int64(len(first))+rest != size {
		t.Fatalf("read %d of %d bytes after SIGTERM: %v", int64(len(first))+rest, size, err)
	}
	resp.Body.Close()
	select {
	case <-fp.p.done:
		if fp.p.err != nil {
			t.Errorf("serve exited with %v, want 0", fp.p.err)
		}
	case <-ctx.Done():
		t.Fatal("serve did not exit once the tunnelled download had finished")
	}
}

// A client that stops reading a long report but keeps its connection open
// holds its connection, its handler and its slot of the client bound (one
// for both listeners) no longer than upstream.timeout and the proxy's
// write grace: the proxy closes the connection and logs a 408 with a
// warning that blames the client, and the breaker counts nothing;
// through the proxy listener and through a forward-proxy tunnel alike.
func TestStalledClientsReleased(t *testing.T) {
	s := startSim(t)
	fp := startForward(t, s, proxyConfig{Credentials: twoCredentials, Timeout: "2s",
		Extra: "breaker:\n  consecutive_failures: 1\n"})
	fp.authorize(t, s, "main", appMain, advMain1)
	// Far more than every socket buffer between TikTok and the client
	// holds, and far more than 2 s can stream: the proxy's writes stop.
	report := fmt.Sprintf("%s?advertiser_id=%s&size=%d", downloadPath, advMain1, int64(50)<<30)
	stalled := func(t *testing.T, what string) {
		t.Helper()
		eventually(t, 30*time.Second, what+": the proxy to close the stalled client's connection", func() bool {
			v, ok := metricValue(t, fp.proxy, "tiktok_auth_proxy_client_connections")
			return ok && v == 0
		})
	}

	t.Run("proxy listener", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(fp.URL, "http://"), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", report, strings.TrimPrefix(fp.URL, "http://"))
		eventually(t, 10*time.Second, "the stalled download to hold a connection", func() bool {
			v, _ := metricValue(t, fp.proxy, "tiktok_auth_proxy_client_connections")
			return v == 1
		})
		stalled(t, "proxy listener")
	})

	t.Run("forward-proxy tunnel", func(t *testing.T) {
		c := fp.client(t, nil, fp.roots)
		// No client timeout: the client must not be the one to hang up.
		c.Timeout = 0
		resp, err := c.Get("https://" + apiHost + report)
		if err != nil {
			t.Fatal(err)
		}
		// Never read: the client's buffers fill and the proxy's writes stop.
		defer resp.Body.Close()
		eventually(t, 10*time.Second, "the stalled tunnel to hold a connection", func() bool {
			v, _ := metricValue(t, fp.proxy, "tiktok_auth_proxy_client_connections")
			return v == 1
		})
		stalled(t, "forward-proxy tunnel")
	})

	out := fp.p.out.String()
	if n := strings.Count(out, `"status":408`); n != 2 {
		t.Errorf("%d access lines with status 408, want one per stalled client:\n%s", n, out)
	}
	if n := strings.Count(out, "client too slow: response not delivered within upstream.timeout"); n != 2 {
		t.Errorf("%d client-too-slow warnings, want 2", n)
	}
	// With consecutive_failures: 1, a stalled client counted against
	// TikTok would have opened the breaker.
	if status, _, b := httpDo(t, "GET", fp.URL+campaignGet+"?advertiser_id="+advMain1, nil, nil); status != 200 {
		t.Errorf("after two stalled clients: HTTP %d %s", status, b)
	}
}
