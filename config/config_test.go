package config_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

const minimal = `
credentials:
  - name: main
    app_id: "7123456789012345678"
    app_secret: s3cr3t
`

func TestParseDefaults(t *testing.T) {
	c, err := config.Parse([]byte(minimal), "/etc/tap/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		Listen:      "127.0.0.1:8080",
		AdminListen: "127.0.0.1:8081",
		Upstream:    config.Upstream{BaseURL: "https://business-api.tiktok.com", Timeout: 60 * time.Second},
		OAuth:       config.OAuth{RedirectURL: "http://localhost:8081/oauth/callback"},
		Tokens:      config.Tokens{RefreshBefore: time.Hour},
		Store: config.Store{
			Backend: "file",
			Path:    filepath.Join("/etc/tap", "tokens.json"),
			Redis:   config.Redis{Address: "127.0.0.1:6379", KeyPrefix: "tiktok-auth-proxy:"},
		},
		Credentials: []config.Credential{{
			Name: "main", Kind: "advertiser", AppID: "7123456789012345678", AppSecret: "s3cr3t", Default: true,
		}},
		Routing:    config.Routing{CredentialHeader: "X-TikTok-Credential", MaxInspectBytes: 1048576},
		Breaker:    config.Breaker{ConsecutiveFailures: 5, OpenTimeout: 30 * time.Second},
		RateLimits: config.RateLimits{MaxWait: 10 * time.Second},
		Retry:      config.Retry{Attempts: 3, MaxWait: 10 * time.Second},
		Log:        config.Log{Level: "info", Format: "json"},
		Path:       "/etc/tap/config.yaml",
	}
	// The unexported line index differs by design; compare what users see.
	got := *c
	if !reflect.DeepEqual(exported(got), exported(want)) {
		t.Errorf("Parse(minimal) =\n%+v\nwant\n%+v", exported(got), exported(want))
	}
}

// exported renders a Config's exported fields with secrets revealed, for
// comparisons that must not depend on the unexported line index.
func exported(c config.Config) string {
	var b strings.Builder
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.IsExported() {
			fmt.Fprintf(&b, "%s=%v\n", f.Name, reveal(v.Field(i)))
		}
	}
	return b.String()
}

func reveal(v reflect.Value) any {
	if s, ok := v.Interface().(config.Secret); ok {
		return "secret:" + s.Value()
	}
	switch v.Kind() {
	case reflect.Struct:
		parts := make([]string, 0, v.NumField())
		for i := range v.NumField() {
			parts = append(parts, fmt.Sprintf("%s:%v", v.Type().Field(i).Name, reveal(v.Field(i))))
		}
		return "{" + strings.Join(parts, " ") + "}"
	case reflect.Slice:
		parts := make([]string, 0, v.Len())
		for i := range v.Len() {
			parts = append(parts, fmt.Sprint(reveal(v.Index(i))))
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return v.Interface()
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		path   string // default config.yaml
		noFile bool   // parse with path ""
		env    map[string]string
		unset  []string // variables unset for the case
		check  func(t *testing.T, c *config.Config)
	}{
		{
			name: "redirect url follows the admin port",
			yaml: "admin_listen: 127.0.0.1:9091\n" + minimal,
			check: func(t *testing.T, c *config.Config) {
				equal(t, "oauth.redirect_url", c.OAuth.RedirectURL, "http://localhost:9091/oauth/callback")
			},
		},
		{
			name: "explicit values are kept",
			yaml: `
listen: localhost:9000
upstream: {base_url: "http://127.0.0.1:7000/", timeout: 5s}
oauth: {redirect_url: "https://proxy.example.com/oauth/callback"}
tokens: {refresh_before: 10m}
store: {backend: file, path: /var/lib/tap/tokens.json, redis: {address: "redis:6379", db: 2, key_prefix: "x:", tls: true}}
routing: {credential_header: X-Cred, max_inspect_bytes: 10}
breaker: {consecutive_failures: 2, open_timeout: 1m}
rate_limits: {tier: advanced, endpoints: {/open_api/v1.3/ad/create/: 5}, max_wait: 3s}
retry: {attempts: 1, max_wait: 2s}
log: {level: debug, format: text}
` + minimal,
			check: func(t *testing.T, c *config.Config) {
				equal(t, "listen", c.Listen, "localhost:9000")
				equal(t, "base_url (trailing slash trimmed)", c.Upstream.BaseURL, "http://127.0.0.1:7000")
				equal(t, "timeout", c.Upstream.Timeout, 5*time.Second)
				equal(t, "redirect_url", c.OAuth.RedirectURL, "https://proxy.example.com/oauth/callback")
				equal(t, "refresh_before", c.Tokens.RefreshBefore, 10*time.Minute)
				equal(t, "store", fmt.Sprint(c.Store.Backend, " ", c.Store.Path), "file /var/lib/tap/tokens.json")
				equal(t, "redis", fmt.Sprint(c.Store.Redis.Address, " ", c.Store.Redis.DB, " ", c.Store.Redis.KeyPrefix, " ", c.Store.Redis.TLS), "redis:6379 2 x: true")
				equal(t, "routing", fmt.Sprint(c.Routing.CredentialHeader, " ", c.Routing.MaxInspectBytes), "X-Cred 10")
				equal(t, "breaker", fmt.Sprint(c.Breaker.ConsecutiveFailures, " ", c.Breaker.OpenTimeout), "2 1m0s")
				equal(t, "rate_limits", fmt.Sprint(c.RateLimits), "{advanced map[/open_api/v1.3/ad/create/:5] 3s}")
				equal(t, "retry", c.Retry, config.Retry{Attempts: 1, MaxWait: 2 * time.Second})
				equal(t, "log", c.Log, config.Log{Level: "debug", Format: "text"})
			},
		},
		{
			name:   "relative store path without a file stays relative",
			yaml:   minimal,
			noFile: true,
			check: func(t *testing.T, c *config.Config) {
				equal(t, "store.path", c.Store.Path, "./tokens.json")
			},
		},
		{
			name: "relative paths are anchored at the config file's directory",
			yaml: "store: {path: data/t.json}\n" + minimal,
			path: "deploy/config.yaml",
			check: func(t *testing.T, c *config.Config) {
				equal(t, "store.path", c.Store.Path, filepath.Join("deploy", "data", "t.json"))
			},
		},
		{
			name: "two credentials: the marked one is the default, kinds default",
			yaml: `
credentials:
  - {name: a, app_id: "1", app_secret: x, advertiser_ids: ["11"]}
  - {name: b, kind: tiktok_account, app_id: key, app_secret: y, default: true, rate_limit: {qps: 2.5}}
`,
			check: func(t *testing.T, c *config.Config) {
				d, ok := c.DefaultCredential()
				if !ok || d.Name != "b" {
					t.Fatalf("DefaultCredential() = %v, %v; want b", d, ok)
				}
				equal(t, "a.kind", c.Credentials[0].Kind, config.KindAdvertiser)
				equal(t, "a.default", c.Credentials[0].Default, false)
				equal(t, "b.kind", c.Credentials[1].Kind, config.KindTikTokAccount)
				equal(t, "burst = ceil(qps)", c.Credentials[1].RateLimit.Burst, 3)
				equal(t, "a.burst stays 0 when off", c.Credentials[0].RateLimit.Burst, 0)
			},
		},
		{
			name: "two credentials without a default have none",
			yaml: "credentials: [{name: a, app_id: '1', app_secret: x}, {name: b, app_id: '2', app_secret: y}]\n",
			check: func(t *testing.T, c *config.Config) {
				if d, ok := c.DefaultCredential(); ok {
					t.Errorf("DefaultCredential() = %s, want none", d.Name)
				}
			},
		},
		{
			name: "environment expansion",
			yaml: `
# ${NOT_SET_ANYWHERE} in a comment is left alone
listen: 0.0.0.0:${TAP_PORT}
admin_listen: 127.0.0.1:8081
store:
  redis: {db: "${TAP_DB}", address: "${TAP_REDIS}"}
credentials:
  - name: main
    description: costs $${HOME} and $5
    app_id: "${TAP_APP_ID}"
    app_secret: ${TAP_SECRET}
clients:
  - {name: ci, token: "${TAP_TOKEN}", credentials: [main]}
`,
			env: map[string]string{
				"TAP_PORT": "9000", "TAP_DB": "3", "TAP_REDIS": "r:1", "TAP_APP_ID": "0042",
				"TAP_SECRET": "a: b # not a comment", "TAP_TOKEN": "0070000000000000001",
			},
			check: func(t *testing.T, c *config.Config) {
				equal(t, "listen", c.Listen, "0.0.0.0:9000")
				equal(t, "description", c.Credentials[0].Description, "costs ${HOME} and $5")
				equal(t, "app_id keeps leading zeros", c.Credentials[0].AppID, "0042")
				equal(t, "secret is taken verbatim", c.Credentials[0].AppSecret.Value(), "a: b # not a comment")
				equal(t, "redis address", c.Store.Redis.Address, "r:1")
				equal(t, "a number-like token stays text", c.Clients[0].Token.Value(), "0070000000000000001")
			},
		},
		{
			// ${VAR:-default}: the default stands in for an unset or empty
			// variable (as in the shell); a set one wins; an explicit empty
			// default is allowed even for the encryption key.
			name: "expansion with defaults",
			yaml: `
listen: ${TAP_UNSET_LISTEN:-127.0.0.1:9000}
admin_listen: "${TAP_EMPTY_ADMIN:-127.0.0.1:9001}"
log: {level: "${TAP_LEVEL:-info}"}
store: {encryption_key: "${TAP_UNSET_KEY:-}"}
breaker: {consecutive_failures: "${TAP_UNSET_FAILS:-9}"}
` + minimal,
			env:   map[string]string{"TAP_EMPTY_ADMIN": "", "TAP_LEVEL": "debug"},
			unset: []string{"TAP_UNSET_LISTEN", "TAP_UNSET_KEY", "TAP_UNSET_FAILS"},
			check: func(t *testing.T, c *config.Config) {
				equal(t, "listen from the default", c.Listen, "127.0.0.1:9000")
				equal(t, "admin_listen from the default of an empty variable", c.AdminListen, "127.0.0.1:9001")
				equal(t, "log.level from the variable", c.Log.Level, "debug")
				equal(t, "encryption_key from an explicit empty default", c.Store.EncryptionKey.Value(), "")
				equal(t, "a default is typed like a literal", c.Breaker.ConsecutiveFailures, uint32(9))
			},
		},
		{
			name: "unquoted expansion is typed like a literal",
			yaml: "store: {redis: {db: 0}}\nbreaker:\n  consecutive_failures: ${TAP_FAILS}\n  open_timeout: ${TAP_OPEN}\n" + minimal,
			env:  map[string]string{"TAP_FAILS": "7", "TAP_OPEN": "2m"},
			check: func(t *testing.T, c *config.Config) {
				equal(t, "consecutive_failures", c.Breaker.ConsecutiveFailures, uint32(7))
				equal(t, "open_timeout", c.Breaker.OpenTimeout, 2*time.Minute)
			},
		},
		{
			name: "unquoted large advertiser ids keep every digit",
			yaml: "credentials: [{name: a, app_id: '1', app_secret: x, advertiser_ids: [7012345678901234567, 0012]}]\n",
			check: func(t *testing.T, c *config.Config) {
				equal(t, "advertiser_ids", fmt.Sprint(c.Credentials[0].AdvertiserIDs), "[7012345678901234567 0012]")
			},
		},
		{
			name: "non-loopback listeners with clients and admin token",
			yaml: `
listen: 0.0.0.0:8080
admin_listen: "[::]:8081"
admin_token: adm-0123456789abcdef
credentials: [{name: main, app_id: "1", app_secret: x}]
clients: [{name: ci, token: t-0123456789abcdef, credentials: [main]}]
store: {encryption_key: ` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `}
`,
			check: func(t *testing.T, c *config.Config) {
				key, err := c.Store.Key()
				if err != nil || len(key) != 32 {
					t.Errorf("Store.Key() = %d bytes, %v; want 32 bytes", len(key), err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			for _, k := range tc.unset {
				t.Setenv(k, "") // restored after the test
				os.Unsetenv(k)
			}
			path := "config.yaml"
			if tc.path != "" {
				path = tc.path
			}
			if tc.noFile {
				path = ""
			}
			c, err := config.Parse([]byte(tc.yaml), path)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tc.check(t, c)
		})
	}
}

func equal[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestExampleConfig(t *testing.T) {
	t.Setenv("TIKTOK_APP_SECRET", "example-secret")
	const path = "../config.example.yaml"
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("config.example.yaml does not load: %v", err)
	}
	equal(t, "app_secret from the environment", c.Credentials[0].AppSecret.Value(), "example-secret")

	// Every key of the config must be shown (and so explained) in the
	// example, except inside clients and forward_proxy whose examples are
	// comments because they are off by default.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, key := range yamlKeys(reflect.TypeFor[config.Config](), "") {
		if !hasKey(doc, key) {
			t.Errorf("config.example.yaml lacks %s", key)
		}
	}
	for _, key := range []string{"clients:", "token:", "forward_proxy:", "ca_cert:", "ca_key:", "hosts:", "${VAR:-default}"} {
		if !bytes.Contains(data, []byte(key)) {
			t.Errorf("config.example.yaml does not mention %s", key)
		}
	}
}

// yamlKeys lists the dotted key paths of t; a list of structs contributes
// the keys of its first element ("credentials.name").
func yamlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		key := prefix + name
		keys = append(keys, key)
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Duration]() && name != "clients" && name != "forward_proxy" {
			keys = append(keys, yamlKeys(ft, key+".")...)
		}
	}
	return keys
}

func hasKey(doc any, key string) bool {
	first, rest, more := strings.Cut(key, ".")
	if list, ok := doc.([]any); ok {
		if len(list) == 0 {
			return false
		}
		doc = list[0]
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return false
	}
	v, ok := m[first]
	if !ok {
		return false
	}
	return !more || hasKey(v, rest)
}

func TestValidateBuiltInCode(t *testing.T) {
	c := &config.Config{
		Listen: "127.0.0.1:8080", AdminListen: "127.0.0.1:8081",
		Upstream: config.Upstream{BaseURL: "https://business-api.tiktok.com"},
		OAuth:    config.OAuth{RedirectURL: "http://localhost:8081/oauth/callback"},
		Store:    config.Store{Backend: "file"},
		Credentials: []config.Credential{
			{Name: "main", Kind: config.KindAdvertiser, AppID: "1", AppSecret: "x"},
			{Name: "main", Kind: config.KindAdvertiser, AppID: "2", AppSecret: "y"},
		},
		Routing: config.Routing{CredentialHeader: "X-TikTok-Credential"},
		Log:     config.Log{Level: "info", Format: "json"},
	}
	err := c.Validate()
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate() = %v, want a *ValidationError", err)
	}
	want := `config: credentials[1].name: duplicate name "main" (already used by credentials[0]); give each credential its own name`
	if err.Error() != want {
		t.Errorf("Validate() =\n%s\nwant\n%s", err, want)
	}
	if ve.Problems[0].Line != 0 {
		t.Errorf("Line = %d, want 0 for a config built in code", ve.Problems[0].Line)
	}

	c.Credentials[1].Name = "other"
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() after the fix = %v, want nil", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(absent) = %v, want an error wrapping os.ErrNotExist", err)
	}
	var ve *config.ValidationError
	if errors.As(err, &ve) {
		t.Errorf("a missing file is not a validation problem: %v", err)
	}
}

func TestCredentialLookup(t *testing.T) {
	c, err := config.Parse([]byte("credentials: [{name: a, app_id: '1', app_secret: x}, {name: b, app_id: '2', app_secret: y, default: true}]\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		wantOK bool
		appID  string
	}{
		{"a", true, "1"},
		{"b", true, "2"},
		{"c", false, ""},
		{"", false, ""},
	} {
		got, ok := c.Credential(tc.name)
		if ok != tc.wantOK || (ok && got.AppID != tc.appID) {
			t.Errorf("Credential(%q) = %+v, %v; want app_id %q, %v", tc.name, got, ok, tc.appID, tc.wantOK)
		}
	}
	got, ok := c.Credential("a")
	if !ok || got != &c.Credentials[0] {
		t.Errorf("Credential returns a copy, want a pointer into Credentials")
	}
}

func TestStoreKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, 32)
	tests := []struct {
		name    string
		value   string
		want    []byte
		wantErr string
	}{
		{"empty means no encryption", "", nil, ""},
		{"padded base64", base64.StdEncoding.EncodeToString(key), key, ""},
		{"unpadded base64", base64.RawStdEncoding.EncodeToString(key), key, ""},
		{"surrounding whitespace", " " + base64.StdEncoding.EncodeToString(key) + "\n", key, ""},
		{"16 bytes", base64.StdEncoding.EncodeToString(key[:16]), nil, "config: encryption key must be base64 of exactly 32 bytes, got 16 bytes"},
		{"not base64", "%%%%", nil, "config: encryption key is not valid base64: illegal base64 data at input byte 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.Store{EncryptionKey: config.Secret(tc.value)}.Key()
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Key() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Errorf("Key() = %x, %v; want %x", got, err, tc.want)
			}
		})
	}
}

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"127.1.2.3:8080", true},
		{"localhost:8080", true},
		{"LocalHost:8080", true},
		{"[::1]:8080", true},
		{"[::ffff:127.0.0.1]:8080", true},
		{":8080", false},
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{"10.0.0.1:8080", false},
		{"128.0.0.1:8080", false},
		{"example.com:8080", false},
		{"localhost.example.com:8080", false},
		{"127.0.0.1", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := config.IsLoopback(tc.addr); got != tc.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

// TestEndpointsFor: a credential's own oauth: URLs win over the oauth:
// section, which fills the ones it leaves empty.
func TestEndpointsFor(t *testing.T) {
	c, err := config.Parse([]byte(`
oauth: {authorize_url: "http://sim/auth", token_url: "http://sim/token"}
credentials:
  - {name: ads, app_id: "1", app_secret: s, default: true}
  - {name: tt, kind: tiktok_account, app_id: "2", app_secret: s, oauth: {authorize_url: "http://sim/tt/auth", refresh_url: "http://sim/tt/refresh"}}
`), "config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "ads", c.EndpointsFor(c.Credentials[0]), config.Endpoints{AuthorizeURL: "http://sim/auth", TokenURL: "http://sim/token"})
	equal(t, "tt", c.EndpointsFor(c.Credentials[1]), config.Endpoints{AuthorizeURL: "http://sim/tt/auth", TokenURL: "http://sim/token", RefreshURL: "http://sim/tt/refresh"})
}

// TestLoadWithoutCallerSecrets: status and healthcheck load a config whose
// app secrets and client tokens are not in their environment; every other
// variable, and every other check, still applies.
func TestLoadWithoutCallerSecrets(t *testing.T) {
	t.Setenv("TAP_UNSET_SECRET", "")
	os.Unsetenv("TAP_UNSET_SECRET")
	path := filepath.Join(t.TempDir(), "config.yaml")
	doc := `listen: 0.0.0.0:8080
credentials:
  - {name: main, app_id: "1", app_secret: "${TAP_UNSET_SECRET}"}
clients:
  - {name: etl, token: "${TAP_UNSET_SECRET}", credentials: [main]}
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err == nil || !strings.Contains(err.Error(), "TAP_UNSET_SECRET is not set") {
		t.Errorf("Load: %v, want the unset variable reported", err)
	}
	c, err := config.LoadWith(path, config.LoadOptions{WithoutCallerSecrets: true})
	if err != nil {
		t.Fatalf("LoadWith(WithoutCallerSecrets): %v", err)
	}
	equal(t, "app_secret left empty", c.Credentials[0].AppSecret.Value(), "")

	if err := os.WriteFile(path, []byte(doc+"admin_listen: 0.0.0.0:8081\nadmin_token: ${TAP_UNSET_SECRET}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = config.LoadWith(path, config.LoadOptions{WithoutCallerSecrets: true})
	if err == nil || !strings.Contains(err.Error(), "admin_token: environment variable TAP_UNSET_SECRET is not set") || strings.Contains(err.Error(), "app_secret") {
		t.Errorf("LoadWith with an unset admin_token: %v, want only admin_token reported", err)
	}
}
