package e2e

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// A rotated refresh token the store cannot take is held, shown and retried
// (issue 9, finding 4): with the token file's directory replaced by a
// regular file (no write gets through, even as root), /readyz is 503 and
// grant_unpersisted is 1; once the directory is back the held grant is
// written and /readyz is 200 again; and SIGTERM while a grant is held exits
// 1 naming the credential whose grant is lost.
func TestUnpersistedGrant(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	s.post(t, "/sim/config", map[string]string{"access_ttl": "6s"})
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials, Extra: "tokens:\n  refresh_before: 3s\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	api := px.URL + "/open_api/v1.3/campaign/get/?advertiser_id=" + advMain1

	moved := px.Dir + ".moved"
	breakStore := func() {
		t.Helper()
		if err := os.Rename(px.Dir, moved); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(px.Dir, []byte("not a directory"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	restoreStore := func() {
		t.Helper()
		if err := os.Remove(px.Dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(moved, px.Dir); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if fi, err := os.Stat(px.Dir); err == nil && !fi.IsDir() {
			restoreStore()
		}
	})
	unpersisted := `tiktok_auth_proxy_grant_unpersisted{credential="main"}`
	readyz := func() (int, string) {
		status, _, b := httpDo(t, "GET", px.AdminURL+"/readyz", nil, nil)
		return status, string(b)
	}
	if v, ok := metricValue(t, px, unpersisted); !ok || v != 0 {
		t.Fatalf("%s = %v (present %v) before any failure, want 0", unpersisted, v, ok)
	}

	breakStore()
	eventually(t, 30*time.Second, "a refresh the store refuses", func() bool {
		v, _ := metricValue(t, px, unpersisted)
		return v == 1
	})
	if status, body := readyz(); status != http.StatusServiceUnavailable || !strings.Contains(body, `"main"`) {
		t.Fatalf("/readyz with a grant held in memory: HTTP %d %q, want 503 naming main", status, body)
	}
	if v, _ := metricValue(t, px, "tiktok_auth_proxy_store_write_failures_total"); v < 1 {
		t.Errorf("store_write_failures_total = %v, want at least 1", v)
	}

	restoreStore()
	eventually(t, 30*time.Second, "the held grant to be written and /readyz to pass", func() bool {
		status, _ := readyz()
		v, _ := metricValue(t, px, unpersisted)
		return status == http.StatusOK && v == 0
	})
	if status, _, b := httpDo(t, "GET", api, nil, nil); status != 200 || decodeEnvelope(t, b).Code != 0 {
		t.Fatalf("request after the grant was stored: HTTP %d %s", status, b)
	}

	breakStore()
	eventually(t, 30*time.Second, "another refresh the store refuses", func() bool {
		v, _ := metricValue(t, px, unpersisted)
		return v == 1
	})
	err := px.p.stop(t)
	if code := px.p.cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("serve exited %d (%v) on SIGTERM with a grant held in memory, want 1", code, err)
	}
	out := strings.TrimRight(px.p.out.String(), "\n")
	last := out[strings.LastIndex(out, "\n")+1:]
	t.Logf("serve's last line: %s", last)
	if !strings.Contains(last, `credential "main"`) || !strings.Contains(last, "lost") {
		t.Fatalf("last line of serve's output %q: want an error naming the lost grant of main", last)
	}
}
