package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stderrLines returns the non-empty lines of a command's stderr.
func stderrLines(stderr string) []string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// A proxy listener on every interface without clients would be an open
// door to the credentials: serve refuses at start, in one line, exit 1.
func TestNonLoopbackListenWithoutClientsRefused(t *testing.T) {
	s := startSim(t)
	px := writeProxyConfig(t, s, proxyConfig{Credentials: twoCredentials, ListenHost: "0.0.0.0"})
	code, _, stderr := runBounded(t, nil, 20*time.Second, px.args...)
	lines := stderrLines(stderr)
	if code != 1 || len(lines) != 1 {
		t.Fatalf("serve with listen 0.0.0.0 and no clients: exit %d, stderr %q; want exit 1 and one line", code, stderr)
	}
	if !strings.Contains(lines[0], "listen") || !strings.Contains(lines[0], "clients") {
		t.Errorf("refusal %q does not name listen and clients", lines[0])
	}
	if _, err := plainClient.Get(px.URL + campaignGet); err == nil {
		t.Error("something answers on the refused listener's port")
	}
}

// Listeners exposed on every interface: the proxy requires a client token
// and the admin listener its admin_token (from ${VAR}) for everything but
// the probes and the callback; the authorize command, which talks to the
// admin listener, sends the token and still completes there.
func TestExposedAdminListenerRequiresToken(t *testing.T) {
	adminToken := "e2e-admin-token-" + rand.Text()
	const clientToken = "e2e-client-token-exposed-3a9b"
	rememberSecret(adminToken)
	env := []string{"E2E_ADMIN_TOKEN=" + adminToken}
	s := startSim(t)
	px := writeProxyConfig(t, s, proxyConfig{Credentials: twoCredentials, ListenHost: "0.0.0.0", AdminHost: "0.0.0.0",
		Extra: `admin_token: ${E2E_ADMIN_TOKEN}
clients:
  - name: etl
    token: ` + clientToken + `
    credentials: [main, other]
`})
	px.env = env
	px.run(t)

	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	tests := []struct {
		path   string
		header http.Header
		want   int
	}{
		{"/authorize", nil, 401},
		{"/authorize", bearer("wrong-token"), 401},
		{"/authorize", bearer(adminToken), 200},
		{"/api/credentials", nil, 401},
		{"/api/credentials", bearer(clientToken), 401},
		{"/api/credentials", bearer(adminToken), 200},
		{"/metrics", nil, 401},
		{"/authorize/main", nil, 401},
		{"/healthz", nil, 200},
		{"/readyz", nil, 200},
	}
	for _, tt := range tests {
		status, _, b := httpDo(t, "GET", px.AdminURL+tt.path, tt.header, nil)
		if status != tt.want {
			t.Errorf("GET %s (Authorization %q): HTTP %d, want %d: %.200s", tt.path, redactBearer(tt.header, adminToken), status, tt.want, b)
		}
		if bytes.Contains(b, []byte(adminToken)) {
			t.Errorf("GET %s: the admin token is in the answer", tt.path)
		}
	}

	// The authorize command with the wrong token is refused by the
	// listener: it must not fall back to a second writer of the store.
	code, stdout, stderr := runBounded(t, []string{"E2E_ADMIN_TOKEN=wrong-admin-token"}, 30*time.Second,
		"authorize", "--config", px.ConfigPath, "--credential", "main")
	if code != 1 || !strings.Contains(stderr, "401") {
		t.Errorf("authorize with a wrong admin token: exit %d, stdout %q, stderr %q; want exit 1 naming HTTP 401", code, stdout, stderr)
	}

	var stdin io.WriteCloser
	c := &cliProc{proc: launch(t, env, &stdin, "authorize", "--config", px.ConfigPath, "--credential", "main"), stdin: stdin}
	consent := c.consentURL(t)
	loc := approveConsent(t, consent, url.Values{"advertiser_id": {"7012345678901234567"}}, px.AdminURL)
	// The callback is the one admin path TikTok's redirect reaches, so it
	// needs no token.
	if status, _, body := httpDo(t, "GET", loc, nil, nil); status != 200 {
		t.Fatalf("callback without the admin token: HTTP %d %s", status, body)
	}
	if code := c.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("authorize exit %d:\n%s", code, c.out.String())
	}
	if !strings.Contains(c.out.String(), "7012345678901234567") {
		t.Errorf("authorize did not print the granted advertiser:\n%s", c.out.String())
	}

	api := px.URL + campaignGet + "?advertiser_id=7012345678901234567"
	status, h, b := httpDo(t, "GET", api, nil, nil)
	wantProxyError(t, status, h, b, 401, 90010, false)
	status, _, b = httpDo(t, "GET", api, http.Header{"Proxy-Authorization": {"Bearer " + clientToken}}, nil)
	if status != 200 || decodeEnvelope(t, b).Code != 0 {
		t.Fatalf("client call after authorizing through the exposed admin listener: HTTP %d %s", status, b)
	}
	_, _, js := httpDo(t, "GET", px.AdminURL+"/api/credentials", bearer(adminToken), nil)
	var creds []struct {
		Name       string `json:"name"`
		Authorized bool   `json:"authorized"`
	}
	if err := json.Unmarshal(js, &creds); err != nil || len(creds) == 0 || creds[0].Name != "main" || !creds[0].Authorized {
		t.Errorf("/api/credentials after authorizing main: %v %.300s", err, js)
	}
}

// redactBearer shows a request's Authorization header for a failure
// message with the real admin token replaced.
func redactBearer(h http.Header, token string) string {
	return strings.ReplaceAll(h.Get("Authorization"), token, "[admin token]")
}

// A store that is unsafe (readable by others), cut short, or sealed with
// another key is reported by status and serve in one line naming the file,
// exit 1, and left exactly as it was: never "repaired" by overwriting it.
func TestBadStoreRefused(t *testing.T) {
	s := startSim(t)
	key, wrongKey := newEncryptionKey(t), newEncryptionKey(t)
	base := writeProxyConfig(t, s, proxyConfig{Credentials: twoCredentials})
	cfgText := withEncryptionKey(t, readFile(t, base.ConfigPath), key)
	if err := os.WriteFile(base.ConfigPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	base.run(t)
	base.authorize(t, s, "main", appMain, advMain1)
	if err := base.p.stop(t); err != nil {
		t.Fatalf("serve did not stop cleanly: %v", err)
	}
	good := readFile(t, filepath.Join(base.Dir, "tokens.json"))
	if good == "" {
		t.Fatal("the authorized store is empty")
	}

	cases := []struct {
		name   string
		key    string
		mode   os.FileMode
		mangle func(string) string
	}{
		{"mode 0644", key, 0o644, func(b string) string { return b }},
		{"truncated", key, 0o600, func(b string) string { return b[:len(b)/2] }},
		{"wrong encryption key", wrongKey, 0o600, func(b string) string { return b }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			store := filepath.Join(dir, "tokens.json")
			cfg := strings.ReplaceAll(cfgText, filepath.Join(base.Dir, "tokens.json"), store)
			cfg = strings.ReplaceAll(cfg, key, tc.key)
			cfgPath := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			content := tc.mangle(good)
			if err := os.WriteFile(store, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(store, tc.mode); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range [][]string{{"status", "--config", cfgPath}, {"serve", "--config", cfgPath}} {
				code, stdout, stderr := runBounded(t, nil, 20*time.Second, cmd...)
				lines := stderrLines(stderr)
				if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], store) {
					t.Errorf("%s: exit %d, stderr %q (stdout %q); want exit 1 and one line naming %s", cmd[0], code, stderr, stdout, store)
				} else {
					t.Logf("%s: %s", cmd[0], lines[0])
				}
				if got := readFile(t, store); got != content {
					t.Errorf("%s changed the store file (%d bytes, was %d)", cmd[0], len(got), len(content))
				}
				st, err := os.Stat(store)
				if err != nil || st.Mode().Perm() != tc.mode {
					t.Errorf("%s: store mode now %v (%v), want it left at %v", cmd[0], st.Mode().Perm(), err, tc.mode)
				}
			}
		})
	}
}

func newEncryptionKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	k := base64.StdEncoding.EncodeToString(b)
	rememberSecret(k)
	return k
}

// withEncryptionKey adds store.encryption_key to a config written by
// writeProxyConfig.
func withEncryptionKey(t *testing.T, cfg, key string) string {
	t.Helper()
	out := strings.Replace(cfg, "store:\n", "store:\n  encryption_key: "+key+"\n", 1)
	if out == cfg {
		t.Fatal("the config has no store: block")
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
