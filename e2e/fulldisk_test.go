package e2e

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// storeFault makes the store directory refuse writes (refuse) and take them
// again (accept). name says which way it does it.
type storeFault struct {
	name           string
	refuse, accept func(t *testing.T)
}

// fullDisk returns the store fault for dir, the directory holding px's
// config and token file: a 64 KiB tmpfs mounted on dir and filled to the
// last page when the test may mount (root with CAP_SYS_ADMIN, as here and
// in CI), else a read-only directory (mode 0500); when even that does not
// stop a write (a root without CAP_SYS_ADMIN overrides modes), dir is
// replaced by a regular file. It must run before the proxy starts: the
// mount hides dir's files, so the config is written again inside it.
func fullDisk(t *testing.T, dir string) storeFault {
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", dir).CombinedOutput()
	if err == nil {
		t.Cleanup(func() {
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", dir, err, out)
			}
		})
		if err := os.WriteFile(filepath.Join(dir, "config.yaml"), cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		filler := filepath.Join(dir, "filler")
		return storeFault{
			name: "a full 64 KiB tmpfs",
			refuse: func(t *testing.T) {
				t.Helper()
				f, err := os.Create(filler)
				if err != nil {
					t.Fatal(err)
				}
				page := make([]byte, 4096)
				// Bounded: 4 MiB is far past the mount's 64 KiB.
				for range 1024 {
					if _, err = f.Write(page); err != nil {
						break
					}
				}
				f.Close()
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling the tmpfs: %v, want ENOSPC", err)
				}
			},
			accept: func(t *testing.T) {
				t.Helper()
				if err := os.Remove(filler); err != nil {
					t.Fatal(err)
				}
			},
		}
	}
	t.Logf("mount -t tmpfs refused (%v: %s): the store directory is made read-only instead", err, strings.TrimSpace(string(out)))
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(dir, ".probe")
	err = os.WriteFile(probe, nil, 0o600)
	_ = os.Remove(probe)
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		chmod := func(mode os.FileMode) func(t *testing.T) {
			return func(t *testing.T) {
				t.Helper()
				if err := os.Chmod(dir, mode); err != nil {
					t.Fatal(err)
				}
			}
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
		return storeFault{name: "a read-only directory (mode 0500)", refuse: chmod(0o500), accept: chmod(0o700)}
	}
	moved := dir + ".moved"
	t.Cleanup(func() {
		if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
			_ = os.Remove(dir)
			_ = os.Rename(moved, dir)
		}
	})
	return storeFault{
		name: "a directory replaced by a regular file (mode 0500 does not stop this root)",
		refuse: func(t *testing.T) {
			t.Helper()
			if err := os.Rename(dir, moved); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		accept: func(t *testing.T) {
			t.Helper()
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(moved, dir); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// TestFullDiskDuringRefresh (issue 9, faults): the store's disk fills up
// while short-lived tokens rotate. The rotated grant TikTok issued is held:
// /readyz is 503 naming the credential, grant_unpersisted is 1 and
// store_write_failures_total counts the failures; once space is freed the
// held grant is written (the stored refresh token is TikTok's latest),
// /readyz is 200 again, serve stops with 0, and after a restart the
// credential serves and refreshes with what was stored.
func TestFullDiskDuringRefresh(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	s.post(t, "/sim/config", map[string]string{"access_ttl": "6s"})
	px := writeProxyConfig(t, s, proxyConfig{Credentials: twoCredentials, Extra: "tokens:\n  refresh_before: 3s\n"})
	fault := fullDisk(t, px.Dir)
	t.Logf("full disk variant: %s", fault.name)
	summarize("e2e: full disk during refresh ran on %s", fault.name)
	px.run(t)
	px.authorize(t, s, "main", appMain, advMain1)
	api := px.URL + campaignGet + "?advertiser_id=" + advMain1
	unpersisted := `tiktok_auth_proxy_grant_unpersisted{credential="main"}`
	readyz := func() (int, string) {
		status, _, b := httpDo(t, "GET", px.AdminURL+"/readyz", nil, nil)
		return status, string(b)
	}
	if status, _ := readyz(); status != http.StatusOK {
		t.Fatalf("/readyz before the disk filled: HTTP %d", status)
	}

	fault.refuse(t)
	eventually(t, 30*time.Second, "a refresh whose grant the full disk refuses", func() bool {
		v, _ := metricValue(t, px, unpersisted)
		return v == 1
	})
	if status, body := readyz(); status != http.StatusServiceUnavailable || !strings.Contains(body, `"main"`) {
		t.Fatalf("/readyz with the disk full and a grant held: HTTP %d %q, want 503 naming main", status, body)
	}
	if v, _ := metricValue(t, px, "tiktok_auth_proxy_store_write_failures_total"); v < 1 {
		t.Errorf("store_write_failures_total = %v with the disk full, want at least 1", v)
	}

	fault.accept(t)
	eventually(t, 30*time.Second, "the held grant to be written once space is free", func() bool {
		status, _ := readyz()
		v, _ := metricValue(t, px, unpersisted)
		return status == http.StatusOK && v == 0
	})
	if status, _, b := httpDo(t, "GET", api, nil, nil); status != 200 || decodeEnvelope(t, b).Code != 0 {
		t.Fatalf("request after the grant was stored: HTTP %d %.200s", status, b)
	}
	if stored, issued := storedRefreshToken(t, px), s.issued(t).RefreshTokens; !slices.Contains(issued[max(0, len(issued)-2):], stored) {
		t.Fatalf("the stored refresh token is not one of TikTok's latest two (of %d issued): the held grant was not written", len(issued))
	}

	if err := px.p.stop(t); err != nil {
		t.Fatalf("serve stopped with %v once the grant was stored, want exit 0", err)
	}
	px.run(t)
	before := len(s.issued(t).RefreshTokens)
	eventually(t, 30*time.Second, "the restarted proxy to refresh with the stored token", func() bool {
		status, _, b := httpDo(t, "GET", api, nil, nil)
		if status != 200 || decodeEnvelope(t, b).Code != 0 {
			t.Fatalf("request after the restart: HTTP %d %.200s", status, b)
		}
		return len(s.issued(t).RefreshTokens) > before
	})
	if authorized, reauth := credentialHealth(t, px, "main"); !authorized || reauth {
		t.Fatalf("after the restart: authorized %v, re-authorization required %v", authorized, reauth)
	}
}
