package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/stopbudget"
)

const systemdUnit = "../deploy/systemd/tiktok-auth-proxy.service"

// unitKeys parses a systemd unit into section → key → values (a key may
// repeat; an empty assignment is kept as "").
func unitKeys(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: not a key=value line: %q", path, line)
			}
			out[section][strings.TrimSpace(k)] = append(out[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The systemd unit is hardened (the keys checked by parsing, so the test
// holds wherever it runs) and systemd's own analyzer accepts it without a
// warning and rates its exposure OK.
func TestSystemdUnit(t *testing.T) {
	unit := unitKeys(t, systemdUnit)
	svc := unit["Service"]
	for key, want := range map[string]string{
		"ExecStart":               "/usr/local/bin/tiktok-auth-proxy serve --config /etc/tiktok-auth-proxy/config.yaml",
		"DynamicUser":             "yes",
		"StateDirectory":          "tiktok-auth-proxy",
		"StateDirectoryMode":      "0700",
		"ProtectSystem":           "strict",
		"NoNewPrivileges":         "yes",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"SystemCallArchitectures": "native",
		"KillSignal":              "SIGTERM",
	} {
		if got, ok := svc[key]; !ok || got[len(got)-1] != want {
			t.Errorf("[Service] %s = %q, want %q", key, got, want)
		}
	}
	// systemd must not SIGKILL serve before it has stopped: in-flight
	// requests, then the store flush.
	if d, err := time.ParseDuration(strings.Join(svc["TimeoutStopSec"], "")); err != nil || d <= stopbudget.Serve {
		t.Errorf("TimeoutStopSec = %q, want more than serve's %v from SIGTERM to exit (stopbudget.Serve)", svc["TimeoutStopSec"], stopbudget.Serve)
	}
	if got := strings.Join(unit["Install"]["WantedBy"], " "); got != "multi-user.target" {
		t.Errorf("[Install] WantedBy = %q", got)
	}

	// systemd-analyze is installed by scripts/ensure-test-deps.sh; its
	// verify checks that ExecStart is executable, so it sees the unit with
	// the binary this test built in place of /usr/local/bin.
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is not installed: run scripts/ensure-test-deps.sh (this test is never skipped)")
	}
	text, err := os.ReadFile(systemdUnit)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "tiktok-auth-proxy.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(text), "/usr/local/bin/tiktok-auth-proxy", binPath)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// verify exits 0 on a misspelt key, only warning: any output fails.
	out, err := exec.CommandContext(ctx, "systemd-analyze", "verify", copyPath).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure is scored 0 (locked down) to 100; 20 is the top of "OK".
	out, err = exec.CommandContext(ctx, "systemd-analyze", "security", "--offline=true", "--threshold=20", copyPath).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0 (%v):\n%s", err, out)
	}
}
