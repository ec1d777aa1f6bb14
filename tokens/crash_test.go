package tokens_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktoksim"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/filestore"
)

// The crash test's child process is this test binary started with these
// variables set; TestMain then runs crashChild instead of the tests.
const (
	envChild = "TOKENS_CRASH_CHILD"
	envStore = "TOKENS_CRASH_STORE"
	envSim   = "TOKENS_CRASH_SIM"
)

const crashApp = "7100000000000000001"

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		os.Exit(crashChild())
	}
	os.Exit(m.Run())
}

func crashCredential(simURL string) tokens.Credential {
	return tokens.Credential{Name: credName, App: tiktok.App{
		Kind: tiktok.KindAdvertiser, AppID: crashApp, Secret: "crash-secret",
		Endpoints: tiktok.DefaultEndpoints(simURL, tiktok.KindAdvertiser),
	}}
}

// crashChild refreshes the credential in a tight loop against the
// simulator, reporting each refresh on stdout, until it is killed. Its
// clock jumps a day ahead per round so every Token call must refresh.
func crashChild() int {
	ctx := context.Background()
	st, err := filestore.Open(os.Getenv(envStore), nil)
	if err != nil {
		fmt.Println("open:", err)
		return 2
	}
	rec, err := st.Get(ctx, credName)
	if err != nil {
		fmt.Println("get:", err)
		return 2
	}
	base := rec.AccessExpiresAt
	var days atomic.Int64
	now := func() time.Time { return base.Add(time.Duration(days.Load()) * 25 * time.Hour) }
	m, err := tokens.NewManager(ctx, st, []tokens.Credential{crashCredential(os.Getenv(envSim))}, &tiktok.Client{},
		tokens.Options{Now: now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Println("manager:", err)
		return 2
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 1; i <= 100000 && time.Now().Before(deadline); i++ {
		days.Add(1)
		if _, err := m.Token(ctx, credName); err != nil {
			fmt.Println("token:", err)
			if errors.Is(err, tokens.ErrReauthRequired) {
				return 3
			}
			continue
		}
		fmt.Println("refreshed", i)
		// Idle between refreshes, as a real proxy mostly is, so kills also
		// land outside refreshes.
		time.Sleep(time.Duration(rand.N(2000)) * time.Microsecond)
	}
	return 0
}

// rotations records each refresh token the simulator rotated and what it
// was rotated to.
type rotations struct {
	mu   sync.Mutex
	next map[string]string
}

func (r *rotations) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !strings.HasSuffix(req.URL.Path, "/oauth2/refresh_token/") {
			h.ServeHTTP(w, req)
			return
		}
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var in struct {
			RefreshToken string `json:"refresh_token"`
		}
		var out struct {
			Data struct {
				RefreshToken string `json:"refresh_token"`
			} `json:"data"`
		}
		if json.Unmarshal(body, &in) == nil && json.Unmarshal(rec.Body.Bytes(), &out) == nil && out.Data.RefreshToken != "" {
			r.mu.Lock()
			r.next[in.RefreshToken] = out.Data.RefreshToken
			r.mu.Unlock()
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

func (r *rotations) rotatedTo(from string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next[from]
}

// TestCrashDuringRefresh kills (SIGKILL) a process refreshing against the
// simulator's rotating refresh tokens at random moments, 30 times, and
// after every kill checks that the store opens intact and that its refresh
// token is TikTok's current one, so the credential refreshes again.
//
// One window cannot be closed by any client: TikTok has rotated the token
// but the process dies before the answer is on disk. The test tells that
// case apart exactly (the stored token is the one the simulator's latest
// answer replaced; any other mismatch fails), checks the credential is
// still usable after the restart (its stored access token is served and
// TikTok accepts it, while re-authorization is asked for), then
// re-authorizes.
func TestCrashDuringRefresh(t *testing.T) {
	sim := tiktoksim.New(tiktoksim.Options{})
	rot := &rotations{next: map[string]string{}}
	srv := httptest.NewUnstartedServer(rot.wrap(sim))
	// A killed child's last request may still be in the simulator; the
	// store is checked only once every connection is closed, so no
	// rotation happens after the check.
	var open atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	defer srv.Close()
	cred := crashCredential(srv.URL)
	path := filepath.Join(t.TempDir(), "state", "tokens.json")
	ctx := context.Background()
	client := parentClient()

	authorize := func() {
		t.Helper()
		g, err := client.Exchange(ctx, cred.App, sim.IssueCode(crashApp, nil))
		if err != nil {
			t.Fatal(err)
		}
		withManager(t, path, cred, time.Now, func(m *tokens.Manager) {
			if _, err := m.Authorize(ctx, credName, g); err != nil {
				t.Fatal(err)
			}
		})
	}
	authorize()

	const rounds = 30
	verified, windows := 0, 0
	for round := range rounds {
		runAndKill(t, path, srv.URL, round)
		waitFor(t, "the child's connections to close", func() bool { return open.Load() == 0 })

		st, err := filestore.Open(path, nil)
		if err != nil {
			t.Fatalf("round %d: store after kill: %v", round, err)
		}
		rec, err := st.Get(ctx, credName)
		_ = st.Close()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		current := simRefreshToken(t, sim)
		if rec.RefreshToken != current {
			if rot.rotatedTo(rec.RefreshToken) != current {
				t.Fatalf("round %d: stored refresh token is neither the simulator's current one nor the one it last replaced", round)
			}
			windows++
			// Still usable: the restarted credential serves its stored access
			// token, which TikTok still accepts, while its refresh is refused
			// and re-authorization is asked for.
			soon := func() time.Time { return rec.AccessExpiresAt.Add(-30 * time.Minute) }
			withManager(t, path, cred, soon, func(m *tokens.Manager) {
				m.Start(ctx)
				waitFor(t, "the refused refresh to ask for re-authorization", func() bool {
					st, _ := m.Status(credName)
					return st.ReauthRequired
				})
				tok, err := m.Token(ctx, credName)
				if err != nil {
					t.Fatalf("round %d: restarted in the window: %v", round, err)
				}
				if code := simAPICode(t, srv.URL, tok); code != 0 {
					t.Fatalf("round %d: TikTok answered code %d to the token served after the restart", round, code)
				}
			})
			authorize()
			continue
		}
		// The stored token works: a fresh manager, its clock past expiry,
		// refreshes it.
		later := func() time.Time { return rec.AccessExpiresAt.Add(time.Hour) }
		withManager(t, path, cred, later, func(m *tokens.Manager) {
			if _, err := m.Token(ctx, credName); err != nil {
				t.Fatalf("round %d: refresh after restart: %v", round, err)
			}
		})
		verified++
	}
	t.Logf("%d rounds verified, %d kills between TikTok's rotation and the fsync", verified, windows)
	if verified == 0 {
		t.Fatal("no round ended outside a refresh: nothing verified")
	}
}

// simAPICode is the envelope code TikTok gives an API call made with tok.
func simAPICode(t *testing.T, simURL, tok string) int {
	t.Helper()
	req, err := http.NewRequest("GET", simURL+"/open_api/v1.3/campaign/get/?advertiser_id="+tiktoksim.DefaultAdvertisers[0].ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Access-Token", tok)
	resp, err := parentClient().HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	env, err := tiktok.DecodeEnvelope(resp.Body)
	var apiErr *tiktok.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code
	}
	if err != nil {
		t.Fatal(err)
	}
	return env.Code
}

func simRefreshToken(t *testing.T, sim *tiktoksim.Server) string {
	t.Helper()
	var tok string
	for _, g := range sim.Grants() {
		if g.AppID == crashApp && !g.Revoked && g.RefreshToken != "" {
			tok = g.RefreshToken
		}
	}
	return tok
}

// parentClient keeps no idle connection, so the open-connection count
// reaches zero between rounds.
func parentClient() *tiktok.Client {
	return &tiktok.Client{HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
}

func withManager(t *testing.T, path string, cred tokens.Credential, now func() time.Time, f func(m *tokens.Manager)) {
	t.Helper()
	st, err := filestore.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := tokens.NewManager(context.Background(), st, []tokens.Credential{cred}, parentClient(),
		tokens.Options{Now: now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	f(m)
}

// runAndKill starts the child, lets it refresh a few times and kills it
// with SIGKILL at a random moment.
func runAndKill(t *testing.T, path, simURL string, round int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1", envStore+"="+path, envSim+"="+simURL)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	want := 1 + rand.N(5)
	refreshed := 0
	timeout := time.After(20 * time.Second)
	for refreshed < want {
		select {
		case l, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("round %d: child exited early", round)
			}
			if !strings.HasPrefix(l, "refreshed ") {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("round %d: child: %s", round, l)
			}
			refreshed++
		case <-timeout:
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("round %d: child made no progress", round)
		}
	}
	// A random moment: mid-refresh, mid-write or idle.
	time.Sleep(time.Duration(rand.N(3000)) * time.Microsecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}
