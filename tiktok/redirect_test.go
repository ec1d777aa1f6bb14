package tiktok_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

// elsewhere is a server a redirect points at; it records every request.
type elsewhere struct {
	mu   sync.Mutex
	seen []string // method, headers and body of each request, as text
}

func (e *elsewhere) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	e.seen = append(e.seen, r.Method+" "+r.URL.String()+" "+r.Header.Get("Access-Token")+" "+r.Header.Get("Referer")+" "+string(body))
	e.mu.Unlock()
	_, _ = io.WriteString(w, `{"code":0,"message":"OK","request_id":"r","data":{"access_token":"at","refresh_token":"rt","list":[]}}`)
}

func (e *elsewhere) requests() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.seen...)
}

// TestNoRedirects: no call that carries the secret follows a redirect, even
// when the configured http.Client would; the error names the target.
func TestNoRedirects(t *testing.T) {
	tests := []struct {
		name   string
		status int
		call   func(c *tiktok.Client, app tiktok.App) error
	}{
		{"refresh 307", http.StatusTemporaryRedirect, func(c *tiktok.Client, app tiktok.App) error {
			_, err := c.Refresh(context.Background(), app, "the-rt")
			return err
		}},
		{"refresh 308", http.StatusPermanentRedirect, func(c *tiktok.Client, app tiktok.App) error {
			_, err := c.Refresh(context.Background(), app, "the-rt")
			return err
		}},
		{"exchange 307", http.StatusTemporaryRedirect, func(c *tiktok.Client, app tiktok.App) error {
			_, err := c.Exchange(context.Background(), app, "the-code")
			return err
		}},
		{"exchange 302", http.StatusFound, func(c *tiktok.Client, app tiktok.App) error {
			_, err := c.Exchange(context.Background(), app, "the-code")
			return err
		}},
		{"advertiser list 302", http.StatusFound, func(c *tiktok.Client, app tiktok.App) error {
			_, err := c.Advertisers(context.Background(), app, "the-token")
			return err
		}},
		{"advertiser list 301", http.StatusMovedPermanently, func(c *tiktok.Client, app tiktok.App) error {
			_, err := c.Advertisers(context.Background(), app, "the-token")
			return err
		}},
	}
	for _, tt := range tests {
		for _, hc := range []*http.Client{nil, {}, {CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}} {
			t.Run(tt.name, func(t *testing.T) {
				other := &elsewhere{}
				target := httptest.NewServer(other)
				defer target.Close()
				first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					// Echo the query, as a careless redirect would.
					http.Redirect(w, r, target.URL+"/stolen/?"+r.URL.RawQuery, tt.status)
				}))
				defer first.Close()
				app := tiktok.App{AppID: appID, Secret: secret, RedirectURL: "http://127.0.0.1/cb", Endpoints: tiktok.Endpoints{
					TokenURL: first.URL + "/token/", RefreshURL: first.URL + "/refresh/", AdvertiserURL: first.URL + "/adv/"}}
				err := tt.call(&tiktok.Client{HTTP: hc}, app)
				if got := other.requests(); len(got) != 0 {
					t.Fatalf("the redirect target received %q", got)
				}
				if err == nil || !errors.Is(err, tiktok.ErrBadResponse) {
					t.Fatalf("err = %v, want an ErrBadResponse naming the redirect", err)
				}
				if want := target.URL + "/stolen/"; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "redirect") {
					t.Errorf("err = %v, want it to name %s", err, want)
				}
				for _, s := range []string{secret, "the-rt", "the-code", "the-token"} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("err = %v shows %q", err, s)
					}
				}
			})
		}
	}
}
