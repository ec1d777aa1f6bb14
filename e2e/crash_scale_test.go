package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// crashKills is how many times TestCrashScale kills the proxy: TAP_KILLS,
// else 50 (make soak sets 1000).
func crashKills(t *testing.T) int {
	t.Helper()
	v := os.Getenv("TAP_KILLS")
	if v == "" {
		return 50
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("TAP_KILLS=%q: want a positive number", v)
	}
	return n
}

// restartAfterKill restarts a killed proxy on its store and tells how the
// kill ended for its credential main: false when the restarted proxy
// refreshes with the stored refresh token and serves without
// re-authorization; true when TikTok refuses the stored token because the
// kill landed in the window (the simulator's issue log shows the stored
// token replaced by its latest one). Anything else fails the test: the
// credential was lost.
func restartAfterKill(t *testing.T, s *sim, px *proxy, kill int) (inWindow bool) {
	t.Helper()
	stored := storedRefreshToken(t, px)
	px.run(t)
	// The stored refresh token is spent by a successful refresh, or TikTok
	// refuses it.
	var reauth bool
	eventually(t, 15*time.Second, fmt.Sprintf("kill %d: the restarted proxy to refresh or ask for re-authorization", kill), func() bool {
		_, reauth = credentialHealth(t, px, "main")
		return reauth || storedRefreshToken(t, px) != stored
	})
	if !reauth {
		status, _, b := httpDo(t, "GET", px.URL+campaignGet+"?advertiser_id="+advMain1, nil, nil)
		if status != 200 || decodeEnvelope(t, b).Code != 0 {
			t.Fatalf("kill %d: after restart and refresh: HTTP %d %.200s", kill, status, b)
		}
		return false
	}
	// A failed refresh issues nothing, so the issue log is final here.
	issued := s.issued(t).RefreshTokens
	if i := slices.Index(issued, stored); i < 0 || i != len(issued)-2 {
		t.Fatalf("kill %d: re-authorization required, and the stored refresh token is %d of %d issued: not the one TikTok's last rotation replaced; the credential was lost",
			kill, i+1, len(issued))
	}
	return true
}

// storedRefreshToken is main's refresh token in the proxy's store file.
func storedRefreshToken(t *testing.T, px *proxy) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(px.Dir, "tokens.json"))
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	var doc struct {
		Credentials map[string]struct {
			RefreshToken string `json:"refresh_token"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("store: %v", err)
	}
	return doc.Credentials["main"].RefreshToken
}

// TestCrashScale kills (SIGKILL) the proxy at random moments while its
// 1.5 s access tokens rotate under a steady load of script requests, and
// restarts it on the same store each time. After every restart either the
// credential serves and refreshes without re-authorization, or the kill
// landed in the one window no client can close: TikTok had rotated the
// refresh token (the simulator's issue log shows the stored token replaced
// by its latest one) but the proxy died before the answer was on disk.
// Anything else (a stored token TikTok never issued, or an older one) fails.
// A window restart is re-authorized and the run goes on.
func TestCrashScale(t *testing.T) {
	kills := crashKills(t)
	s := startSim(t)
	s.post(t, "/sim/config", map[string]string{"access_ttl": "1500ms"})
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials, Timeout: "5s", Extra: "tokens:\n  refresh_before: 1s\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	api := px.URL + campaignGet + "?advertiser_id=" + advMain1

	// The load: two scripts calling as fast as a 10 ms pace allows, through
	// kills and restarts, until the test ends.
	stop := make(chan struct{})
	var loadWG sync.WaitGroup
	var served, failed atomic.Int64
	loadClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	for range 2 {
		loadWG.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				resp, err := loadClient.Get(api)
				if err != nil {
					failed.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == 200 {
					served.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}
	defer func() { close(stop); loadWG.Wait() }()

	survived, window := 0, 0
	for kill := 1; kill <= kills; kill++ {
		// A random moment: in a refresh, between refreshes, or while a
		// request is at TikTok.
		time.Sleep(time.Duration(rand.N(700)) * time.Millisecond)
		px.p.kill()
		if !restartAfterKill(t, s, px, kill) {
			survived++
			continue
		}
		window++
		px.authorize(t, s, "main", appMain, advMain1)
	}
	t.Logf("load: %d requests served, %d failed (mostly while the proxy was down)", served.Load(), failed.Load())
	summarize("crash: kills=%d survived=%d window=%d", kills, survived, window)
	if survived == 0 {
		t.Error("every kill landed in the window: no restart was verified to serve without re-authorization")
	}
}

// TestCrashWindowDetected puts a kill in the window on purpose, so the
// count TestCrashScale reports is known to see it: TikTok rotates the
// refresh token and holds its answer, the proxy is killed while waiting
// for it, and the restart finds the stored token refused and names the
// window.
func TestCrashWindowDetected(t *testing.T) {
	s := startSim(t)
	s.post(t, "/sim/config", map[string]string{"access_ttl": "1500ms"})
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials, Timeout: "20s", Extra: "tokens:\n  refresh_before: 1s\n"})
	px.authorize(t, s, "main", appMain, advMain1)
	s.post(t, "/sim/fault", map[string]any{"scope": "token", "hold": "30s", "count": 1})
	eventually(t, 15*time.Second, "a refresh to be rotated and its answer held", func() bool {
		for _, r := range s.inflight(t) {
			if r.Fault == "hold" {
				return true
			}
		}
		return false
	})
	px.p.kill()
	if !restartAfterKill(t, s, px, 1) {
		t.Fatal("a kill while TikTok held the rotated answer was not seen as in the window")
	}
	// Re-authorization ends it.
	px.authorize(t, s, "main", appMain, advMain1)
	if _, reauth := credentialHealth(t, px, "main"); reauth {
		t.Error("still re-authorization required after authorizing")
	}
}
