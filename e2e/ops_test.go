package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// The operator's monitoring view of a running serve: healthcheck and
// status ask it through the admin listener and need none of the app
// secrets serve has; once serve stops, healthcheck fails and status reads
// the store, saying which it showed. status exits 1 while a credential
// needs an operator.
func TestStatusAndHealthcheckFollowServe(t *testing.T) {
	s := startSim(t)
	px := writeProxyConfig(t, s, proxyConfig{Credentials: `  - name: main
    app_id: "` + appMain + `"
    app_secret: ${E2E_OPS_APP_SECRET}
`})
	px.env = []string{"E2E_OPS_APP_SECRET=" + secretMain}
	px.run(t)
	// The commands below run without E2E_OPS_APP_SECRET.
	code, out, errOut := runBounded(t, nil, 20*time.Second, "healthcheck", "--config", px.ConfigPath)
	if code != 0 || out != "ready: "+px.AdminURL+"/readyz\n" {
		t.Errorf("healthcheck with serve up: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runBounded(t, nil, 20*time.Second, "status", "--config", px.ConfigPath)
	if code != 1 || !strings.HasPrefix(out, "source: running server at "+px.AdminURL+"\n") ||
		errOut != "tiktok-auth-proxy: status: main: not authorized\n" {
		t.Errorf("status before authorizing: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	px.authorize(t, s, "main", appMain, "7012345678901234567")
	code, out, errOut = runBounded(t, nil, 20*time.Second, "status", "--config", px.ConfigPath)
	if code != 0 || !regexp.MustCompile(`(?m)^main\s+yes\s+7012345678901234567\s`).MatchString(out) || errOut != "" {
		t.Errorf("status after authorizing: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// The simulator's refresh tokens live 365 days: within 400.
	code, _, errOut = runBounded(t, nil, 20*time.Second, "status", "--config", px.ConfigPath, "--warn-before", "400d")
	if code != 1 || !regexp.MustCompile(`^tiktok-auth-proxy: status: main: refresh token expires in 36[45]d(\d+h)? \(within 400d\)\n$`).MatchString(errOut) {
		t.Errorf("status --warn-before 400d: exit %d, stderr %q", code, errOut)
	}

	if err := px.p.stop(t); err != nil {
		t.Fatalf("serve did not stop cleanly: %v", err)
	}
	code, _, errOut = runBounded(t, nil, 20*time.Second, "healthcheck", "--config", px.ConfigPath)
	if code != 1 || !strings.Contains(errOut, px.AdminURL+"/readyz") {
		t.Errorf("healthcheck with serve stopped: exit %d, stderr %q", code, errOut)
	}
	code, out, errOut = runBounded(t, nil, 20*time.Second, "status", "--config", px.ConfigPath)
	if code != 0 || !strings.HasPrefix(out, "source: store "+px.Dir+"/tokens.json\n") ||
		!regexp.MustCompile(`(?m)^main\s+yes\s+7012345678901234567\s`).MatchString(out) {
		t.Errorf("status with serve stopped: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
