package config_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// secretValues are planted in every Secret field; none may ever be printed.
var secretValues = []string{
	"ADMIN-TOKEN-VALUE", "ENCRYPTION-KEY-VALUE", "REDIS-PASSWORD-VALUE",
	"APP-SECRET-VALUE", "CLIENT-TOKEN-VALUE",
}

func secretConfig(t *testing.T) *config.Config {
	t.Helper()
	t.Setenv("TEST_APP_SECRET", "APP-SECRET-VALUE")
	c, err := config.Parse([]byte(`
admin_token: ADMIN-TOKEN-VALUE
store:
  redis: {password: REDIS-PASSWORD-VALUE}
credentials:
  - {name: main, app_id: "1", app_secret: "${TEST_APP_SECRET}"}
clients:
  - {name: ci, token: CLIENT-TOKEN-VALUE, credentials: [main]}
`), "config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Not valid as a key, so it is set after loading.
	c.Store.EncryptionKey = "ENCRYPTION-KEY-VALUE"
	return c
}

func assertNoSecret(t *testing.T, how, out string) {
	t.Helper()
	for _, s := range secretValues {
		if strings.Contains(out, s) {
			t.Errorf("%s shows secret %s:\n%s", how, s, out)
		}
	}
	if !strings.Contains(out, "[redacted]") {
		t.Errorf("%s does not show [redacted]; the test is not looking at the secrets:\n%s", how, out)
	}
}

func TestSecretsNeverShow(t *testing.T) {
	c := secretConfig(t)
	renderers := map[string]func() (string, error){
		"%v":  func() (string, error) { return fmt.Sprintf("%v", *c), nil },
		"%+v": func() (string, error) { return fmt.Sprintf("%+v", *c), nil },
		"%s":  func() (string, error) { return fmt.Sprintf("secret=%s", c.Credentials[0].AppSecret), nil },
		"%q":  func() (string, error) { return fmt.Sprintf("%q", c.Credentials[0].AppSecret), nil },
		"%#v": func() (string, error) { return fmt.Sprintf("%#v", *c), nil },
		"%x": func() (string, error) {
			b, err := hex.DecodeString(fmt.Sprintf("%x", c.Credentials[0].AppSecret))
			return string(b), err
		},
		"json": func() (string, error) {
			b, err := json.Marshal(c)
			return string(b), err
		},
		"yaml": func() (string, error) {
			b, err := yaml.Marshal(c)
			return string(b), err
		},
		"Redacted": func() (string, error) {
			b, err := c.Redacted()
			return string(b), err
		},
		"slog JSON": func() (string, error) {
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("loaded", "config", c, "secret", c.AdminToken)
			return buf.String(), nil
		},
		"slog text": func() (string, error) {
			var buf bytes.Buffer
			slog.New(slog.NewTextHandler(&buf, nil)).Info("loaded", "secret", c.Store.Redis.Password, "client", c.Clients[0])
			return buf.String(), nil
		},
	}
	for how, render := range renderers {
		t.Run(how, func(t *testing.T) {
			out, err := render()
			if err != nil {
				t.Fatal(err)
			}
			assertNoSecret(t, how, out)
		})
	}
}

func TestSecretEmptyAndValue(t *testing.T) {
	var empty config.Secret
	if got := fmt.Sprint(empty); got != "" {
		t.Errorf("empty Secret prints %q, want \"\" so an unset secret is visible as unset", got)
	}
	s := config.Secret("v")
	if s.Value() != "v" {
		t.Errorf("Value() = %q, want v", s.Value())
	}
}

func TestRedactedRoundTrip(t *testing.T) {
	c := secretConfig(t)
	out, err := c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	// The rendering is the effective config: defaults filled, durations in Go syntax.
	for _, want := range []string{"listen: 127.0.0.1:8080", "timeout: 1m0s", "refresh_before: 1h0m0s", "admin_token: '[redacted]'"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("Redacted() lacks %q:\n%s", want, out)
		}
	}
	// It must itself be a loadable config (secrets aside), so operators can
	// start from it.
	dir := t.TempDir()
	path := filepath.Join(dir, "effective.yaml")
	if err := os.WriteFile(path, bytes.ReplaceAll(out, []byte("'[redacted]'"), []byte("x")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err == nil || !strings.Contains(err.Error(), "store.encryption_key") {
		t.Errorf("Load(rendered) = %v, want only the placeholder encryption key rejected", err)
	}
}

func TestValidationErrorHasNoSecret(t *testing.T) {
	_, err := config.Parse([]byte(`
credentials: [{name: main, app_id: "1", app_secret: APP-SECRET-VALUE}]
clients:
  - {name: a, token: CLIENT-TOKEN-VALUE, credentials: [main]}
  - {name: b, token: CLIENT-TOKEN-VALUE, credentials: [main]}
store: {encryption_key: ENCRYPTION-KEY-VALUE}
`), "config.yaml")
	if err == nil {
		t.Fatal("Parse accepted duplicate client tokens and a bad key")
	}
	for _, s := range secretValues {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error shows secret %s: %v", s, err)
		}
	}
	if !strings.Contains(err.Error(), "same token as clients[0]") || !strings.Contains(err.Error(), "store.encryption_key") {
		t.Errorf("error lacks the expected problems: %v", err)
	}
}

// TestEnvironmentValuesNeverShow: a value that came from ${VAR} may be a
// secret put in the wrong key, so a message names the reference instead.
func TestEnvironmentValuesNeverShow(t *testing.T) {
	const leak = "ENV-SECRET-VALUE"
	tests := []struct {
		name, yaml, want string
	}{
		{"bad name", `credentials: [{name: "${V}", app_id: "1", app_secret: s}]`,
			"credentials[0].name: the value of ${V} is not a valid name"},
		{"bad listen", "listen: \"${V}\"\ncredentials: [{name: main, app_id: \"1\", app_secret: s}]",
			"listen: the value of ${V} is not a host:port address"},
		{"bad url", "upstream: {base_url: \"x${V}\"}\ncredentials: [{name: main, app_id: \"1\", app_secret: s}]",
			`upstream.base_url: the value of "x${V}" is not an absolute http(s) URL`},
		{"not a duration", "upstream: {timeout: \"${V}\"}\ncredentials: [{name: main, app_id: \"1\", app_secret: s}]",
			"upstream.timeout: the value of ${V} is not a duration"},
		{"not a number", "routing: {max_inspect_bytes: \"${V}\"}\ncredentials: [{name: main, app_id: \"1\", app_secret: s}]",
			"routing.max_inspect_bytes: the value of ${V}"},
		{"bad log level", "log: {level: \"${V}\"}\ncredentials: [{name: main, app_id: \"1\", app_secret: s}]",
			"log.level: unknown level the value of ${V}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("V", leak)
			_, err := config.Parse([]byte(tc.yaml), "config.yaml")
			if err == nil {
				t.Fatal("Parse accepted the config")
			}
			if strings.Contains(err.Error(), leak) || strings.Contains(err.Error(), leak[:7]) {
				t.Errorf("error shows the environment's value: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}
