package e2e

import (
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

	resp, err := plainClient.Get(fmt.Sprintf("%s/open_api/v1.3/sim/report/download/?advertiser_id=%s&size=%d", px.URL, advMain1, size))
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

// A client hanging up mid-download cancels the upstream call; the request
// is recorded as 499, and it does not count as a TikTok failure.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials,
		Extra: "breaker:\n  consecutive_failures: 1\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	resp, err := plainClient.Get(fmt.Sprintf("%s/open_api/v1.3/sim/report/download/?advertiser_id=%s&size=%d", px.URL, advMain1, int64(50)<<30))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	eventually(t, 10*time.Second, "the proxy to record the hang-up as 499", func() bool {
		return strings.Contains(px.p.out.String(), `"status":499`)
	})
	// With consecutive_failures: 1, a hang-up counted as a failure would
	// have opened the breaker.
	status, _, b := httpDo(t, "GET", px.URL+"/open_api/v1.3/campaign/get/?advertiser_id="+advMain1, nil, nil)
	if status != 200 {
		t.Fatalf("after a client hang-up: HTTP %d %s", status, b)
	}
}

// Access tokens expire every few seconds while a script keeps calling:
// background refresh keeps every request succeeding.
func TestBackgroundRefreshAcrossExpiries(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	s.post(t, "/sim/config", map[string]string{"access_ttl": "24s"})
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials, Extra: "tokens:\n  refresh_before: 12s\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	api := px.URL + "/open_api/v1.3/campaign/get/?advertiser_id=" + advMain1

	const wantRefreshes = 3
	deadline := time.Now().Add(60 * time.Second)
	requests := 0
	for s.stats(t, appMain).RefreshCalls < wantRefreshes {
		if time.Now().After(deadline) {
			t.Fatalf("only %d refreshes in 60s", s.stats(t, appMain).RefreshCalls)
		}
		status, h, b := httpDo(t, "GET", api, http.Header{}, nil)
		if status != 200 || decodeEnvelope(t, b).Code != 0 {
			t.Fatalf("request %d failed during refreshes: HTTP %d %s %s", requests, status, h.Get("X-TikTok-Auth-Proxy-Error"), b)
		}
		requests++
		time.Sleep(50 * time.Millisecond) // a script's pace, not a wait for a condition
	}
	refreshes := s.stats(t, appMain).RefreshCalls
	t.Logf("%d requests, all OK, across %d background refreshes", requests, refreshes)
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
	s.post(t, "/sim/fault", map[string]any{"latency": "1500ms", "count": 1, "path_prefix": "/open_api/v1.3/campaign/get/"})

	type result struct {
		status int
		code   int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := plainClient.Get(px.URL + "/open_api/v1.3/campaign/get/?advertiser_id=" + advMain1)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		var env envelope
		err = jsonDecode(resp.Body, &env)
		done <- result{status: resp.StatusCode, code: env.Code, err: err}
	}()
	// The request is in flight once the simulator has recorded it.
	eventually(t, 10*time.Second, "the slow request to reach TikTok", func() bool {
		for _, r := range s.requests(t) {
			if r.Path == "/open_api/v1.3/campaign/get/" {
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
	select {
	case <-px.p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
	if code := px.p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if _, err := plainClient.Get(px.URL + "/open_api/v1.3/campaign/get/"); err == nil {
		t.Error("the proxy still accepts connections after shutdown")
	}
}
