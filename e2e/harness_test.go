// Package e2e runs the built tiktok-auth-proxy binary as a user would:
// against the bundled TikTok simulator (also the binary, `simulate`), on
// loopback ports, in temp directories.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the binary built once by TestMain.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tiktok-auth-proxy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "tiktok-auth-proxy")
	build := exec.Command("go", "build", "-o", binPath, "../cmd/tiktok-auth-proxy")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	printSummaries()
	if leaks := leakedSecrets(); len(leaks) > 0 {
		fmt.Fprintln(os.Stderr, "e2e: secrets found in process logs:")
		for _, l := range leaks {
			fmt.Fprintln(os.Stderr, "  ", l)
		}
		code = 1
	} else if code == 0 {
		allLogs.mu.Lock()
		fmt.Printf("e2e: scanned the logs of %d processes for %d secrets: none found\n", len(allLogs.bufs), len(allLogs.secrets))
		allLogs.mu.Unlock()
	}
	os.Exit(code)
}

// summaries are the figures suites report (cases tried, kills survived),
// printed by TestMain after every test so they show without -v.
var summaries struct {
	mu    sync.Mutex
	lines []string
}

// printSummaries prints the suites' figures, and appends them to the file
// TAP_FIGURES names when set: go test shows a passing package's output only
// with -v, so make test prints that file at the end.
func printSummaries() {
	summaries.mu.Lock()
	defer summaries.mu.Unlock()
	for _, l := range summaries.lines {
		fmt.Println(l)
	}
	path := os.Getenv("TAP_FIGURES")
	if path == "" || len(summaries.lines) == 0 {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		_, err = fmt.Fprintln(f, strings.Join(summaries.lines, "\n"))
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: TAP_FIGURES:", err)
	}
}

// summarize adds a line for TestMain to print at the end of the run.
func summarize(format string, args ...any) {
	summaries.mu.Lock()
	defer summaries.mu.Unlock()
	summaries.lines = append(summaries.lines, fmt.Sprintf(format, args...))
}

// syncBuffer collects a process's output for assertions and for the log
// dumped when a test fails.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a running child process of the binary.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// allLogs gathers every process's output, and secrets records every
// secret the tests used or the simulator issued (app secrets, client
// tokens, auth codes, access and refresh tokens): TestMain fails the run if
// any log line of any process contains one.
var allLogs struct {
	mu      sync.Mutex
	bufs    []*syncBuffer
	secrets []string
}

// rememberSecret adds values the logs must never contain.
func rememberSecret(values ...string) {
	allLogs.mu.Lock()
	defer allLogs.mu.Unlock()
	for _, v := range values {
		if v != "" {
			allLogs.secrets = append(allLogs.secrets, v)
		}
	}
}

// knownSecrets returns a copy of the secrets remembered so far.
func knownSecrets() []string {
	allLogs.mu.Lock()
	defer allLogs.mu.Unlock()
	return append([]string{}, allLogs.secrets...)
}

// leakedSecrets returns a line for every secret found in any process output.
func leakedSecrets() []string {
	allLogs.mu.Lock()
	defer allLogs.mu.Unlock()
	outputs := make([]string, 0, len(allLogs.bufs))
	for _, b := range allLogs.bufs {
		outputs = append(outputs, b.String())
	}
	return scanForSecrets(outputs, allLogs.secrets)
}

// scanForSecrets returns, for every secret found in any of outputs, a line
// naming its first characters and the log line it is in. It is apart from
// leakedSecrets so a test can show it catches a planted leak.
func scanForSecrets(outputs, secrets []string) []string {
	if len(secrets) == 0 {
		return nil
	}
	// One trie pass per output tells whether it holds any secret at all: a
	// run that rotates thousands of tokens (the crash soak) would otherwise
	// search every output once per secret.
	pairs := make([]string, 0, 2*len(secrets))
	for _, sec := range secrets {
		pairs = append(pairs, sec, "")
	}
	anySecret := strings.NewReplacer(pairs...)
	var leaks []string
	for _, out := range outputs {
		if anySecret.Replace(out) == out {
			continue
		}
		for _, sec := range secrets {
			if i := strings.Index(out, sec); i >= 0 {
				start := max(0, strings.LastIndex(out[:i], "\n")+1)
				leaks = append(leaks, fmt.Sprintf("secret %.6s… in: %.200s", sec, out[start:]))
			}
		}
	}
	return leaks
}

// start runs the binary with args; the process is stopped (SIGTERM, then
// SIGKILL after 10s) when the test ends, and its output shown if it failed.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return launch(t, env, nil, args...)
}

// launch is start with an optional stdin: when stdin is non-nil it is set
// to a pipe the test writes, closed when the test ends.
func launch(t *testing.T, env []string, stdin *io.WriteCloser, args ...string) *proc {
	t.Helper()
	return launchCmd(t, exec.Command(binPath, args...), env, stdin)
}

// launchCmd is launch of a prepared command (the binary with args, maybe
// under a shell that sets a limit first).
func launchCmd(t *testing.T, cmd *exec.Cmd, env []string, stdin *io.WriteCloser) *proc {
	t.Helper()
	args := cmd.Args[1:]
	p := &proc{out: &syncBuffer{}, done: make(chan struct{}), cmd: cmd}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), env...)
	if stdin != nil {
		w, err := p.cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		*stdin = w
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	allLogs.mu.Lock()
	allLogs.bufs = append(allLogs.bufs, p.out)
	allLogs.mu.Unlock()
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if stdin != nil {
			(*stdin).Close()
		}
		p.stop(t)
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// wantExit0 waits up to timeout for p, already told to stop by signal
// (named in the messages), to exit, and fails the test unless it does, with
// code 0.
func (p *proc) wantExit0(t *testing.T, timeout time.Duration, signal string) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v of %s", p.cmd.Args[1], timeout, signal)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("%s exit code %d after %s, want 0", p.cmd.Args[1], code, signal)
	}
}

// stop sends SIGTERM and waits for the exit (SIGKILL after 10s).
func (p *proc) stop(t *testing.T) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%v did not stop within 10s of SIGTERM", p.cmd.Args)
	}
	return p.err
}

// kill sends SIGKILL and waits.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// handedOut are the addresses freeAddr returned: the kernel may offer a
// port again as soon as its probe listener closes, before the process it
// was meant for binds it, so two listeners of one serve could get the same
// port ("admin_listen: same address as listen").
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// freeAddr returns a loopback address with a port that was free a moment
// ago and that no earlier call returned.
func freeAddr(t *testing.T) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 1000 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
	t.Fatal("the kernel offers only ports freeAddr already returned")
	return ""
}

// eventually polls cond every 20ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var plainClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// httpDo sends a request and returns status, headers and body.
func httpDo(t *testing.T, method, rawURL string, header http.Header, body io.Reader) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := plainClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, rawURL, err)
	}
	return resp.StatusCode, resp.Header, b
}

// envelope is TikTok's (and the proxy's) response envelope.
type envelope struct {
	Code      int             `json:"code"`
	Message   string          `json:"message"`
	RequestID string          `json:"request_id"`
	Data      json.RawMessage `json:"data"`
}

func decodeEnvelope(t *testing.T, b []byte) envelope {
	t.Helper()
	var e envelope
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("not an envelope: %v: %.300s", err, b)
	}
	return e
}

// sim is a running simulator process.
type sim struct {
	URL string
	p   *proc
}

func startSim(t *testing.T, args ...string) *sim {
	t.Helper()
	addr := freeAddr(t)
	s := &sim{URL: "http://" + addr}
	s.p = start(t, nil, append([]string{"simulate", "--listen", addr}, args...)...)
	eventually(t, 20*time.Second, "simulator to answer", func() bool {
		resp, err := plainClient.Get(s.URL + "/sim/stats")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	// Registered after start, so it runs before the simulator stops and
	// after every proxy started later has stopped.
	t.Cleanup(func() { s.rememberIssued(t) })
	return s
}

// simIssued is GET /sim/issued: every token and code the simulator handed out.
type simIssued struct {
	AccessTokens  []string `json:"access_tokens"`
	RefreshTokens []string `json:"refresh_tokens"`
	AuthCodes     []string `json:"auth_codes"`
}

// issued is every token and auth code the simulator issued so far.
func (s *sim) issued(t *testing.T) simIssued {
	t.Helper()
	status, _, b := httpDo(t, "GET", s.URL+"/sim/issued", nil, nil)
	var iss simIssued
	if err := json.Unmarshal(b, &iss); status != 200 || err != nil {
		t.Fatalf("sim issued: HTTP %d %v: %.200s", status, err, b)
	}
	return iss
}

// rememberIssued adds every token and auth code the simulator ever issued,
// rotated-away and spent ones included, to the secrets no log may contain.
func (s *sim) rememberIssued(t *testing.T) {
	t.Helper()
	iss := s.issued(t)
	rememberSecret(iss.AccessTokens...)
	rememberSecret(iss.RefreshTokens...)
	rememberSecret(iss.AuthCodes...)
}

// post sends a JSON control request to the simulator's /sim/ API.
func (s *sim) post(t *testing.T, path string, body any) []byte {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	status, _, b := httpDo(t, "POST", s.URL+path, http.Header{"Content-Type": {"application/json"}}, r)
	if status != 200 {
		t.Fatalf("sim POST %s: HTTP %d: %s", path, status, b)
	}
	return b
}

// config is what a test varies in the proxy's config file.
type proxyConfig struct {
	Extra       string // YAML appended at top level
	Credentials string // the credentials: list, YAML
	Timeout     string // upstream.timeout; default 20s
	Store       string // the store: mapping's body, indented two spaces; default the file tokens.json in Dir
	// ListenHost and AdminHost replace 127.0.0.1 in listen and
	// admin_listen (e.g. 0.0.0.0); the URLs still dial 127.0.0.1.
	ListenHost, AdminHost string
	// RedirectHost replaces 127.0.0.1 in oauth.redirect_url (e.g.
	// localhost, the default config's name for it).
	RedirectHost string
}

// proxy is a running `serve` process with its files.
type proxy struct {
	URL, AdminURL string
	Dir           string
	ConfigPath    string
	p             *proc
	args          []string
	// env is added to the serve process's environment (${VAR} values).
	env []string
	// fdLimit, when not 0, is the serve process's `ulimit -n` (soft and
	// hard, so Go cannot raise it).
	fdLimit int
}

// startProxy writes a config wired to s and runs serve.
func startProxy(t *testing.T, s *sim, pc proxyConfig) *proxy {
	t.Helper()
	px := writeProxyConfig(t, s, pc)
	px.run(t)
	return px
}

// writeProxyConfig writes a config wired to s without starting anything.
func writeProxyConfig(t *testing.T, s *sim, pc proxyConfig) *proxy {
	t.Helper()
	dir := t.TempDir()
	px := &proxy{Dir: dir, ConfigPath: filepath.Join(dir, "config.yaml")}
	listen, admin := freeAddr(t), freeAddr(t)
	if pc.Timeout == "" {
		pc.Timeout = "20s"
	}
	if pc.Store == "" {
		pc.Store = "  path: " + filepath.Join(dir, "tokens.json")
	}
	px.URL, px.AdminURL = "http://"+listen, "http://"+admin
	if pc.ListenHost != "" {
		listen = pc.ListenHost + strings.TrimPrefix(listen, "127.0.0.1")
	}
	if pc.AdminHost != "" {
		admin = pc.AdminHost + strings.TrimPrefix(admin, "127.0.0.1")
	}
	redirectBase := px.AdminURL
	if pc.RedirectHost != "" {
		redirectBase = strings.Replace(px.AdminURL, "127.0.0.1", pc.RedirectHost, 1)
	}
	cfg := fmt.Sprintf(`listen: %s
admin_listen: %s
upstream:
  base_url: %s
  timeout: %s
oauth:
  redirect_url: %s/oauth/callback
store:
%s
log:
  level: debug
  format: json
credentials:
%s
%s
`, listen, admin, s.URL, pc.Timeout, redirectBase, pc.Store, pc.Credentials, pc.Extra)
	rememberSecret(secretsIn(cfg)...)
	if err := os.WriteFile(px.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	px.args = []string{"serve", "--config", px.ConfigPath}
	return px
}

// run (re)starts the serve process on the same config and store.
func (px *proxy) run(t *testing.T) {
	t.Helper()
	cmd := exec.Command(binPath, px.args...)
	if px.fdLimit > 0 {
		cmd = exec.Command("/bin/sh", append([]string{"-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, px.fdLimit), binPath}, px.args...)...)
	}
	px.p = launchCmd(t, cmd, px.env, nil)
	eventually(t, 20*time.Second, "proxy to be ready", func() bool {
		resp, err := plainClient.Get(px.AdminURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// authorize runs the browser flow over plain HTTP: /authorize/{name} on the
// admin listener, a consent code from the simulator for the given
// advertisers, then the callback with the state and the cookie.
func (px *proxy) authorize(t *testing.T, s *sim, name, appID string, advertisers ...string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: plainClient.Transport,
		CheckRedirect: plainClient.CheckRedirect}
	resp, err := c.Get(px.AdminURL + "/authorize/" + name)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("/authorize/%s: HTTP %d, want 302", name, resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	state := loc.Query().Get("state")
	if state == "" {
		t.Fatalf("consent URL without state: %s", loc)
	}
	q := url.Values{"app_id": {appID}}
	if len(advertisers) > 0 {
		q.Set("advertiser_ids", strings.Join(advertisers, ","))
	}
	var code struct{ Code string }
	if err := json.Unmarshal(s.post(t, "/sim/code?"+q.Encode(), nil), &code); err != nil || code.Code == "" {
		t.Fatalf("sim code: %v %+v", err, code)
	}
	rememberSecret(code.Code)
	cb := px.AdminURL + "/oauth/callback?" + url.Values{"auth_code": {code.Code}, "code": {code.Code}, "state": {state}}.Encode()
	resp, err = c.Get(cb)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusSeeOther {
		// The callback sends the browser on to a clean URL with the outcome.
		resp.Body.Close()
		if resp, err = c.Get(px.AdminURL + resp.Header.Get("Location")); err != nil {
			t.Fatal(err)
		}
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("callback: HTTP %d: %s", resp.StatusCode, body)
	}
	for _, a := range advertisers {
		if !bytes.Contains(body, []byte(a)) {
			t.Fatalf("callback page does not list advertiser %s: %s", a, body)
		}
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// secretsIn returns the values of secret keys in a config text: app_secret,
// token, admin_token, encryption_key. A ${VAR} reference is not the secret
// (messages name it by design); the test remembers the variable's value.
func secretsIn(cfg string) []string {
	var out []string
	for _, line := range strings.Split(cfg, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- "))
		for _, key := range []string{"app_secret:", "token:", "admin_token:", "encryption_key:"} {
			if v, ok := strings.CutPrefix(line, key); ok {
				if v = strings.Trim(strings.TrimSpace(v), `"`); !strings.HasPrefix(v, "${") {
					out = append(out, v)
				}
			}
		}
	}
	return out
}

// runBounded runs the binary to completion with env added and returns its
// exit code, stdout and stderr; it fails the test if the command has not
// exited within timeout (a serve that should have refused to start). Both
// outputs join the final secret scan.
func runBounded(t *testing.T, env []string, timeout time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, stderr, code := runScanned(t, ctx, cmd, timeout)
	return code, stdout, stderr
}

// runScanned runs cmd, made with exec.CommandContext(ctx, ...), to
// completion and returns its stdout, stderr and exit code; it fails the test
// if ctx ended first (the command still running after timeout) or the
// command could not run. Both outputs join the final secret scan.
func runScanned(t *testing.T, ctx context.Context, cmd *exec.Cmd, timeout time.Duration) (stdout, stderr string, code int) {
	t.Helper()
	out, errOut := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, errOut
	allLogs.mu.Lock()
	allLogs.bufs = append(allLogs.bufs, out, errOut)
	allLogs.mu.Unlock()
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v still running after %v (killed): stdout %q stderr %q", cmd.Args, timeout, out.String(), errOut.String())
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// answer is what a client got for one request: the HTTP status and the
// envelope's code, or the error that kept it from either.
type answer struct {
	status int
	code   int
	err    error
}

// getAnswer GETs rawURL; unlike httpDo it never fails the test, so a
// goroutine may call it.
func getAnswer(rawURL string) answer {
	resp, err := plainClient.Get(rawURL)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	var env envelope
	err = jsonDecode(resp.Body, &env)
	return answer{status: resp.StatusCode, code: env.Code, err: err}
}

func jsonDecode(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	return dec.Decode(v)
}

// approveConsent is the operator clicking Authorize on the simulator's
// consent page at consent (form adds e.g. the advertisers chosen): it
// checks that TikTok redirects to adminURL's callback and returns that URL,
// whose auth code the log scan then looks for.
func approveConsent(t *testing.T, consent *url.URL, form url.Values, adminURL string) string {
	t.Helper()
	form.Set("action", "authorize")
	resp, err := plainClient.PostForm(consent.String(), form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, adminURL+"/oauth/callback?") {
		t.Fatalf("consent answered HTTP %d to %q", resp.StatusCode, browserRedactQuery(loc))
	}
	if lu, err := url.Parse(loc); err == nil {
		rememberSecret(lu.Query().Get("auth_code"))
	}
	return loc
}

// credentialHealth is a credential's state as px's /api/credentials reports it.
func credentialHealth(t *testing.T, px *proxy, name string) (authorized, reauth bool) {
	t.Helper()
	_, _, js := httpDo(t, "GET", px.AdminURL+"/api/credentials", nil, nil)
	var creds []struct {
		Name           string `json:"name"`
		Authorized     bool   `json:"authorized"`
		ReauthRequired bool   `json:"reauthorization_required"`
	}
	if err := json.Unmarshal(js, &creds); err != nil {
		t.Fatalf("/api/credentials: %v %.300s", err, js)
	}
	for _, c := range creds {
		if c.Name == name {
			return c.Authorized, c.ReauthRequired
		}
	}
	t.Fatalf("/api/credentials has no %s: %.300s", name, js)
	return false, false
}
