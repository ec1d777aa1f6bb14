package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Shape is one kind of request the load generator sends.
type Shape struct {
	Name   string
	method string
	target string // path and query
	header http.Header
	body   []byte
}

// shapes are the three requests the issue names: the advertiser in the
// query, in a 4 KiB JSON body, and the credential named by header.
var shapes = []Shape{
	{Name: "GET advertiser_id", method: http.MethodGet, target: getPath + "?advertiser_id=" + advertiserID},
	{Name: "POST 4 KiB JSON", method: http.MethodPost, target: postPath,
		header: http.Header{"Content-Type": {"application/json"}}, body: jsonBody(4 << 10)},
	{Name: "GET header", method: http.MethodGet, target: getPath + "?page=1",
		header: http.Header{"X-Tiktok-Credential": {credentialName}}},
}

// jsonBody is a JSON object of size bytes naming the advertiser first, as
// a campaign create would.
func jsonBody(size int) []byte {
	head := `{"advertiser_id":"` + advertiserID + `","campaign_name":"bench","objective_type":"TRAFFIC","pad":"`
	tail := `"}`
	return []byte(head + strings.Repeat("x", size-len(head)-len(tail)) + tail)
}

// newClient is a keep-alive client for one target with room for conns
// idle connections; it never asks for compression, so bodies pass as sent.
func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			DisableCompression:  true,
		},
	}
}

// outcome is what a run of the load generator saw.
type outcome struct {
	requests int
	errors   int
	firstErr error
	elapsed  time.Duration
	lat      []time.Duration
	// wroteAtGate is, for a burst, how many requests were written when
	// written was called.
	wroteAtGate int
	// answers counts a burst's answers by kind (answerKind).
	answers map[string]int
}

// answerError is an answer other than HTTP 200 with envelope code 0.
type answerError struct {
	status   int
	proxyErr string // X-TikTok-Auth-Proxy-Error
	body     []byte
}

func (e *answerError) Error() string {
	return fmt.Sprintf("bench: HTTP %d: %.120s", e.status, e.body)
}

// answerKind names what err says about an answer: "ok", "HTTP 503
// 90013" (status and proxy error), or "no answer".
func answerKind(err error) string {
	var ae *answerError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &ae) && ae.proxyErr != "":
		return fmt.Sprintf("HTTP %d %s", ae.status, ae.proxyErr)
	case errors.As(err, &ae):
		return fmt.Sprintf("HTTP %d", ae.status)
	}
	return "no answer"
}

// drive runs a closed loop: conc workers each send sh to base, wait for
// the whole answer and send the next, until dur has passed or max requests
// have been sent. An answer other than HTTP 200 with envelope code 0 is an
// error.
func drive(ctx context.Context, client *http.Client, base string, sh Shape, conc int, dur time.Duration, max int) outcome {
	ctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	var (
		sent     atomic.Int64
		mu       sync.Mutex
		out      outcome
		wg       sync.WaitGroup
		deadline = time.Now().Add(dur)
	)
	start := time.Now()
	for range conc {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1024)
			var buf bytes.Buffer
			var errs int
			var firstErr error
			for time.Now().Before(deadline) && sent.Add(1) <= int64(max) {
				t0 := time.Now()
				err := send(ctx, client, base, sh, &buf)
				lat = append(lat, time.Since(t0))
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			out.lat = append(out.lat, lat...)
			out.errors += errs
			if out.firstErr == nil {
				out.firstErr = firstErr
			}
		})
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	out.requests = len(out.lat)
	return out
}

// send sends one request of shape sh and reads the whole answer into buf;
// an answer other than HTTP 200 with envelope code 0 is an error.
func send(ctx context.Context, client *http.Client, base string, sh Shape, buf *bytes.Buffer) error {
	var body io.Reader
	if sh.body != nil {
		body = bytes.NewReader(sh.body)
	}
	req, err := http.NewRequestWithContext(ctx, sh.method, base+sh.target, body)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	for k, v := range sh.header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return fmt.Errorf("bench: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(buf.Bytes(), []byte(`{"code":0,`)) {
		return &answerError{status: resp.StatusCode, proxyErr: resp.Header.Get("X-Tiktok-Auth-Proxy-Error"),
			body: bytes.Clone(buf.Bytes()[:min(buf.Len(), 200)])}
	}
	return nil
}

// burst sends n requests of sh at once, each on its own connection, calls
// written once every request has been written or hold has passed since
// the first was, whichever is sooner, then waits for every answer.
func burst(ctx context.Context, base string, sh Shape, n int, hold time.Duration, written func()) outcome {
	// Each connection closes after its answer, so the target's file
	// descriptors are held only by requests in flight.
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		Proxy: nil, DisableCompression: true, DisableKeepAlives: true,
	}}
	defer client.CloseIdleConnections()
	var (
		wrote      atomic.Int64
		firstWrote = make(chan struct{})
		allWrote   = make(chan struct{})
		mu         sync.Mutex
		out        = outcome{answers: map[string]int{}}
		wg         sync.WaitGroup
		release    = make(chan struct{})
	)
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
		switch wrote.Add(1) {
		case 1:
			close(firstWrote)
			if n == 1 {
				close(allWrote)
			}
		case int64(n):
			close(allWrote)
		}
	}}
	tctx := httptrace.WithClientTrace(ctx, trace)
	start := time.Now()
	for range n {
		wg.Go(func() {
			<-release
			var buf bytes.Buffer
			t0 := time.Now()
			err := send(tctx, client, base, sh, &buf)
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			out.lat = append(out.lat, d)
			out.answers[answerKind(err)]++
			if err != nil {
				out.errors++
				if out.firstErr == nil {
					out.firstErr = err
				}
			}
		})
	}
	close(release)
	select {
	case <-firstWrote:
	case <-ctx.Done():
	}
	select {
	case <-allWrote:
	case <-time.After(hold):
	case <-ctx.Done():
	}
	wroteAtGate := int(wrote.Load())
	written()
	wg.Wait()
	out.elapsed = time.Since(start)
	out.requests = len(out.lat)
	out.wroteAtGate = wroteAtGate
	return out
}

// percentile returns the q-quantile (0..1) of sorted latencies.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)) + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// latencies sorts lat and returns its p50, p99 and p99.9.
func latencies(lat []time.Duration) (p50, p99, p999 time.Duration) {
	slices.Sort(lat)
	return percentile(lat, 0.5), percentile(lat, 0.99), percentile(lat, 0.999)
}
