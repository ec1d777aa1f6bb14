package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// TestMultipartStreams sends an upload much larger than max_inspect_bytes
// whose advertiser_id comes first. The upstream must receive the start of
// the body (all but the byte the proxy holds back until the check of the
// upload's later parts is done) before the client has written the rest: a
// proxy that held the upload in memory would wait for the end, and the
// handshake would fail.
func TestMultipartStreams(t *testing.T) {
	h := newHarness(t, nil, nil)
	prefix := "--B\r\nContent-Disposition: form-data; name=\"advertiser_id\"\r\n\r\n" + advOther + "\r\n" +
		"--B\r\nContent-Disposition: form-data; name=\"image_file\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n" +
		strings.Repeat("a", 200)
	rest := strings.Repeat("b", 64*int(h.p.core.maxInspect)) + "\r\n--B--\r\n"
	want := sha256.Sum256([]byte(prefix + rest))

	gotPrefix := make(chan struct{})
	type result struct {
		sum   [32]byte
		token string
	}
	results := make(chan result, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hash := sha256.New()
		if _, err := io.CopyN(hash, r.Body, int64(len(prefix)-1)); err != nil {
			t.Errorf("upstream reading prefix: %v", err)
			return
		}
		close(gotPrefix)
		if _, err := io.Copy(hash, r.Body); err != nil {
			t.Errorf("upstream reading rest: %v", err)
		}
		var sum [32]byte
		copy(sum[:], hash.Sum(nil))
		results <- result{sum, r.Header.Get("Access-Token")}
		writeEnvelope(w, 0)
	}))
	defer up.Close()
	h.p.core.target, _ = url.Parse(up.URL)
	srv := httptest.NewServer(h.p)
	defer srv.Close()

	pr, pw := io.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/open_api/v1.3/file/image/ad/upload/", pr)
	req.Header.Set("Content-Type", "multipart/form-data; boundary=B")
	respc := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("client: %v", err)
			respc <- nil
			return
		}
		respc <- resp
	}()
	if _, err := io.WriteString(pw, prefix); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gotPrefix:
	case <-time.After(10 * time.Second):
		t.Fatal("upstream did not receive the start of the upload before its end was sent: the proxy buffers uploads")
	}
	if _, err := io.Copy(pw, strings.NewReader(rest)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	resp := <-respc
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	res := <-results
	if res.sum != want {
		t.Errorf("upload changed on the way")
	}
	if res.token != "tok-other" || resp.Header.Get(HeaderCredential) != "other" {
		t.Errorf("token %q credential %q, want other's", res.token, resp.Header.Get(HeaderCredential))
	}
}

// TestJSONBodyChunked covers a JSON body of unknown length: it is read up
// to the limit, forwarded byte-for-byte, and can be replayed.
func TestJSONBodyChunked(t *testing.T) {
	h := newHarness(t, nil, nil)
	body := `{"advertiser_id": ` + advOther + ` , "x": [1, 2.50, "é"]}`
	r := httptest.NewRequest(http.MethodPost, "/open_api/v1.3/campaign/create/", io.MultiReader(strings.NewReader(body)))
	r.ContentLength = -1
	r.Header.Set("Content-Type", "application/json")
	if w := h.do(r); w.Code != 200 || w.Header().Get(HeaderCredential) != "other" {
		t.Fatalf("status %d credential %q", w.Code, w.Header().Get(HeaderCredential))
	}
	if got := h.up.requests()[0].Body; !bytes.Equal(got, []byte(body)) {
		t.Errorf("body = %q, want %q", got, body)
	}
}

// TestStalledBody sends a body that never completes (Content-Length 100,
// then 1 byte) over a real connection: upstream.timeout after the request
// arrived, the proxy answers 408 / 90011 wherever it was reading the body,
// and a stalled client is no breaker failure.
func TestStalledBody(t *testing.T) {
	tests := []struct {
		name    string
		headers string
		cred    string // "" while selection still reads the body
		// timeout is upstream.timeout. Selection reads the body under the
		// read deadline, so a stall there is a 408 however late it is met;
		// the transport must first reach TikTok and start on the body, or
		// the deadline is TikTok's.
		timeout time.Duration
	}{
		{name: "JSON read for advertiser_id", headers: "Content-Type: application/json\r\n", timeout: 200 * time.Millisecond},
		{name: "multipart read for advertiser_id", headers: "Content-Type: multipart/form-data; boundary=B\r\n", timeout: 200 * time.Millisecond},
		{name: "streamed to TikTok", headers: "Content-Type: application/octet-stream\r\nX-TikTok-Credential: main\r\n", cred: "main", timeout: slowTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, func(c *config.Config, _ *Options) { c.Upstream.Timeout = tc.timeout })
			srv := httptest.NewServer(h.p)
			defer srv.Close()
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// Only a safety net: the proxy must answer long before.
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			req := "POST /open_api/v1.3/file/video/ad/upload/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n" + tc.headers + "\r\n-"
			if _, err := io.WriteString(conn, req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer to a stalled body: %v", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get(HeaderError) != "90011" ||
				!strings.Contains(string(body), "the request body did not finish arriving within upstream.timeout ("+tc.timeout.String()+"); send it faster or raise upstream.timeout for large uploads") {
				t.Errorf("got %d %s %s, want 408 / 90011", resp.StatusCode, resp.Header.Get(HeaderError), body)
			}
			if got := resp.Header.Get(HeaderCredential); got != tc.cred {
				t.Errorf("%s = %q, want %q (where the stall was met)", HeaderCredential, got, tc.cred)
			}
			if c := h.p.core.breakers["main"].cb.Counts(); c.TotalFailures != 0 {
				t.Errorf("breaker counted %d failures for a stalled client", c.TotalFailures)
			}
		})
	}
}

// TestResponseCutOff: a report TikTok stops sending half-way. When
// upstream.timeout cuts it the request is a 504 in the log and metrics and
// a breaker failure; when TikTok's connection breaks it is a 502; when the
// client hangs up it is a 499 and no failure.
func TestResponseCutOff(t *testing.T) {
	const first = `{"code":0,"data":{"rows":[`
	tests := []struct {
		name    string
		timeout time.Duration
		end     func(w http.ResponseWriter, r *http.Request)
		hangUp  bool
		status  float64
		warn    string
		failure uint32
	}{
		{name: "upstream timeout", timeout: slowTimeout, end: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			status: 504, warn: "upstream response cut off by upstream.timeout", failure: 1},
		{name: "upstream broke off", timeout: 10 * time.Second, end: func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		}, status: 502, warn: "upstream response broke off", failure: 1},
		{name: "client hung up", timeout: 10 * time.Second, end: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			hangUp: true, status: 499},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, first)
				w.(http.Flusher).Flush()
				tc.end(w, r)
			}, func(c *config.Config, _ *Options) { c.Upstream.Timeout = tc.timeout })
			resp, cancel := h.serveGet(t, 10*time.Second)
			got := make([]byte, len(first))
			if _, err := io.ReadFull(resp.Body, got); err != nil || resp.StatusCode != 200 {
				t.Fatalf("start of the report: %d %v", resp.StatusCode, err)
			}
			if tc.hangUp {
				cancel()
			} else if _, err := io.ReadAll(resp.Body); err == nil {
				t.Errorf("the cut-off body ended cleanly; the client cannot tell it from a whole report")
			}
			eventually(t, "the request's log line", func() bool { return len(h.logLines(t, "request")) == 1 })
			line := h.logLines(t, "request")[0]
			if line["status"] != tc.status || line["request_id"] != resp.Header.Get(HeaderRequestID) {
				t.Errorf("log line %v, want status %v and the response's request id", line, tc.status)
			}
			if v := testutil.ToFloat64(h.m.Requests.WithLabelValues("main", "GET", strconv.Itoa(int(tc.status)))); v != 1 {
				t.Errorf("requests_total{status=%v} = %v, want 1", tc.status, v)
			}
			if tc.warn != "" {
				warns := h.logLines(t, tc.warn)
				if len(warns) != 1 || warns[0]["level"] != "WARN" || warns[0]["credential"] != "main" ||
					warns[0]["request_id"] != resp.Header.Get(HeaderRequestID) {
					t.Errorf("warnings %q: %v", tc.warn, warns)
				}
			}
			if c := h.p.core.breakers["main"].cb.Counts(); c.TotalFailures != tc.failure {
				t.Errorf("breaker failures = %d, want %d", c.TotalFailures, tc.failure)
			}
		})
	}
}

// TestSlowClient: a healthy TikTok sends a big report as fast as the proxy
// takes it, and the client stops reading until upstream.timeout has cut
// the exchange (TikTok's side of it closes). The copy was waiting on the
// client, not on TikTok: no breaker failure, a 408 in the log and metrics,
// and a warning that blames the client.
func TestSlowClient(t *testing.T) {
	cut := make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		defer close(cut)
		w.Header().Set("Content-Type", "application/json")
		chunk := []byte(strings.Repeat("x", 8<<20))
		if _, err := io.WriteString(w, `{"code":0,"data":"`); err != nil {
			return
		}
		// More than every socket buffer between here and the client holds,
		// so a client that does not read stops the copy.
		for range 8 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		t.Errorf("TikTok sent 64 MB to a client that reads nothing")
	}, func(c *config.Config, _ *Options) { c.Upstream.Timeout = slowTimeout })
	resp, _ := h.serveGet(t, 20*time.Second)
	waitFor(t, cut, "upstream.timeout to close TikTok's side of the exchange")
	if n, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Errorf("the client read %d bytes and a clean end: it cannot tell the report was cut", n)
	}
	eventually(t, "the request's log line", func() bool { return len(h.logLines(t, "request")) == 1 })
	line := h.logLines(t, "request")[0]
	if line["status"] != 408.0 || line["proxy_error"] != nil {
		t.Errorf("log line %v, want status 408 and no proxy error", line)
	}
	if v := testutil.ToFloat64(h.m.Requests.WithLabelValues("main", "GET", "408")); v != 1 {
		t.Errorf("requests_total{status=408} = %v, want 1", v)
	}
	warns := h.logLines(t, "client too slow: response not delivered within upstream.timeout")
	if len(warns) != 1 || warns[0]["level"] != "WARN" || warns[0]["request_id"] != resp.Header.Get(HeaderRequestID) {
		t.Errorf("client-too-slow warnings: %v", warns)
	}
	if n := len(h.logLines(t, "upstream response cut off by upstream.timeout")); n != 0 {
		t.Errorf("%d warnings blame TikTok for a slow client", n)
	}
	if c := h.p.core.breakers["main"].cb.Counts(); c.TotalFailures != 0 {
		t.Errorf("breaker counted %d failures for a slow client", c.TotalFailures)
	}
}

// deadlineRecorder is a ResponseRecorder that records the read deadlines
// the handler sets through http.ResponseController.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	mu  sync.Mutex
	set []time.Time
}

func (d *deadlineRecorder) SetReadDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.set = append(d.set, t)
	return nil
}

// TestBodyReadDeadline: a request with a body gets one read deadline,
// upstream.timeout after it arrived, whoever reads the body and however it
// ends; a request without one gets none. net/http clears it at the body's
// EOF (TestTimeoutIsBreakerFailure shows the connection survives).
func TestBodyReadDeadline(t *testing.T) {
	tests := []struct {
		name string
		req  func() *http.Request
	}{
		{name: "no body", req: func() *http.Request { return httptest.NewRequest(http.MethodGet, campaignGet, nil) }},
		{name: "JSON read by selection", req: func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/open_api/v1.3/campaign/create/", strings.NewReader(`{"advertiser_id":"`+advMain+`"}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		}},
		{name: "streamed by the transport", req: func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/open_api/v1.3/file/video/ad/upload/", strings.NewReader(strings.Repeat("v", 5000)))
			r.Header.Set("Content-Type", "application/octet-stream")
			return r
		}},
		{name: "body cut short", req: func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/open_api/v1.3/campaign/create/", io.MultiReader(strings.NewReader("{"), iotest.ErrReader(io.ErrUnexpectedEOF)))
			r.Header.Set("Content-Type", "application/json")
			return r
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, nil)
			w := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
			r := tc.req()
			before := time.Now()
			h.p.ServeHTTP(w, r)
			w.mu.Lock()
			defer w.mu.Unlock()
			if r.Body == http.NoBody {
				if len(w.set) != 0 {
					t.Errorf("read deadlines %v set for a request without a body", w.set)
				}
				return
			}
			if len(w.set) != 1 || w.set[0].Before(before.Add(h.p.core.timeout)) || w.set[0].After(time.Now().Add(h.p.core.timeout)) {
				t.Errorf("read deadlines %v, want one, upstream.timeout (%s) from arrival", w.set, h.p.core.timeout)
			}
		})
	}
}
