package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readyzServer answers /readyz with status and counts the requests.
func readyzServer(t *testing.T, status int) (*httptest.Server, *int) {
	t.Helper()
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		hits++
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestHealthcheck(t *testing.T) {
	ready, _ := readyzServer(t, http.StatusOK)
	notReady, _ := readyzServer(t, http.StatusServiceUnavailable)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	tests := []struct {
		name     string
		url      string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"ready", ready.URL + "/readyz", 0, "ready: " + ready.URL + "/readyz", ""},
		{"not ready", notReady.URL + "/readyz", 1, "", "answered HTTP 503"},
		{"nothing listening", down.URL + "/readyz", 1, "", "connection refused"},
		{"a redirect is not ready", ready.URL + "/", 1, "", "answered HTTP 404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", "healthcheck", "--url", tt.url)
			if code != tt.wantCode || !strings.Contains(out, tt.wantOut) || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d (want %d), stdout %q (want %q), stderr %q (want %q)", code, tt.wantCode, out, tt.wantOut, errOut, tt.wantErr)
			}
		})
	}
}

// TestHealthcheckURLFromConfig: without --url the admin_listen of the
// config gives the URL, and the config's app secrets need not be in the
// environment (a container's HEALTHCHECK runs with whatever it has).
func TestHealthcheckURLFromConfig(t *testing.T) {
	srv, hits := readyzServer(t, http.StatusOK)
	t.Setenv("HEALTH_TEST_UNSET_SECRET", "")
	os.Unsetenv("HEALTH_TEST_UNSET_SECRET")
	cfg := writeFile(t, "config.yaml", "admin_listen: "+strings.TrimPrefix(srv.URL, "http://")+`
credentials: [{name: main, app_id: "1", app_secret: "${HEALTH_TEST_UNSET_SECRET}"}]
`)
	code, out, errOut := runCLI(t, "", "healthcheck", "--config", cfg)
	if code != 0 || *hits != 1 {
		t.Errorf("healthcheck --config: exit %d, %d request(s) to admin_listen; stdout %q, stderr %q", code, *hits, out, errOut)
	}

	code, _, errOut = runCLI(t, "", "healthcheck", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 1 || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("an explicit --config that does not exist: exit %d, stderr %q", code, errOut)
	}
}

// TestHealthcheckDefaultURL: with no config at all, the default admin
// address is asked. Whether something answers there is not this test's
// business, only which URL was asked.
func TestHealthcheckDefaultURL(t *testing.T) {
	t.Chdir(t.TempDir())
	_, out, errOut := runCLI(t, "", "healthcheck", "--timeout", "2s")
	if !strings.Contains(out+errOut, "http://127.0.0.1:8081/readyz") {
		t.Errorf("healthcheck without config did not ask http://127.0.0.1:8081/readyz: stdout %q, stderr %q", out, errOut)
	}
}
