package setup

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

func terminalOpts(h *harness, in io.Reader, out io.Writer) TerminalOptions {
	return TerminalOptions{
		Credential: "main", App: testApp("main"),
		Exchanger: h.ex, Tokens: h.tok, In: in, Out: out,
	}
}

func checkTerminalSuccess(t *testing.T, h *harness, out string) {
	t.Helper()
	mustContain(t, "terminal output", out, "https://tiktok.test/portal/auth?app_id=app-main",
		`Credential "main" authorized.`, "7012345678901234567  Acme Shoes", "7012345678901234568", "Scopes: 4, 100")
	noSentinels(t, "terminal output", out)
	if calls := h.tok.authorizeCalls(); len(calls) != 1 || calls[0].grant.AccessToken != sentinelAccessToken {
		t.Errorf("Authorize calls %+v, want one with the exchanged grant", calls)
	}
}

func TestTerminalLocalBareCode(t *testing.T) {
	h := newHarness(t)
	out := &syncBuffer{}
	err := Terminal(t.Context(), terminalOpts(h, strings.NewReader("\n"+sentinelAuthCode+"\n"), out))
	if err != nil {
		t.Fatal(err)
	}
	checkTerminalSuccess(t, h, out.String())
}

func TestTerminalLocalRedirectedURL(t *testing.T) {
	h := newHarness(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		state := <-h.ex.states
		// A URL of another flow, or one whose state cannot be checked, is
		// refused; the right one is then accepted.
		_, _ = io.WriteString(pw, "http://localhost:8081/oauth/callback?auth_code=x&state=other\n")
		_, _ = io.WriteString(pw, "http://localhost:8081/oauth/callback?auth_code=y\n")
		_, _ = io.WriteString(pw, "http://localhost:8081/oauth/callback?auth_code="+sentinelAuthCode+"&code="+sentinelAuthCode+"&state="+state+"\n")
	}()
	out := &syncBuffer{}
	if err := Terminal(t.Context(), terminalOpts(h, pr, out)); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "output", out.String(), "belongs to another authorization", "no state parameter")
	checkTerminalSuccess(t, h, out.String())
	if ex := h.ex.exchangeCalls(); len(ex) != 1 || ex[0].code != sentinelAuthCode {
		t.Errorf("exchanges %+v, want only the matching URL's code", ex)
	}
}

func TestTerminalLocalFailures(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		exErr error
		want  string
	}{
		{"input ends", "\n\n", nil, "input ended"},
		{"rejected code", "stale\n", nil, "code 40110"},
		{"transport failure", sentinelAuthCode + "\n", errors.New("dial tcp: refused " + sentinelAuthCode), "could not reach TikTok"},
		{"not a token grant", sentinelAuthCode + "\n", badResponse(), "unexpected response"},
		{"denied", "http://localhost:8081/oauth/callback?error=access_denied\n", nil, "input ended"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.ex.err = tt.exErr
			out := &syncBuffer{}
			err := Terminal(t.Context(), terminalOpts(h, strings.NewReader(tt.in), out))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want %q", err, tt.want)
			}
			if err != nil {
				noSentinels(t, "error", err.Error())
			}
			noSentinels(t, "output", out.String())
			if n := len(h.tok.authorizeCalls()); n != 0 {
				t.Errorf("%d Authorize calls, want 0", n)
			}
		})
	}
}

// badResponse is what tiktok.Client returns for an answer that is not
// TikTok's envelope.
func badResponse() error {
	_, err := tiktok.DecodeEnvelope(strings.NewReader("<html>Sign in</html>"))
	return err
}

// adminServer serves h's Admin on a loopback port; the terminal flow's
// Tokens is a separate fake that must stay unused.
func adminServer(t *testing.T, h *harness) (*httptest.Server, *fakeTokens) {
	t.Helper()
	srv := httptest.NewServer(h.admin)
	t.Cleanup(srv.Close)
	return srv, &fakeTokens{now: h.clock.Now}
}

func TestTerminalViaAdminPaste(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.AdminToken = sentinelAdminToken })
	srv, local := adminServer(t, h)
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		state := <-h.ex.states
		_, _ = io.WriteString(pw, "http://localhost:8081/oauth/callback?auth_code="+sentinelAuthCode+"&state="+state+"\n")
	}()
	out := &syncBuffer{}
	opts := terminalOpts(h, pr, out)
	opts.Tokens, opts.AdminURL, opts.AdminToken = local, srv.URL, sentinelAdminToken
	if err := Terminal(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	checkTerminalSuccess(t, h, out.String())
	if n := len(local.authorizeCalls()); n != 0 {
		t.Errorf("terminal stored the grant itself (%d calls); the listener should", n)
	}
}

func TestTerminalViaAdminCallback(t *testing.T) {
	h := newHarness(t)
	srv, local := adminServer(t, h)
	pr, pw := io.Pipe()
	defer pw.Close()
	callback := make(chan int, 1)
	go func() {
		state := <-h.ex.states
		resp, err := http.Get(srv.URL + callbackURL(sentinelAuthCode, state))
		if err != nil {
			callback <- 0
			return
		}
		resp.Body.Close()
		callback <- resp.StatusCode
	}()
	out := &syncBuffer{}
	opts := terminalOpts(h, pr, out)
	opts.Tokens, opts.AdminURL = local, srv.URL
	if err := Terminal(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if code := <-callback; code != http.StatusOK {
		t.Errorf("callback status %d", code)
	}
	checkTerminalSuccess(t, h, out.String())
}

func TestTerminalViaAdminCallbackFails(t *testing.T) {
	h := newHarness(t)
	h.ex.err = &tiktok.APIError{Code: tiktok.CodeInvalidAuthCode, Message: "auth_code is invalid"}
	srv, local := adminServer(t, h)
	go func() {
		state := <-h.ex.states
		if resp, err := http.Get(srv.URL + callbackURL(sentinelAuthCode, state)); err == nil {
			resp.Body.Close()
		}
	}()
	pr, pw := io.Pipe()
	defer pw.Close()
	opts := terminalOpts(h, pr, &syncBuffer{})
	opts.Tokens, opts.AdminURL = local, srv.URL
	err := Terminal(t.Context(), opts)
	if err == nil || !strings.Contains(err.Error(), "code 40110") {
		t.Errorf("err %v, want the exchange failure", err)
	}
}

func TestTerminalAdminRefuses(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.AdminToken = sentinelAdminToken })
	srv, local := adminServer(t, h)
	opts := terminalOpts(h, strings.NewReader(""), &syncBuffer{})
	opts.Tokens, opts.AdminURL, opts.AdminToken = local, srv.URL, "wrong"
	err := Terminal(t.Context(), opts)
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("err %v, want HTTP 401", err)
	}
	opts.AdminToken, opts.Credential = sentinelAdminToken, "nope"
	err = Terminal(t.Context(), opts)
	if err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("err %v, want HTTP 404", err)
	}
}

func TestTerminalFallsBackWhenNoAdmin(t *testing.T) {
	h := newHarness(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	out := &syncBuffer{}
	opts := terminalOpts(h, strings.NewReader(sentinelAuthCode+"\n"), out)
	opts.AdminURL = srv.URL
	if err := Terminal(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "output", out.String(), "No admin listener answers")
	checkTerminalSuccess(t, h, out.String())
}

// TestTerminalNeverFollowsRedirects: the admin listener's client never
// follows a redirect, which on the same host would resend the admin token
// (Go keeps Authorization within a host): at the start and while waiting
// for the callback, a redirect ends the flow with an error naming where it
// pointed, without its query.
func TestTerminalNeverFollowsRedirects(t *testing.T) {
	for _, redirected := range []string{"/api/authorize/main", "/api/authorize/st-1/wait"} {
		t.Run(redirected, func(t *testing.T) {
			h := newHarness(t)
			var followed atomic.Int32
			mux := http.NewServeMux()
			mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
				followed.Add(1)
				if r.Header.Get("Authorization") != "" {
					t.Errorf("the redirect's target received the admin token")
				}
				http.Error(w, "not here", http.StatusTeapot)
			})
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == redirected {
					http.Redirect(w, r, "/elsewhere?token=query-secret", http.StatusTemporaryRedirect)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(BeginResponse{AuthorizeURL: "https://tiktok.test/portal/auth", State: "st-1",
					ExpiresAt: time.Now().Add(time.Minute)})
			})
			srv := httptest.NewServer(mux)
			defer srv.Close()
			pr, pw := io.Pipe()
			defer pw.Close()
			opts := terminalOpts(h, pr, &syncBuffer{})
			opts.AdminURL, opts.AdminToken = srv.URL, sentinelAdminToken
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := Terminal(ctx, opts)
			if err == nil || !strings.Contains(err.Error(), srv.URL+"/elsewhere") || strings.Contains(err.Error(), "query-secret") {
				t.Errorf("err %v, want a redirect error naming %s/elsewhere without its query", err, srv.URL)
			}
			if n := followed.Load(); n != 0 {
				t.Errorf("the redirect was followed %d time(s)", n)
			}
			if n := len(h.tok.authorizeCalls()); n != 0 {
				t.Errorf("%d grants stored after a redirect", n)
			}
		})
	}
}
