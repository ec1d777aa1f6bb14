package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktoksim"
)

// procKB reads a VmRSS / VmHWM style field (kB) of a process.
func procKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// A 200 MiB report of unknown length streams through with the proxy's
// memory staying flat, byte for byte.
func TestLargeReportStreamsWithFlatMemory(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials})
	px.authorize(t, s, "main", appMain, advMain1)
	const size = 200 << 20
	pid := px.p.cmd.Process.Pid
	before := procKB(t, pid, "VmRSS")

	resp, err := plainClient.Get(fmt.Sprintf("%s%s?advertiser_id=%s&size=%d", px.URL, downloadPath, advMain1, size))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != -1 {
		t.Fatalf("HTTP %d, Content-Length %d: want 200 with unknown length", resp.StatusCode, resp.ContentLength)
	}
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	if _, err := io.Copy(want, tiktoksim.NewReportReader(size)); err != nil {
		t.Fatal(err)
	}
	if n != size || hex.EncodeToString(got.Sum(nil)) != hex.EncodeToString(want.Sum(nil)) {
		t.Fatalf("received %d bytes (sha256 match %v), want the simulator's %d bytes",
			n, hex.EncodeToString(got.Sum(nil)) == hex.EncodeToString(want.Sum(nil)), size)
	}
	peak := procKB(t, pid, "VmHWM")
	growth := peak - before
	t.Logf("proxy RSS before %d KiB, peak %d KiB while streaming %d MiB: growth %d KiB (%.2f%% of the body)",
		before, peak, size>>20, growth, 100*float64(growth)/float64(size>>10))
	// Flat: the peak grows by a small fraction of the body (buffers and
	// GC headroom), never by the body itself.
	if growth > 48<<10 {
		t.Errorf("proxy memory grew %d KiB while streaming %d MiB: the body is being buffered", growth, size>>20)
	}
}

const downloadPath = "/open_api/v1.3/sim/report/download/"

// A client hanging up mid-download cancels the upstream call: the simulator
// sees its peer go away after sending a small part of the report. The
// request is recorded as 499, and it does not count as a TikTok failure.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials,
		Extra: "breaker:\n  consecutive_failures: 1\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	const size = int64(50) << 30
	resp, err := plainClient.Get(fmt.Sprintf("%s%s?advertiser_id=%s&size=%d", px.URL, downloadPath, advMain1, size))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The simulator records a download only when its handler ends: 50 GiB
	// take far longer than the deadline to stream, so a record within it
	// means the proxy hung up on TikTok too.
	eventually(t, 10*time.Second, "the simulator to see the download end", func() bool {
		return len(s.recordedTo(t, downloadPath)) > 0
	})
	r := s.recordedTo(t, downloadPath)[0]
	t.Logf("the simulator sent %d KiB of the %d GiB report before the proxy hung up", r.ResponseBytes>>10, size>>30)
	// What socket and proxy buffers hold is a few MiB; 256 MiB is far from
	// any buffering, and far below the report.
	if !r.ClientGone || r.ResponseBytes < 1<<20 || r.ResponseBytes > 256<<20 {
		t.Errorf("simulator recorded client_gone=%v after %d bytes; want the proxy to hang up after the 1 MiB read and well before 256 MiB",
			r.ClientGone, r.ResponseBytes)
	}
	eventually(t, 10*time.Second, "the proxy to record the hang-up as 499", func() bool {
		return strings.Contains(px.p.out.String(), `"status":499`)
	})
	// With consecutive_failures: 1, a hang-up counted as a failure would
	// have opened the breaker.
	status, _, b := httpDo(t, "GET", px.URL+campaignGet+"?advertiser_id="+advMain1, nil, nil)
	if status != 200 {
		t.Fatalf("after a client hang-up: HTTP %d %s", status, b)
	}
}

// A client hanging up while TikTok is slow to answer cancels the upstream
// call at once: the simulator sees its peer go away during the latency,
// long before the proxy's own upstream timeout would have ended it.
func TestClientHangUpDuringLatencyCancelsUpstream(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials, Timeout: "5m",
		Extra: "breaker:\n  consecutive_failures: 1\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	s.post(t, "/sim/fault", map[string]any{"latency": "2m", "count": 1, "path_prefix": campaignGet})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", px.URL+campaignGet+"?advertiser_id="+advMain1, nil)
		resp, err := plainClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	eventually(t, 10*time.Second, "the request to wait on TikTok's latency", func() bool {
		for _, r := range s.inflight(t) {
			if r.Path == campaignGet && r.Fault == "latency" {
				return true
			}
		}
		return false
	})
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the hung-up request got an answer")
	}
	// The latency is 2m and the upstream timeout 5m: a record within the
	// deadline can only come from the proxy cancelling its call.
	eventually(t, 10*time.Second, "the simulator to see the proxy hang up", func() bool {
		return len(s.recordedTo(t, campaignGet)) > 0
	})
	if r := s.recordedTo(t, campaignGet)[0]; !r.ClientGone || r.Fault != "latency" {
		t.Errorf("simulator recorded the slow request as client_gone=%v fault=%q, want the proxy's hang-up during the latency",
			r.ClientGone, r.Fault)
	}
	status, _, b := httpDo(t, "GET", px.URL+campaignGet+"?advertiser_id="+advMain1, nil, nil)
	if status != 200 || decodeEnvelope(t, b).Code != 0 {
		t.Fatalf("after a hang-up during latency (breaker must stay closed): HTTP %d %s", status, b)
	}
}

// Access tokens expire every few seconds while a script keeps calling:
// background refresh keeps every request succeeding, across several token
// expiries, without any request meeting an expired token or being retried.
func TestBackgroundRefreshAcrossExpiries(t *testing.T) {
	t.Parallel()
	// The proxy treats a token within a quarter of its lifetime (at most
	// 10s) of its expiry as expired, so refresh_before must exceed that for
	// the background refresh to come first; it is capped at half a
	// lifetime. 3s separate the refresh from the token's last use.
	const accessTTL, refreshBefore = 12 * time.Second, 6 * time.Second
	s := startSim(t)
	s.post(t, "/sim/config", map[string]string{"access_ttl": accessTTL.String()})
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials, Extra: "tokens:\n  refresh_before: " + refreshBefore.String() + "\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	api := px.URL + campaignGet + "?advertiser_id=" + advMain1

	began := time.Now()
	// No request is made yet, so this refresh can only come from the
	// background: a proxy refreshing on demand would pass the loop below
	// too.
	eventually(t, accessTTL, "a refresh with no request to trigger it", func() bool {
		return s.stats(t, appMain).RefreshCalls >= 1
	})

	// With a refresh about every refreshBefore, two lifetimes pass the
	// expiry of the first three tokens (the authorization's and two
	// refreshes'), while the script keeps using whatever the proxy holds.
	const lifetimes, wantRefreshes = 2, 3
	deadline := began.Add(lifetimes*accessTTL + 45*time.Second)
	// A script's pace; it keeps the request log well under the
	// simulator's 1000 entries.
	pace := time.NewTicker(100 * time.Millisecond)
	defer pace.Stop()
	requests := 0
	for time.Since(began) < lifetimes*accessTTL || s.stats(t, appMain).RefreshCalls < wantRefreshes {
		if time.Now().After(deadline) {
			t.Fatalf("only %d refreshes in %v", s.stats(t, appMain).RefreshCalls, time.Since(began).Round(time.Second))
		}
		status, h, b := httpDo(t, "GET", api, http.Header{}, nil)
		if status != 200 || decodeEnvelope(t, b).Code != 0 {
			t.Fatalf("request %d failed during refreshes: HTTP %d %s %s", requests, status, h.Get("X-TikTok-Auth-Proxy-Error"), b)
		}
		requests++
		<-pace.C
	}
	st := s.stats(t, appMain)
	t.Logf("%d requests over %v, all code 0, across %d background refreshes", requests, time.Since(began).Round(time.Second), st.RefreshCalls)
	if st.RefreshFailures != 0 {
		t.Errorf("%d of %d refreshes failed", st.RefreshFailures, st.RefreshCalls)
	}
	// Every client request reached TikTok exactly once (a retry would
	// show twice), and nothing the proxy sent met an expired or rejected
	// token: the refreshes were ahead of every expiry.
	for _, r := range s.requests(t) {
		if r.Code == 40102 || r.Code == 40105 {
			t.Errorf("TikTok answered %d to %s %s: a token was used past its life", r.Code, r.Method, r.Path)
		}
	}
	if n := len(s.recordedTo(t, campaignGet)); n != requests {
		t.Errorf("TikTok saw %d campaign requests for the script's %d: some were retried or lost", n, requests)
	}
	eventually(t, 10*time.Second, "the refresh metrics", func() bool {
		ok, _ := metricValue(t, px, `tiktok_auth_proxy_token_refreshes_total{credential="main",result="success"}`)
		n, _ := metricValue(t, px, `tiktok_auth_proxy_token_refresh_duration_seconds_count{credential="main"}`)
		return ok >= wantRefreshes && n >= wantRefreshes
	})
	exp, ok := metricValue(t, px, `tiktok_auth_proxy_access_token_expiry_timestamp_seconds{credential="main"}`)
	if !ok || exp < float64(time.Now().Unix()) {
		t.Errorf("access token expiry gauge %v (present %v) is not in the future after refreshes", exp, ok)
	}
}

// kill -9 of the proxy loses nothing: after a restart on the same store the
// credential works without re-authorization.
func TestKillAndRestartKeepsCredentials(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials})
	px.authorize(t, s, "main", appMain, advMain1)
	px.authorize(t, s, "other", appOther, advOther)
	for i := 0; i < 3; i++ {
		px.p.kill()
		px.run(t)
		for _, adv := range []string{advMain1, advOther} {
			status, _, b := httpDo(t, "GET", px.URL+"/open_api/v1.3/campaign/get/?advertiser_id="+adv, nil, nil)
			if status != 200 || decodeEnvelope(t, b).Code != 0 {
				t.Fatalf("restart %d, advertiser %s: HTTP %d %s", i, adv, status, b)
			}
		}
	}
	st, err := os.Stat(px.Dir + "/tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", st.Mode().Perm())
	}
}

// SIGTERM stops accepting but lets an in-flight request finish, then the
// process exits 0.
func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials})
	px.authorize(t, s, "main", appMain, advMain1)
	s.post(t, "/sim/fault", map[string]any{"latency": "3s", "count": 1, "path_prefix": campaignGet})

	done := make(chan answer, 1)
	go func() { done <- getAnswer(px.URL + campaignGet + "?advertiser_id=" + advMain1) }()
	// The request is in flight while the simulator holds it in its latency.
	eventually(t, 10*time.Second, "the slow request to wait at TikTok", func() bool {
		for _, r := range s.inflight(t) {
			if r.Path == campaignGet && r.Fault == "latency" {
				return true
			}
		}
		return false
	})
	if err := px.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.status != 200 || r.code != 0 {
		t.Fatalf("in-flight request during shutdown: %+v", r)
	}
	px.p.wantExit0(t, 15*time.Second, "SIGTERM")
	if _, err := plainClient.Get(px.URL + "/open_api/v1.3/campaign/get/"); err == nil {
		t.Error("the proxy still accepts connections after shutdown")
	}
}
