package tiktoksim_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktoksim"
)

// noRedirect returns redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func TestConsentPages(t *testing.T) {
	opts := tiktoksim.Options{Apps: []tiktoksim.App{{ID: appID, Secret: secret, Name: "Acme Reports",
		Advertisers: []tiktoksim.Advertiser{{ID: adv1, Name: "Acme US"}, {ID: adv2, Name: "Acme EU"}}}}}
	for _, kind := range []string{tiktok.KindAdvertiser, tiktok.KindTikTokAccount} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, opts)
			app := e.app
			app.Kind = kind
			app.Endpoints = tiktok.DefaultEndpoints(e.url, kind)
			if kind == tiktok.KindTikTokAccount {
				app.Endpoints.AuthorizeURL = e.url + "/v2/auth/authorize/"
			}
			consent := e.c.AuthCodeURL(app, "st-1")
			resp, err := http.Get(consent)
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, want := range []string{"Authorize Acme Reports to access your ad accounts", `id="authorize"`, `id="cancel"`, "Acme US", adv2} {
				if !bytes.Contains(page, []byte(want)) {
					t.Errorf("consent page lacks %q", want)
				}
			}

			// The form posts back to the page's own URL with its hidden fields.
			form := url.Values{"action": {"authorize"}, "state": {"st-1"}, "redirect_uri": {app.RedirectURL}, "advertiser_id": {adv2}}
			if kind == tiktok.KindTikTokAccount {
				form.Set("client_key", appID)
				form.Set("response_type", "code")
				form.Set("scope", "user.info.basic,video.list")
			} else {
				form.Set("app_id", appID)
			}
			target := strings.SplitN(consent, "?", 2)[0]
			resp, err = noRedirect.PostForm(target, form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, err := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || err != nil {
				t.Fatalf("authorize: HTTP %d Location %v", resp.StatusCode, resp.Header.Get("Location"))
			}
			q := loc.Query()
			if q.Get("auth_code") == "" || q.Get("auth_code") != q.Get("code") || q.Get("state") != "st-1" ||
				loc.Host != "127.0.0.1:1" || loc.Path != "/cb" {
				t.Fatalf("redirected to %s", loc)
			}
			g, err := e.c.Exchange(context.Background(), app, q.Get("code"))
			if err != nil {
				t.Fatal(err)
			}
			if kind == tiktok.KindAdvertiser && (len(g.AdvertiserIDs) != 1 || g.AdvertiserIDs[0] != adv2) {
				t.Errorf("granted %v, want only the checked %s", g.AdvertiserIDs, adv2)
			}
			if kind == tiktok.KindTikTokAccount && strings.Join(g.Scopes, " ") != "user.info.basic video.list" {
				t.Errorf("scopes = %v", g.Scopes)
			}

			form.Set("action", "cancel")
			resp, err = noRedirect.PostForm(target, form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, _ = url.Parse(resp.Header.Get("Location"))
			if loc.Query().Get("error") != "access_denied" || loc.Query().Get("error_description") == "" ||
				loc.Query().Get("code") != "" || loc.Query().Get("state") != "st-1" {
				t.Errorf("cancel redirected to %s", loc)
			}
		})
	}
}

func TestConsentErrors(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{Apps: []tiktoksim.App{{ID: appID, Secret: secret}}})
	for _, path := range []string{
		"/portal/auth?app_id=unknown&state=s&redirect_uri=http://127.0.0.1/cb",
		"/portal/auth?app_id=" + appID + "&state=s&redirect_uri=relative",
		"/v2/auth/authorize/?client_key=" + appID + "&response_type=token&redirect_uri=http://127.0.0.1/cb",
	} {
		resp, err := http.Get(e.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s = %d, want 400", path, resp.StatusCode)
		}
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	opts := tiktoksim.Options{Apps: []tiktoksim.App{
		{ID: appID, Secret: secret},
		{ID: "tt-app", Secret: "tt-secret", Kind: tiktok.KindTikTokAccount},
	}}
	e := newEnv(t, opts)
	ctx := context.Background()
	ttApp := tiktok.App{Kind: tiktok.KindTikTokAccount, AppID: "tt-app", Secret: "tt-secret", RedirectURL: "http://127.0.0.1/cb",
		Endpoints: tiktok.DefaultEndpoints(e.url, tiktok.KindTikTokAccount)}
	with := func(a tiktok.App, f func(*tiktok.App)) tiktok.App { f(&a); return a }

	tests := []struct {
		name string
		app  tiktok.App
		code func() string
		want int
	}{
		{"wrong secret", with(e.app, func(a *tiktok.App) { a.Secret = "nope" }), func() string { return e.sim.IssueCode(appID, nil) }, 40101},
		{"unknown app", with(e.app, func(a *tiktok.App) { a.AppID = "ghost" }), func() string { return e.sim.IssueCode(appID, nil) }, 40113},
		{"kind mismatch", with(ttApp, func(a *tiktok.App) { a.Endpoints = e.app.Endpoints; a.Kind = "" }), func() string { return e.sim.IssueCode("tt-app", nil) }, 40101},
		{"code of another app", e.app, func() string { return e.sim.IssueCode("tt-app", nil) }, 40110},
		{"code for the other kind", e.app, func() string {
			return e.sim.IssueCodeKind(appID, tiktok.KindTikTokAccount, nil, "", "")
		}, 40110},
		{"expired code", e.app, func() string {
			c := e.sim.IssueCode(appID, nil)
			e.sim.Advance(time.Hour)
			return c
		}, 40110},
		{"tt redirect mismatch", ttApp, func() string {
			return e.sim.IssueCodeKind("tt-app", tiktok.KindTikTokAccount, nil, "http://127.0.0.1/other", "")
		}, 40101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.c.Exchange(ctx, tt.app, tt.code())
			wantCode(t, err, tt.want)
		})
	}
	if _, err := e.c.Exchange(ctx, ttApp, e.sim.IssueCodeKind("tt-app", tiktok.KindTikTokAccount, nil, ttApp.RedirectURL, "")); err != nil {
		t.Errorf("tt exchange with matching redirect_uri: %v", err)
	}

	// Malformed bodies are parameter errors.
	for _, body := range []string{`nope`, `{"app_id":{}}`, `{"app_id":"","secret":"x"}`} {
		_, en := e.do(t, "POST", api+"oauth2/access_token/", "", strings.NewReader(body), "application/json")
		if en.Code != 40002 {
			t.Errorf("body %s: code %d, want 40002", body, en.Code)
		}
	}
	// app_id as a number is accepted, as TikTok does.
	_, en := e.do(t, "POST", api+"oauth2/access_token/", "", strings.NewReader(fmt.Sprintf(`{"app_id":%s,"secret":"s","auth_code":"%s"}`, "7", "x")), "application/json")
	if en.Code != 40113 {
		t.Errorf("numeric app_id: code %d, want 40113 (parsed, unknown)", en.Code)
	}
	// A refresh with the wrong grant_type.
	_, en = e.do(t, "POST", api+"oauth2/refresh_token/", "", strings.NewReader(`{"app_id":"`+appID+`","secret":"`+secret+`","refresh_token":"r"}`), "application/json")
	if en.Code != 40002 {
		t.Errorf("refresh without grant_type: code %d", en.Code)
	}
}

func TestSimCodeHTTP(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	var got struct{ Code string }
	e.control(t, "POST", "/sim/code?app_id="+appID+"&advertiser_ids="+adv2+","+adv1, "", 200, &got)
	g, err := e.c.Exchange(context.Background(), e.app, got.Code)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(g.AdvertiserIDs, ",") != adv2+","+adv1 {
		t.Errorf("granted %v", g.AdvertiserIDs)
	}
	e.control(t, "POST", "/sim/code?app_id="+appID+"&kind=tiktok_account", "", 200, &got)
	_, err = e.c.Exchange(context.Background(), e.app, got.Code)
	wantCode(t, err, tiktok.CodeInvalidAuthCode)
	e.control(t, "POST", "/sim/code?app_id="+appID+"&kind=other", "", 400, nil)
	e.control(t, "POST", "/sim/code", "", 400, nil)
}

func TestConcurrentRefreshOneWins(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	g := e.grant(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := e.c.Refresh(context.Background(), e.app, g.RefreshToken)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		if err == nil {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d of 8 concurrent refreshes with one token succeeded, want 1", ok)
	}
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- tiktoksim.Run(ctx, "127.0.0.1:0", tiktoksim.Options{}, pw) }()
	line := make([]byte, 200)
	n, err := pr.Read(line)
	if err != nil {
		t.Fatal(err)
	}
	_, base, ok := strings.Cut(strings.TrimSpace(string(line[:n])), "listening on ")
	if !ok {
		t.Fatalf("Run printed %q", line[:n])
	}
	resp, err := http.Post(base+"/sim/code?app_id=demo", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST /sim/code = %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if err := tiktoksim.Run(context.Background(), "127.0.0.1:-1", tiktoksim.Options{}, io.Discard); err == nil {
		t.Error("Run on a bad address: no error")
	}
}
