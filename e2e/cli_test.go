package e2e

import (
	"encoding/json"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cliProc is a command of the binary whose stdin the test writes.
type cliProc struct {
	*proc
	stdin io.WriteCloser
}

func startCLI(t *testing.T, args ...string) *cliProc {
	t.Helper()
	c := &cliProc{}
	c.proc = launch(t, nil, &c.stdin, args...)
	return c
}

// wait waits for the command to exit by itself and returns its exit code.
func (c *cliProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("%v did not finish within %v", c.cmd.Args, timeout)
	}
	return c.cmd.ProcessState.ExitCode()
}

var consentURLRE = regexp.MustCompile(`http://\S+/portal/auth\?\S+`)

// consentURL waits for the command to print TikTok's consent URL.
func (c *cliProc) consentURL(t *testing.T) *url.URL {
	t.Helper()
	var raw string
	eventually(t, 20*time.Second, "the consent URL on stdout", func() bool {
		raw = consentURLRE.FindString(c.out.String())
		return raw != ""
	})
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

type statusJSON struct {
	Name           string `json:"name"`
	Authorized     bool   `json:"authorized"`
	ReauthRequired bool   `json:"reauthorization_required"`
	Advertisers    []struct {
		ID string `json:"id"`
	} `json:"advertisers"`
	Source struct {
		Kind     string `json:"kind"`
		Location string `json:"location"`
	} `json:"source"`
}

// With no serve running: authorize prints the consent URL, takes the pasted
// redirect URL, stores the grant; status then shows it, never a token.
func TestAuthorizeByPasteThenStatus(t *testing.T) {
	s := startSim(t)
	px := writeProxyConfig(t, s, proxyConfig{Credentials: twoCredentials})

	// Nothing authorized yet: exit 1 for monitoring, the JSON on stdout.
	code, out, errOut := runBounded(t, nil, 20*time.Second, "status", "--config", px.ConfigPath, "--json")
	var before []statusJSON
	if code != 1 || json.Unmarshal([]byte(out), &before) != nil || len(before) != 2 || before[0].Authorized {
		t.Fatalf("status before: exit %d: %s", code, out)
	}
	if want := "tiktok-auth-proxy: status: main: not authorized; other: not authorized\n"; errOut != want {
		t.Errorf("status before: stderr %q, want %q", errOut, want)
	}

	c := startCLI(t, "authorize", "--config", px.ConfigPath, "--credential", "other")
	consent := c.consentURL(t)
	if consent.Query().Get("app_id") != appOther || consent.Query().Get("redirect_uri") != px.AdminURL+"/oauth/callback" {
		t.Fatalf("consent URL %s: wrong app or redirect", consent)
	}
	var sc struct{ Code string }
	_ = json.Unmarshal(s.post(t, "/sim/code?app_id="+appOther+"&advertiser_ids="+advOther, nil), &sc)
	rememberSecret(sc.Code)
	redirected := px.AdminURL + "/oauth/callback?" + url.Values{"auth_code": {sc.Code}, "code": {sc.Code}, "state": {consent.Query().Get("state")}}.Encode()
	if _, err := io.WriteString(c.stdin, redirected+"\n"); err != nil {
		t.Fatal(err)
	}
	if code := c.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("authorize exit %d:\n%s", code, c.out.String())
	}
	if !strings.Contains(c.out.String(), advOther) {
		t.Errorf("authorize did not print the granted advertiser:\n%s", c.out.String())
	}
	// Its log lines follow log.format (json here), not slog's default.
	if !strings.Contains(c.out.String(), `"msg":"credential authorized"`) {
		t.Errorf("authorize did not log the grant as JSON:\n%s", c.out.String())
	}
	if l := regexp.MustCompile(`(?m)^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d .*$`).FindString(c.out.String()); l != "" {
		t.Errorf("authorize logged a line in slog's default format: %s", l)
	}

	code, out, _ = runBounded(t, nil, 20*time.Second, "status", "--config", px.ConfigPath, "--json")
	var after []statusJSON
	if code != 1 || json.Unmarshal([]byte(out), &after) != nil {
		t.Fatalf("status after (main still unauthorized): exit %d: %s", code, out)
	}
	if after[0].Authorized || !after[1].Authorized || len(after[1].Advertisers) != 1 || after[1].Advertisers[0].ID != advOther {
		t.Errorf("status after authorizing other: %+v", after)
	}
	for _, c := range after {
		if c.Source.Kind != "store" || c.Source.Location != filepath.Join(px.Dir, "tokens.json") {
			t.Errorf("status --json with no serve: %s's source %+v, want the store %s", c.Name, c.Source, filepath.Join(px.Dir, "tokens.json"))
		}
	}
	code, table, _ := runBounded(t, nil, 20*time.Second, "status", "--config", px.ConfigPath)
	if code != 1 || !strings.HasPrefix(table, "source: store "+filepath.Join(px.Dir, "tokens.json")+"\n") ||
		!regexp.MustCompile(`(?m)^other\s+yes\s+`+advOther).MatchString(table) {
		t.Errorf("status table: exit %d:\n%s", code, table)
	}
	for _, g := range s.grants(t) {
		for _, text := range []string{out, table, c.out.String()} {
			if strings.Contains(text, g.AccessToken) || (g.RefreshToken != "" && strings.Contains(text, g.RefreshToken)) {
				t.Errorf("a token was printed")
			}
		}
	}

	// The proxy started on that store serves the credential at once.
	px.run(t)
	status, _, b := httpDo(t, "GET", px.URL+"/open_api/v1.3/campaign/get/?advertiser_id="+advOther, nil, nil)
	if status != 200 || decodeEnvelope(t, b).Code != 0 {
		t.Errorf("proxy after CLI authorization: HTTP %d %s", status, b)
	}
}

// With serve running: authorize completes by itself when TikTok redirects
// the browser to the admin listener's callback.
func TestAuthorizeThroughRunningAdminListener(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials})
	c := startCLI(t, "authorize", "--config", px.ConfigPath, "--credential", "main")
	consent := c.consentURL(t)

	// The operator's browser: approve on the consent page, follow the
	// redirect to the admin listener (a browser other than the CLI's, so no
	// cookie).
	loc := approveConsent(t, consent, url.Values{"advertiser_id": {"7012345678901234567"}}, px.AdminURL)
	status, _, body := httpDo(t, "GET", loc, nil, nil)
	if status != 200 {
		t.Fatalf("callback: HTTP %d %s", status, body)
	}
	if code := c.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("authorize exit %d:\n%s", code, c.out.String())
	}
	if !strings.Contains(c.out.String(), "7012345678901234567") {
		t.Errorf("authorize did not print the granted advertiser:\n%s", c.out.String())
	}
	status, _, b := httpDo(t, "GET", px.URL+"/open_api/v1.3/campaign/get/?advertiser_id=7012345678901234567", nil, nil)
	if status != 200 || decodeEnvelope(t, b).Code != 0 {
		t.Errorf("proxy after authorization through the admin listener: HTTP %d %s", status, b)
	}
	code, out, _ := runBounded(t, nil, 20*time.Second, "status", "--config", px.ConfigPath, "--json")
	var st []statusJSON
	if code != 1 || json.Unmarshal([]byte(out), &st) != nil || len(st) != 2 {
		t.Fatalf("status --json with serve up (other not authorized): exit %d: %s", code, out)
	}
	for _, c := range st {
		if c.Source.Kind != "server" || c.Source.Location != px.AdminURL {
			t.Errorf("status --json with serve up: %s's source %+v, want the server at %s", c.Name, c.Source, px.AdminURL)
		}
	}
}

// SIGTERM while the authorize command long-polls the admin listener: serve
// does not hold its shutdown for the poll and exits 0, and the command keeps
// waiting for the listener or a pasted URL instead of failing.
func TestShutdownDuringAuthorizeLongPoll(t *testing.T) {
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials})
	c := startCLI(t, "authorize", "--config", px.ConfigPath, "--credential", "main")
	c.consentURL(t)
	if err := px.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	px.p.wantExit0(t, 15*time.Second, "SIGTERM while a long-poll was open")
	select {
	case <-c.done:
		t.Fatalf("authorize exited when the admin listener stopped:\n%s", c.out.String())
	default:
	}
	c.kill()
}

var (
	demoSimRE  = regexp.MustCompile(`TikTok simulator\s+(http://\S+)`)
	demoPageRE = regexp.MustCompile(`(http://\S+)/authorize\s`)
	demoCurlRE = regexp.MustCompile(`curl '(http://[^']+)'`)
)

// demoAppSecret is the secret in the demo's own config.
const demoAppSecret = "demo-simulator-secret"

// demo is a running `demo` command and what it printed.
type demo struct {
	p       *proc
	s       *sim   // the demo's in-process simulator
	px      *proxy // AdminURL only: the page the user opens
	curl    string // the printed curl's URL
	printed string
}

// startDemo runs `demo` on free ports, waits for its instructions and its
// admin listener. The simulator lives in the demo process, so the test must
// call d.s.rememberIssued itself before the demo stops.
func startDemo(t *testing.T) *demo {
	t.Helper()
	rememberSecret(demoAppSecret)
	p := start(t, nil, "demo", "--listen", freeAddr(t), "--admin-listen", freeAddr(t))
	eventually(t, 20*time.Second, "demo to print its instructions", func() bool {
		return demoCurlRE.MatchString(p.out.String())
	})
	out := p.out.String()
	d := &demo{p: p, printed: out, s: &sim{URL: demoSimRE.FindStringSubmatch(out)[1]},
		curl: demoCurlRE.FindStringSubmatch(out)[1], px: &proxy{AdminURL: demoPageRE.FindStringSubmatch(out)[1]}}
	eventually(t, 20*time.Second, "the demo's admin listener", func() bool {
		resp, err := plainClient.Get(d.px.AdminURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return d
}

// make demo's command: prints what to open and curl; the whole story works
// offline; Ctrl-C stops it cleanly.
func TestDemo(t *testing.T) {
	d := startDemo(t)
	p, s, px, curl, out := d.p, d.s, d.px, d.curl, d.printed

	status, _, b := httpDo(t, "GET", curl, nil, nil)
	if status != 503 || decodeEnvelope(t, b).Code != 90003 {
		t.Errorf("before authorizing: HTTP %d %s, want 90003", status, b)
	}
	px.authorize(t, s, "demo", "7000000000000000001")
	status, _, b = httpDo(t, "GET", curl, nil, nil)
	if status != 200 || decodeEnvelope(t, b).Code != 0 {
		t.Fatalf("the printed curl after authorizing: HTTP %d %s", status, b)
	}

	s.rememberIssued(t)
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	p.wantExit0(t, 15*time.Second, "Ctrl-C")
	// The demo names its temporary directory; without that line the
	// clean-up could not be checked, so its absence fails too.
	dir := regexp.MustCompile(`Config and store\s+(\S+)`).FindStringSubmatch(out)
	if dir == nil {
		t.Fatalf("demo did not print its temporary directory (Config and store):\n%s", out)
	}
	if _, err := os.Stat(dir[1]); !os.IsNotExist(err) {
		t.Errorf("demo left its temporary directory %s behind", dir[1])
	}
}
