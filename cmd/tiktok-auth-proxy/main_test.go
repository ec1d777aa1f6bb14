package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the program as main would and returns exit code and output.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	code = exitCode(err, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	good := writeFile(t, "config.yaml", `credentials:
  - name: main
    app_id: "7123456789012345678"
    app_secret: s3cret-value
  - name: other
    app_id: "7123456789012345679"
    app_secret: other-secret
    default: true
`)
	code, out, errOut := runCLI(t, "", "check", "--config", good)
	if code != 0 || out != "config OK: 2 credentials\n" || errOut != "" {
		t.Errorf("check good config: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	one := writeFile(t, "one.yaml", "credentials: [{name: main, app_id: \"7123456789012345678\", app_secret: s3cret-value}]\n")
	code, out, errOut = runCLI(t, "", "check", "--config", one)
	if code != 0 || out != "config OK: 1 credential\n" || errOut != "" {
		t.Errorf("check good config: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	bad := writeFile(t, "bad.yaml", `listen: 0.0.0.0:8080
credentials:
  - name: main
    app_id: "1"
    app_secret: ""
    colour: blue
  - name: main
    app_id: "2"
    app_secret: x
`)
	code, out, errOut = runCLI(t, "", "check", "--config", bad)
	if code != 1 || out != "" {
		t.Errorf("check bad config: exit %d, stdout %q", code, out)
	}
	for _, want := range []string{"bad.yaml:6:", "colour", "bad.yaml:7:", "duplicate", "bad.yaml:5:", "bad.yaml:1:"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut)
		}
	}
	if lines := strings.Count(strings.TrimSpace(errOut), "\n") + 1; lines < 4 {
		t.Errorf("want every problem on its own line, got %d line(s):\n%s", lines, errOut)
	}
	if strings.Contains(errOut, "s3cret") {
		t.Errorf("check printed a secret")
	}

	code, _, errOut = runCLI(t, "", "check", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 1 || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
}

func TestUsageAndExitCodes(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string // "" means stdout must be empty
		wantErr  string // "" means stderr must be empty
	}{
		{[]string{"version"}, 0, "tiktok-auth-proxy dev (commit unknown, go", ""},
		{[]string{"--version"}, 0, "tiktok-auth-proxy dev (commit unknown, go", ""},
		{[]string{"-v"}, 0, "tiktok-auth-proxy dev (commit unknown, go", ""},
		{[]string{"help"}, 0, "Commands:", ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"check", "--nope"}, 2, "", "flag provided but not defined"},
		{[]string{"serve", "--config"}, 2, "", "flag needs an argument"},
		{[]string{"check", "stray"}, 2, "", `unexpected argument "stray"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, "", tt.args...)
			okOut := strings.Contains(out, tt.wantOut) && (tt.wantOut != "" || out == "")
			okErr := strings.Contains(errOut, tt.wantErr) && (tt.wantErr != "" || errOut == "")
			if code != tt.wantCode || !okOut || !okErr {
				t.Errorf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", code, tt.wantCode, out, tt.wantOut, errOut, tt.wantErr)
			}
			if tt.wantCode == 2 && strings.Count(errOut, "\n") != 1 {
				t.Errorf("a usage error is one line on stderr, got %q", errOut)
			}
		})
	}
}

// TestHelpEveryCommand: --help prints the command's usage once, on stdout,
// and exits 0.
func TestHelpEveryCommand(t *testing.T) {
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", c.name, "--help")
			if code != 0 || errOut != "" {
				t.Errorf("exit %d, stderr %q", code, errOut)
			}
			if n := strings.Count(out, "Usage: tiktok-auth-proxy "+c.name); n != 1 {
				t.Errorf("usage printed %d times:\n%s", n, out)
			}
		})
	}
}

// TestNoArgumentsNoConfig: a first run with neither arguments nor
// ./config.yaml points to demo and --help instead of failing on a file.
func TestNoArgumentsNoConfig(t *testing.T) {
	t.Chdir(t.TempDir())
	code, out, errOut := runCLI(t, "")
	if code != 2 || out != "" {
		t.Errorf("exit %d (want 2), stdout %q", code, out)
	}
	for _, want := range []string{"no ./config.yaml", "tiktok-auth-proxy demo", "tiktok-auth-proxy --help"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "no such file") {
		t.Errorf("stderr shows a bare file error:\n%s", errOut)
	}
}

// TestAuthorizeCredentialOptional: --credential may be left out when the
// config has one credential, and is asked for by name otherwise.
func TestAuthorizeCredentialOptional(t *testing.T) {
	two := writeFile(t, "two.yaml", `credentials:
  - {name: main, app_id: "7123456789012345678", app_secret: s3cret-value, default: true}
  - {name: other, app_id: "7123456789012345679", app_secret: s3cret-value}
`)
	code, out, errOut := runCLI(t, "", "authorize", "--config", two)
	if code != 2 || out != "" || !strings.Contains(errOut, "--credential is required with 2 credentials in "+two+" (main, other)") {
		t.Errorf("authorize with two credentials: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// The admin listener is a closed port and stdin is empty: the flow
	// prints the consent URL of the only credential, then ends on EOF.
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	one := writeFile(t, "one.yaml", "admin_listen: "+strings.TrimPrefix(down.URL, "http://")+`
upstream: {base_url: "http://127.0.0.1:1"}
credentials:
  - {name: solo, app_id: "7123456789012345670", app_secret: s3cret-value}
`)
	_, out, errOut = runCLI(t, "", "authorize", "--config", one)
	if !strings.Contains(out, "app_id=7123456789012345670") {
		t.Errorf("authorize without --credential did not start the only credential's flow: stdout %q, stderr %q", out, errOut)
	}
}
