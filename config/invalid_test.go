package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// invalidCases pairs every testdata/invalid-*.yaml with the exact problems
// Load must report, each as "LINE: PATH: MESSAGE" after the file name.
var invalidCases = []struct {
	file string
	want []string
}{
	{"invalid-admin-no-token.yaml", []string{
		`1: admin_listen: :8081 is reachable from other machines but admin_token is empty; set admin_token (e.g. ${ADMIN_TOKEN}), or listen on 127.0.0.1`,
	}},
	{"invalid-allowed-hosts.yaml", []string{
		`2: allowed_hosts[1]: "http://proxy.internal" is not a host name; write the name a Host header carries, e.g. proxy.internal or proxy.internal:8080`,
		`2: allowed_hosts[2]: "" is not a host name; write the name a Host header carries, e.g. proxy.internal or proxy.internal:8080`,
	}},
	{"invalid-advertiser-id.yaml", []string{
		`5: credentials[0].advertiser_ids[0]: "70123-456" is not an advertiser id; advertiser ids are digits only`,
		`5: credentials[0].advertiser_ids[1]: "" is not an advertiser id; advertiser ids are digits only`,
	}},
	{"invalid-advertiser-twice.yaml", []string{
		`11: credentials[1].advertiser_ids[1]: advertiser 7012345678901234567 is already listed under credentials[0] ("main"); an advertiser can belong to only one credential`,
	}},
	{"invalid-bad-duration.yaml", []string{
		`2: upstream.timeout: "30" is not a duration; write a Go duration such as 30s, 5m or 1h`,
		`4: tokens.refresh_before: "an hour" is not a duration; write a Go duration such as 30s, 5m or 1h`,
	}},
	{"invalid-base-url-path.yaml", []string{
		`2: upstream.base_url: "https://business-api.tiktok.com/open_api/v1.3" has a path; give only scheme and host, e.g. https://business-api.tiktok.com`,
	}},
	{"invalid-base-url.yaml", []string{
		`2: upstream.base_url: "business-api.tiktok.com" is not an absolute http(s) URL; write scheme and host, e.g. https://business-api.tiktok.com`,
	}},
	{"invalid-client-credential.yaml", []string{
		`11: clients[0].credentials[1]: unknown credential "mian"; use one of: main, other`,
		`12: clients[1].credentials: empty; list the credentials this client may use`,
	}},
	{"invalid-client-duplicate.yaml", []string{
		`9: clients[1].name: duplicate name "reporting" (already used by clients[0]); give each client its own name`,
		`10: clients[1].token: same token as clients[0]; give each client its own token`,
	}},
	{"invalid-client-token.yaml", []string{
		`6: clients[0].token: missing; set a long random token, e.g. token: ${CLIENT_TOKEN}`,
		`8: clients[1].name: missing; name the client (it appears in logs)`,
	}},
	{"invalid-credential-header.yaml", []string{
		`2: routing.credential_header: "X TikTok: Credential" is not a valid HTTP header name; use letters, digits and -, e.g. X-TikTok-Credential`,
	}},
	{"invalid-credential-name.yaml", []string{
		`2: credentials[0].name: "Main Account" is not a valid name; use only lowercase letters, digits, _ and -`,
		`6: credentials[1].name: missing; give the credential a name such as main`,
	}},
	{"invalid-duplicate-key.yaml", []string{
		`6: listen: key "listen" appears twice (first on line 1); keep only one`,
	}},
	{"invalid-duplicate-name.yaml", []string{
		`6: credentials[1].name: duplicate name "main" (already used by credentials[0]); give each credential its own name`,
	}},
	{"invalid-empty-app-id.yaml", []string{
		`2: credentials[0].app_id: missing; copy the app's App ID from the TikTok developer portal`,
	}},
	{"invalid-empty-secret.yaml", []string{
		`4: credentials[0].app_secret: missing; set it from the environment, e.g. app_secret: ${TIKTOK_APP_SECRET}`,
	}},
	{"invalid-empty-var.yaml", []string{
		`2: admin_token: CONFIG_TEST_EMPTY is set but empty; 0.0.0.0:8081 is reachable from other machines, so it needs a token`,
		`4: store.encryption_key: CONFIG_TEST_EMPTY is set but empty, which would store tokens unencrypted; set it (openssl rand -base64 32), or remove encryption_key to store them in plaintext`,
		`5: store.path: CONFIG_TEST_EMPTY is set but empty, so the default testdata/tokens.json would be used; set it, or write ${CONFIG_TEST_EMPTY:-} to use the default`,
		`8: credentials[0].app_id: CONFIG_TEST_EMPTY is set but empty; copy the app's App ID from the TikTok developer portal`,
		`9: credentials[0].app_secret: CONFIG_TEST_EMPTY is set but empty; set it from the environment, e.g. app_secret: ${TIKTOK_APP_SECRET}`,
		`10: listen: CONFIG_TEST_EMPTY is set but empty, so the default 127.0.0.1:8080 would be used; set it, or write ${CONFIG_TEST_EMPTY:-} to use the default`,
	}},
	{"invalid-empty.yaml", []string{
		`the file is empty; start from config.example.yaml`,
	}},
	{"invalid-encryption-key-base64.yaml", []string{
		`2: store.encryption_key: encryption key is not valid base64: illegal base64 data at input byte 3; generate a key with: openssl rand -base64 32`,
	}},
	{"invalid-encryption-key.yaml", []string{
		`2: store.encryption_key: encryption key must be base64 of exactly 32 bytes, got 9 bytes; generate a key with: openssl rand -base64 32`,
	}},
	{"invalid-forward-proxy.yaml", []string{
		`1: forward_proxy.ca_cert: missing; the forward proxy needs a CA certificate and key (PEM files): tiktok-auth-proxy ca --out DIR creates them`,
		`1: forward_proxy.ca_key: missing; the forward proxy needs a CA certificate and key (PEM files): tiktok-auth-proxy ca --out DIR creates them`,
		`2: forward_proxy.listen: 0.0.0.0:3128 is reachable from other machines but no clients are configured; add clients with tokens, or listen on 127.0.0.1`,
		`3: forward_proxy.hosts[0]: "https://business-api.tiktok.com" is not a host name; write e.g. business-api.tiktok.com`,
	}},
	{"invalid-kind.yaml", []string{
		`3: credentials[0].kind: unknown kind "business"; use advertiser or tiktok_account`,
	}},
	{"invalid-listen-address.yaml", []string{
		`1: listen: "8080" is not a host:port address; write e.g. 127.0.0.1:8080`,
		`2: admin_listen: "localhost" is not a host:port address; write e.g. 127.0.0.1:8080`,
	}},
	{"invalid-listen-no-clients.yaml", []string{
		`1: listen: 0.0.0.0:8080 is reachable from other machines but no clients are configured; add clients with tokens, or listen on 127.0.0.1`,
	}},
	{"invalid-log.yaml", []string{
		`6: log.level: unknown level "verbose"; use debug, info, warn or error`,
		`7: log.format: unknown format "logfmt"; use json or text`,
	}},
	{"invalid-mixed.yaml", []string{
		`2: listen: 0.0.0.0:8080 is reachable from other machines but no clients are configured; add clients with tokens, or listen on 127.0.0.1`,
		`4: upstream.timeout: "soon" is not a duration; write a Go duration such as 30s, 5m or 1h`,
		`8: credentials[0].app_secret: environment variable CONFIG_TEST_UNSET_SECRET is not set; export it before starting, or write the value in the file`,
		`9: credentials[0].colour: unknown key "colour"; check its spelling and indentation (valid keys here: name, description, kind, app_id, app_secret, advertiser_ids, default, rate_limit, oauth)`,
		`10: credentials[1].name: duplicate name "main" (already used by credentials[0]); give each credential its own name`,
	}},
	{"invalid-negative.yaml", []string{
		`2: upstream.timeout: must not be negative; write a positive duration such as 30s, or remove the key for the default`,
		`4: tokens.refresh_before: must not be negative; write a positive duration such as 30s, or remove the key for the default`,
		`7: store.redis.db: must not be negative; redis databases are numbered from 0`,
		`9: routing.max_inspect_bytes: must not be negative; write a size in bytes such as 1048576, or remove the key for the default`,
		`11: breaker.open_timeout: must not be negative; write a positive duration such as 30s, or remove the key for the default`,
	}},
	{"invalid-near-key.yaml", []string{
		`1: admin_listn: unknown key "admin_listn"; did you mean admin_listen? (valid keys here: listen, allowed_hosts, admin_listen, admin_token, upstream, oauth, tokens, store, credentials, routing, breaker, rate_limits, retry, clients, forward_proxy, log)`,
		`2: Listen: unknown key "Listen"; did you mean listen? (valid keys here: listen, allowed_hosts, admin_listen, admin_token, upstream, oauth, tokens, store, credentials, routing, breaker, rate_limits, retry, clients, forward_proxy, log)`,
		`7: credentials[0].app_secert: unknown key "app_secert"; did you mean app_secret? (valid keys here: name, description, kind, app_id, app_secret, advertiser_ids, default, rate_limit, oauth)`,
	}},
	{"invalid-no-credentials.yaml", []string{
		`2: credentials: no credentials configured; add at least one (name, app_id, app_secret), see config.example.yaml`,
	}},
	{"invalid-oauth-url.yaml", []string{
		`2: oauth.redirect_url: "/oauth/callback" is not an absolute http(s) URL; write scheme and host, e.g. http://localhost:8081/oauth/callback`,
		`3: oauth.authorize_url: "ftp://example.com/auth" is not an absolute http(s) URL; write scheme and host, e.g. https://business-api.tiktok.com/...`,
		`4: oauth.token_url: "https://" is not an absolute http(s) URL; write scheme and host, e.g. https://business-api.tiktok.com/...`,
		`9: credentials[0].oauth.refresh_url: "refresh" is not an absolute http(s) URL; write scheme and host, e.g. https://business-api.tiktok.com/...`,
	}},
	{"invalid-rate-limit.yaml", []string{
		`6: credentials[0].rate_limit.qps: must not be negative; use 0 to turn the limit off`,
		`7: credentials[0].rate_limit.burst: must not be negative; use 0 for the default (qps rounded up)`,
	}},
	{"invalid-rate-limits.yaml", []string{
		`4: rate_limits.tier: unknown tier "gold"; use basic, advanced, premium or ultimate (TikTok's 10, 20, 30 or 50 QPS), or remove the key`,
		`6: rate_limits.endpoints./open_api/v1.3/report/task/create/: must be a positive number of requests per second, e.g. 2`,
		`7: rate_limits.endpoints.report/task/create: "report/task/create" is not an API path; write the whole path as TikTok spells it, e.g. /open_api/v1.3/report/task/create/`,
		`8: rate_limits.max_wait: must not be negative; write a positive duration such as 30s, or remove the key for the default`,
		`10: retry.attempts: must not be negative; 1 means no retry, 0 the default (3)`,
		`11: retry.max_wait: must not be negative; write a positive duration such as 30s, or remove the key for the default`,
	}},
	{"invalid-same-listen.yaml", []string{
		`2: admin_listen: same address as listen (127.0.0.1:8080); give the admin listener its own port`,
	}},
	{"invalid-store-backend.yaml", []string{
		`2: store.backend: unknown backend "postgres"; use file or redis`,
	}},
	{"invalid-short-token.yaml", []string{
		`3: admin_token: shorter than 16 characters; use a long random token, e.g. from: openssl rand -hex 32`,
		`10: clients[0].token: shorter than 16 characters; use a long random token, e.g. from: openssl rand -hex 32`,
	}},
	{"invalid-syntax.yaml", []string{
		`4: invalid YAML: did not find expected '-' indicator; check the indentation and quoting of this line`,
	}},
	{"invalid-top-level.yaml", []string{
		`1: the top level must be a mapping of keys such as listen: and credentials:; start from config.example.yaml`,
	}},
	{"invalid-two-defaults.yaml", []string{
		`9: credentials[1].default: credentials[0] is already the default; mark only one credential with default: true`,
	}},
	{"invalid-two-documents.yaml", []string{
		`3: a second YAML document starts here; a config file holds exactly one (remove the extra ---)`,
	}},
	{"invalid-unknown-key.yaml", []string{
		`4: upstream.timout: unknown key "timout"; did you mean timeout? (valid keys here: base_url, timeout)`,
		`9: credentials[0].advertiser: unknown key "advertiser"; check its spelling and indentation (valid keys here: name, description, kind, app_id, app_secret, advertiser_ids, default, rate_limit, oauth)`,
	}},
	{"invalid-unset-var.yaml", []string{
		`4: credentials[0].app_secret: environment variable CONFIG_TEST_UNSET_SECRET is not set; export it before starting, or write the value in the file`,
	}},
	{"invalid-redis-address.yaml", []string{
		`3: store.redis.address: "redis-without-port" is not a host:port address; write e.g. 127.0.0.1:8080`,
	}},
	{"invalid-var-in-flow.yaml", []string{
		`3: invalid YAML: did not find expected ',' or '}'; inside { } write "${VAR}" in double quotes`,
	}},
	{"invalid-var-syntax.yaml", []string{
		`1: admin_token: ${1BAD} is not a valid environment variable reference; use letters, digits and _ (e.g. ${TIKTOK_APP_SECRET}), or $${ for a literal ${`,
		`5: credentials[0].app_secret: unterminated ${ in value; write ${NAME}, or $${ for a literal ${`,
	}},
	{"invalid-wrong-type.yaml", []string{
		`1: upstream: "https://business-api.tiktok.com" is not a mapping of keys; see config.example.yaml for its keys`,
		`6: credentials[0].default: "maybe" is not true or false`,
		`7: credentials[0].rate_limit.qps: "fast" is not a number; write e.g. 10 or 2.5`,
		`8: credentials[0].advertiser_ids: "123" is not a list; write [a, b] or one "- item" per line`,
		`10: routing.max_inspect_bytes: "1MB" is not a whole number; write digits only`,
		`12: breaker.consecutive_failures: "-1" is not a whole number of zero or more; write digits, e.g. 5`,
	}},
}

func TestLoadInvalid(t *testing.T) {
	t.Setenv("CONFIG_TEST_UNSET_SECRET", "")
	os.Unsetenv("CONFIG_TEST_UNSET_SECRET")
	t.Setenv("CONFIG_TEST_EMPTY", "")
	t.Setenv("REDIS_PASSWORD", "")
	os.Unsetenv("REDIS_PASSWORD")

	files, err := filepath.Glob("testdata/invalid-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(invalidCases) {
		t.Errorf("%d testdata/invalid-*.yaml files but %d cases: every file needs its expected errors", len(files), len(invalidCases))
	}
	for _, tc := range invalidCases {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			c, err := config.Load(path)
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want an error", path, c)
			}
			var ve *config.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Load(%s) error %T is not a *ValidationError: %v", path, err, err)
			}
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				sep := ":"
				if !startsWithDigit(w) {
					sep = ": "
				}
				want[i] = path + sep + w
			}
			if got := err.Error(); got != strings.Join(want, "\n") {
				t.Errorf("Load(%s) error:\n%s\nwant:\n%s", path, got, strings.Join(want, "\n"))
			}
			if len(ve.Problems) != len(tc.want) {
				t.Errorf("%d problems, want %d", len(ve.Problems), len(tc.want))
			}
			if ve.File != path {
				t.Errorf("File = %q, want %q", ve.File, path)
			}
		})
	}
}

func startsWithDigit(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }
