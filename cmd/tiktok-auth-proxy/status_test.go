package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/setup"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/filestore"
)

func TestNeedsAttention(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ok := tokens.Status{Name: "ok", Authorized: true, Refreshable: true, RefreshExpiresAt: now.Add(30 * 24 * time.Hour)}
	tests := []struct {
		name string
		st   tokens.Status
		warn time.Duration
		want string // "" means no problem
	}{
		{"healthy", ok, defaultWarnBefore, ""},
		{"never authorized", tokens.Status{Name: "new"}, defaultWarnBefore, "new: not authorized"},
		{"re-authorization", tokens.Status{Name: "old", Authorized: true, ReauthRequired: true}, defaultWarnBefore, "old: needs re-authorization"},
		{"refresh token within 14 days", tokens.Status{Name: "soon", Authorized: true, Refreshable: true, RefreshExpiresAt: now.Add(3*24*time.Hour + 4*time.Hour)},
			defaultWarnBefore, "soon: refresh token expires in 3d4h (within 14d)"},
		{"refresh token expired", tokens.Status{Name: "gone", Authorized: true, Refreshable: true, RefreshExpiresAt: now.Add(-time.Hour)},
			defaultWarnBefore, "gone: refresh token expired"},
		{"--warn-before shorter", ok, 7 * 24 * time.Hour, ""},
		{"--warn-before longer", ok, 60 * 24 * time.Hour, "ok: refresh token expires in 30d (within 60d)"},
		{"within a day: hours and minutes", tokens.Status{Name: "today", Authorized: true, Refreshable: true, RefreshExpiresAt: now.Add(time.Hour + 59*time.Second)},
			90 * time.Minute, "today: refresh token expires in 1h1m (within 1h30m)"},
		{"long-lived grant has no refresh expiry", tokens.Status{Name: "ll", Authorized: true}, defaultWarnBefore, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(needsAttention([]tokens.Status{tt.st}, now, tt.warn), "; ")
			if got != tt.want {
				t.Errorf("needsAttention = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWarnBeforeFlag(t *testing.T) {
	for in, want := range map[string]time.Duration{"14d": 14 * 24 * time.Hour, "0d": 0, "72h": 72 * time.Hour, "90m": 90 * time.Minute} {
		var d daysFlag
		if err := d.Set(in); err != nil || time.Duration(d) != want {
			t.Errorf("Set(%q) = %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{"two weeks", "-1d", "1.5d", "-3h"} {
		var d daysFlag
		if err := d.Set(in); err == nil {
			t.Errorf("Set(%q) accepted %v", in, time.Duration(d))
		}
	}
	code, _, errOut := runCLI(t, "", "status", "--warn-before", "soon")
	if code != 2 || !strings.Contains(errOut, "warn-before") {
		t.Errorf("status --warn-before soon: exit %d, stderr %q", code, errOut)
	}
}

// checkJSONSource: status --json is the list of n credentials, each naming
// want (compact JSON) as its source.
func checkJSONSource(t *testing.T, out string, n int, want string) {
	t.Helper()
	var got []struct {
		Name   string          `json:"name"`
		Source json.RawMessage `json:"source"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != n {
		t.Fatalf("status --json: %d credentials (%v), want %d:\n%s", len(got), err, n, out)
	}
	for _, c := range got {
		var compact bytes.Buffer
		if err := json.Compact(&compact, c.Source); err != nil || compact.String() != want {
			t.Errorf("status --json: %s's source %s, want %s", c.Name, c.Source, want)
		}
	}
}

// fakeAdmin serves /api/credentials as a running serve would, requiring
// token when it is not "".
func fakeAdmin(t *testing.T, token string, st any) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/credentials" {
			http.NotFound(w, r)
			return
		}
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func advertisers(n int) []tokens.Advertiser {
	ads := make([]tokens.Advertiser, n)
	for i := range ads {
		ads[i] = tokens.Advertiser{ID: fmt.Sprintf("70000000000000000%02d", i)}
	}
	return ads
}

// TestStatusFromRunningServer: with serve up, status shows its view (here
// one that differs from the store), says so, needs no app secret in the
// environment, sends admin_token, and keeps the ADVERTISERS column short.
func TestStatusFromRunningServer(t *testing.T) {
	const adminToken = "status-test-admin-token-0123"
	future := time.Now().Add(300 * 24 * time.Hour)
	srv := fakeAdmin(t, adminToken, []tokens.Status{
		{Name: "main", Kind: "advertiser", Authorized: true, Advertisers: advertisers(10), Refreshable: true,
			AccessExpiresAt: time.Now().Add(time.Hour), RefreshExpiresAt: future},
	})
	t.Setenv("STATUS_TEST_ADMIN_TOKEN", adminToken)
	t.Setenv("STATUS_TEST_UNSET_SECRET", "")
	os.Unsetenv("STATUS_TEST_UNSET_SECRET")
	cfg := writeFile(t, "config.yaml", "admin_listen: "+strings.TrimPrefix(srv.URL, "http://")+`
admin_token: ${STATUS_TEST_ADMIN_TOKEN}
credentials: [{name: main, app_id: "1", app_secret: "${STATUS_TEST_UNSET_SECRET}"}]
`)
	code, out, errOut := runCLI(t, "", "status", "--config", cfg)
	if code != 0 || errOut != "" {
		t.Fatalf("status: exit %d, stderr %q\n%s", code, errOut, out)
	}
	if want := "source: running server at " + srv.URL + "\n"; !strings.HasPrefix(out, want) {
		t.Errorf("output does not start with %q:\n%s", want, out)
	}
	if !regexp.MustCompile(`(?m)^main\s+yes\s+7000000000000000000, 7000000000000000001, 7000000000000000002 \(\+7 more\)\s+advertiser\s`).MatchString(out) {
		t.Errorf("ADVERTISERS column not cut to 3 and a count:\n%s", out)
	}
	_, out, _ = runCLI(t, "", "status", "--config", cfg, "--json")
	checkJSONSource(t, out, 1, `{"kind":"server","location":"`+srv.URL+`"}`)

	t.Setenv("STATUS_TEST_ADMIN_TOKEN", "a-wrong-admin-token-0123")
	code, _, errOut = runCLI(t, "", "status", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "HTTP 401; check admin_token") {
		t.Errorf("status with a wrong admin_token: exit %d, stderr %q", code, errOut)
	}
}

// TestStatusFromStore: with nothing on the admin listener the store is
// read, the source line says so, and exit 1 names each credential that
// needs an operator.
func TestStatusFromStore(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	dir := t.TempDir()
	storePath := filepath.Join(dir, "tokens.json")
	st, err := filestore.Open(storePath, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, rec := range []*tokens.Record{
		{Credential: "fine", AccessToken: "SECRET-1", RefreshToken: "SECRET-2", AccessExpiresAt: now.Add(time.Hour), RefreshExpiresAt: now.Add(200 * 24 * time.Hour)},
		{Credential: "soon", AccessToken: "SECRET-3", RefreshToken: "SECRET-4", AccessExpiresAt: now.Add(time.Hour), RefreshExpiresAt: now.Add(5 * 24 * time.Hour)},
	} {
		if err := st.Put(context.Background(), rec, 0); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("admin_listen: "+strings.TrimPrefix(down.URL, "http://")+`
store: {path: tokens.json}
credentials:
  - {name: fine, app_id: "1", app_secret: s}
  - {name: soon, app_id: "2", app_secret: s}
  - {name: new, app_id: "3", app_secret: s}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", "status", "--config", cfg)
	if !strings.HasPrefix(out, "source: store "+storePath+"\n") || !regexp.MustCompile(`(?m)^fine\s+yes\s`).MatchString(out) {
		t.Errorf("status from the store:\n%s", out)
	}
	want := "tiktok-auth-proxy: status: soon: refresh token expires in 5d (within 14d); new: not authorized\n"
	if code != 1 || errOut != want {
		t.Errorf("exit %d, stderr %q; want exit 1, %q", code, errOut, want)
	}
	if strings.Contains(out+errOut, "SECRET") {
		t.Errorf("status printed a token")
	}
	code, _, errOut = runCLI(t, "", "status", "--config", cfg, "--warn-before", "3d")
	if want := "tiktok-auth-proxy: status: new: not authorized\n"; code != 1 || errOut != want {
		t.Errorf("--warn-before 3d: exit %d, stderr %q; want %q", code, errOut, want)
	}
	_, out, _ = runCLI(t, "", "status", "--config", cfg, "--json")
	checkJSONSource(t, out, 3, `{"kind":"store","location":"`+storePath+`"}`)
}

// status shows which credential is the default and where each one's
// advertisers come from: the running server's view (/api/credentials'
// default and advertiser_routes), or, without one, the config's and the
// store's, told apart as serve does.
func TestStatusShowsRouting(t *testing.T) {
	routingRow := func(name, def string, config, grant, listing int) *regexp.Regexp {
		return regexp.MustCompile(fmt.Sprintf(`(?m)^%s\s+%s\s+%d\s+%d\s+%d$`, name, def, config, grant, listing))
	}
	srv := fakeAdmin(t, "", []map[string]any{
		{"name": "main", "kind": "advertiser", "authorized": true, "default": false, "advertisers": []any{},
			"advertiser_routes": []setup.AdvertiserRoute{
				{ID: "7000000000000000001", Name: "Shop", Sources: []string{setup.SourceConfig, setup.SourceListing}},
				{ID: "7000000000000000002", Sources: []string{setup.SourceGrant}},
			}},
		{"name": "agency", "kind": "advertiser", "authorized": true, "default": true, "advertisers": []any{}, "advertiser_routes": []any{}},
	})
	cfg := writeFile(t, "config.yaml", "admin_listen: "+strings.TrimPrefix(srv.URL, "http://")+`
credentials: [{name: main, app_id: "1", app_secret: s}, {name: agency, app_id: "2", app_secret: s}]
`)
	code, out, errOut := runCLI(t, "", "status", "--config", cfg)
	if code != 0 || errOut != "" {
		t.Fatalf("status: exit %d, stderr %q\n%s", code, errOut, out)
	}
	if !strings.Contains(out, "CREDENTIAL  DEFAULT  ADVERTISERS FROM CONFIG  FROM GRANT  FROM LISTING\n") ||
		!routingRow("main", "no", 1, 1, 1).MatchString(out) || !routingRow("agency", "yes", 0, 0, 0).MatchString(out) {
		t.Errorf("routing from the running server:\n%s", out)
	}
	if strings.Contains(out, "no default credential") {
		t.Errorf("a default is configured, yet status says there is none:\n%s", out)
	}

	// From the store: config's advertiser_ids, the grant's bare ids and the
	// listing's named ones.
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	dir := t.TempDir()
	st, err := filestore.Open(filepath.Join(dir, "tokens.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &tokens.Record{Credential: "main", AccessToken: "SECRET-1", Advertisers: []tokens.Advertiser{
		{ID: "7000000000000000001", Name: "Shop"}, {ID: "7000000000000000002"}, {ID: "7000000000000000003", Name: "Other shop"},
	}}
	if err := st.Put(context.Background(), rec, 0); err != nil {
		t.Fatal(err)
	}
	// other's grant names main's configured advertiser (main owns it),
	// one of main's listed ones that neither configures (no one owns it:
	// refused, so routed to neither), and one of its own.
	rec2 := &tokens.Record{Credential: "other", AccessToken: "SECRET-2", Advertisers: []tokens.Advertiser{
		{ID: "7000000000000000001"}, {ID: "7000000000000000003", Name: "Other shop"}, {ID: "7000000000000000004"},
	}}
	if err := st.Put(context.Background(), rec2, 0); err != nil {
		t.Fatal(err)
	}
	st.Close()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte("admin_listen: "+strings.TrimPrefix(down.URL, "http://")+`
store: {path: tokens.json}
credentials:
  - {name: main, app_id: "1", app_secret: s, advertiser_ids: ["7000000000000000001", "7000000000000000009"]}
  - {name: other, app_id: "2", app_secret: s}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, out, _ = runCLI(t, "", "status", "--config", cfgPath)
	if !routingRow("main", "no", 2, 1, 1).MatchString(out) || !routingRow("other", "no", 0, 1, 0).MatchString(out) ||
		!strings.Contains(out, "no default credential: a request naming no credential and no known advertiser gets 90001\n") {
		t.Errorf("routing from the store:\n%s", out)
	}
	_, out, _ = runCLI(t, "", "status", "--config", cfgPath, "--json")
	var got []struct {
		Name      string                      `json:"name"`
		Default   bool                        `json:"default"`
		Routes    []setup.AdvertiserRoute     `json:"advertiser_routes"`
		Conflicts []tokens.AdvertiserConflict `json:"advertiser_conflicts"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if len(got) != 2 || len(got[0].Routes) != 3 || strings.Join(got[0].Routes[2].Sources, ",") != setup.SourceConfig ||
		got[0].Routes[2].ID != "7000000000000000009" || len(got[1].Routes) != 1 || got[1].Routes[0].ID != "7000000000000000004" {
		t.Errorf("status --json routes: %+v", got)
	}
	// Both credentials show both conflicts, as /api/credentials does.
	for _, c := range got {
		if len(c.Conflicts) != 2 || c.Conflicts[0].AdvertiserID != "7000000000000000001" || c.Conflicts[0].Owner != "main" ||
			c.Conflicts[1].AdvertiserID != "7000000000000000003" || c.Conflicts[1].Owner != "" {
			t.Errorf("status --json: %s's advertiser_conflicts %+v, want 7000000000000000001 (owned by main) and 7000000000000000003 (no owner)", c.Name, c.Conflicts)
		}
	}
}
