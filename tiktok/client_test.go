package tiktok_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktoksim"
)

const (
	appID  = "app-1"
	secret = "s3cret-value"
)

func TestDefaultEndpoints(t *testing.T) {
	tests := []struct {
		kind string
		want tiktok.Endpoints
	}{
		{tiktok.KindAdvertiser, tiktok.Endpoints{
			AuthorizeURL:  "https://b.example/portal/auth",
			TokenURL:      "https://b.example/open_api/v1.3/oauth2/access_token/",
			RefreshURL:    "https://b.example/open_api/v1.3/oauth2/refresh_token/",
			AdvertiserURL: "https://b.example/open_api/v1.3/oauth2/advertiser/get/",
		}},
		{"", tiktok.Endpoints{
			AuthorizeURL:  "https://b.example/portal/auth",
			TokenURL:      "https://b.example/open_api/v1.3/oauth2/access_token/",
			RefreshURL:    "https://b.example/open_api/v1.3/oauth2/refresh_token/",
			AdvertiserURL: "https://b.example/open_api/v1.3/oauth2/advertiser/get/",
		}},
		{tiktok.KindTikTokAccount, tiktok.Endpoints{
			AuthorizeURL: "https://www.tiktok.com/v2/auth/authorize/",
			TokenURL:     "https://b.example/open_api/v1.3/tt_user/oauth2/token/",
			RefreshURL:   "https://b.example/open_api/v1.3/tt_user/oauth2/refresh_token/",
		}},
	}
	for _, tt := range tests {
		for _, base := range []string{"https://b.example", "https://b.example/"} {
			if got := tiktok.DefaultEndpoints(base, tt.kind); got != tt.want {
				t.Errorf("DefaultEndpoints(%q, %q) = %+v, want %+v", base, tt.kind, got, tt.want)
			}
		}
	}
}

func TestAuthCodeURL(t *testing.T) {
	tests := []struct {
		name string
		app  tiktok.App
		want string
	}{
		{"advertiser", tiktok.App{AppID: "A", RedirectURL: "http://localhost:8081/oauth/callback",
			Endpoints: tiktok.Endpoints{AuthorizeURL: "https://b.example/portal/auth"}},
			"https://b.example/portal/auth?app_id=A&redirect_uri=http%3A%2F%2Flocalhost%3A8081%2Foauth%2Fcallback&state=st%26x"},
		{"advertiser keeps query", tiktok.App{AppID: "A", RedirectURL: "http://r/cb",
			Endpoints: tiktok.Endpoints{AuthorizeURL: "https://b.example/portal/auth?lang=en"}},
			"https://b.example/portal/auth?app_id=A&lang=en&redirect_uri=http%3A%2F%2Fr%2Fcb&state=st%26x"},
		{"tiktok account default scope", tiktok.App{Kind: tiktok.KindTikTokAccount, AppID: "K", RedirectURL: "http://r/cb",
			Endpoints: tiktok.DefaultEndpoints("https://b.example", tiktok.KindTikTokAccount)},
			"https://www.tiktok.com/v2/auth/authorize/?client_key=K&redirect_uri=http%3A%2F%2Fr%2Fcb&response_type=code&scope=user.info.basic&state=st%26x"},
		{"tiktok account scopes", tiktok.App{Kind: tiktok.KindTikTokAccount, AppID: "K", RedirectURL: "http://r/cb",
			Scopes: []string{"user.info.basic", "video.list"}, Endpoints: tiktok.Endpoints{AuthorizeURL: "http://sim/v2/auth/authorize/?x=1"}},
			"http://sim/v2/auth/authorize/?client_key=K&redirect_uri=http%3A%2F%2Fr%2Fcb&response_type=code&scope=user.info.basic%2Cvideo.list&state=st%26x&x=1"},
	}
	var c tiktok.Client
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.AuthCodeURL(tt.app, "st&x"); got != tt.want {
				t.Errorf("AuthCodeURL = %s\nwant          %s", got, tt.want)
			}
		})
	}
}

// simApp starts a simulator and returns an App of kind pointing at it.
func simApp(t *testing.T, opts tiktoksim.Options, kind string) (*tiktoksim.Server, tiktok.App) {
	t.Helper()
	sim := tiktoksim.New(opts)
	ts := httptest.NewServer(sim)
	t.Cleanup(func() { ts.Close(); sim.Close() })
	return sim, tiktok.App{Kind: kind, AppID: appID, Secret: secret, RedirectURL: "http://127.0.0.1/cb",
		Endpoints: tiktok.DefaultEndpoints(ts.URL, kind)}
}

func wantCode(t *testing.T, err error, code int) {
	t.Helper()
	var apiErr *tiktok.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != code {
		t.Fatalf("err = %v, want APIError code %d", err, code)
	}
	if apiErr.RequestID == "" {
		t.Errorf("APIError without request id: %+v", apiErr)
	}
}

func TestExchangeRefreshRotation(t *testing.T) {
	for _, kind := range []string{tiktok.KindAdvertiser, tiktok.KindTikTokAccount} {
		t.Run(kind, func(t *testing.T) {
			sim, app := simApp(t, tiktoksim.Options{}, kind)
			ctx := context.Background()
			var c tiktok.Client
			g, err := c.Exchange(ctx, app, sim.IssueCode(appID, nil))
			if err != nil {
				t.Fatal(err)
			}
			if g.AccessToken == "" || g.RefreshToken == "" || g.ExpiresIn != 24*time.Hour || g.RefreshExpiresIn != 365*24*time.Hour {
				t.Fatalf("grant = %+v", g)
			}
			if kind == tiktok.KindAdvertiser {
				if want := []string{"7012345678901234567", "7012345678901234568"}; !reflect.DeepEqual(g.AdvertiserIDs, want) {
					t.Errorf("AdvertiserIDs = %v, want %v", g.AdvertiserIDs, want)
				}
				if want := []string{"1", "2", "3", "4"}; !reflect.DeepEqual(g.Scopes, want) {
					t.Errorf("Scopes = %v, want %v", g.Scopes, want)
				}
			} else {
				if g.OpenID == "" || !reflect.DeepEqual(g.Scopes, []string{"user.info.basic"}) {
					t.Errorf("tt_user grant = %+v", g)
				}
			}

			g2, err := c.Refresh(ctx, app, g.RefreshToken)
			if err != nil {
				t.Fatal(err)
			}
			if g2.RefreshToken == "" || g2.RefreshToken == g.RefreshToken || g2.AccessToken == g.AccessToken {
				t.Fatalf("refresh did not rotate: %+v", g2)
			}
			_, err = c.Refresh(ctx, app, g.RefreshToken)
			wantCode(t, err, tiktok.CodeRefreshTokenInvalid)
			if strings.Contains(err.Error(), g.RefreshToken) {
				t.Errorf("error shows the refresh token: %v", err)
			}
			if _, err := c.Refresh(ctx, app, g2.RefreshToken); err != nil {
				t.Errorf("refresh with the rotated token: %v", err)
			}
			if got := sim.RefreshCalls(appID); got != 3 {
				t.Errorf("RefreshCalls = %d, want 3", got)
			}
		})
	}
}

func TestAdvertisers(t *testing.T) {
	sim, app := simApp(t, tiktoksim.Options{}, tiktok.KindAdvertiser)
	var c tiktok.Client
	g, err := c.Exchange(context.Background(), app, sim.IssueCode(appID, []string{"7012345678901234567"}))
	if err != nil {
		t.Fatal(err)
	}
	ads, err := c.Advertisers(context.Background(), app, g.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if want := []tiktok.Advertiser{{ID: "7012345678901234567", Name: "Sim Advertiser One"}}; !reflect.DeepEqual(ads, want) {
		t.Errorf("Advertisers = %+v, want %+v", ads, want)
	}
	reqs := sim.Requests()
	last := reqs[len(reqs)-1]
	if last.AccessToken != g.AccessToken || last.Path != "/open_api/v1.3/oauth2/advertiser/get/" ||
		!strings.Contains(last.Query, "app_id="+appID) || !strings.Contains(last.Query, "secret="+secret) {
		t.Errorf("TikTok received %+v", last)
	}
	_, err = c.Advertisers(context.Background(), app, "not-a-token")
	wantCode(t, err, tiktok.CodeTokenInvalid)

	ttApp := app
	ttApp.Endpoints.AdvertiserURL = ""
	if _, err := c.Advertisers(context.Background(), ttApp, g.AccessToken); err == nil {
		t.Error("Advertisers without URL: no error")
	}
}

func TestNineteenDigitIDs(t *testing.T) {
	ids := []string{"7012345678901234567", "9223372036854775807", "9007199254740993"}
	for _, numeric := range []bool{false, true} {
		opts := tiktoksim.Options{NumericIDs: numeric, Apps: []tiktoksim.App{{ID: appID, Secret: secret, Advertisers: []tiktoksim.Advertiser{
			{ID: ids[0], Name: "a"}, {ID: ids[1], Name: "b"}, {ID: ids[2], Name: "c"}}}}}
		sim, app := simApp(t, opts, tiktok.KindAdvertiser)
		var c tiktok.Client
		g, err := c.Exchange(context.Background(), app, sim.IssueCode(appID, nil))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g.AdvertiserIDs, ids) {
			t.Errorf("numeric=%v: AdvertiserIDs = %v, want %v", numeric, g.AdvertiserIDs, ids)
		}
		ads, err := c.Advertisers(context.Background(), app, g.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range ads {
			if a.ID != ids[i] {
				t.Errorf("numeric=%v: advertiser %d = %s, want %s", numeric, i, a.ID, ids[i])
			}
		}
	}
}

func TestLongLivedGrant(t *testing.T) {
	sim, app := simApp(t, tiktoksim.Options{AccessTTL: tiktoksim.NoExpiry}, tiktok.KindAdvertiser)
	var c tiktok.Client
	g, err := c.Exchange(context.Background(), app, sim.IssueCode(appID, nil))
	if err != nil {
		t.Fatal(err)
	}
	if g.ExpiresIn != 0 || g.RefreshToken != "" || g.RefreshExpiresIn != 0 {
		t.Errorf("long-lived grant = %+v", g)
	}
	_, err = c.Refresh(context.Background(), app, "whatever")
	wantCode(t, err, tiktok.CodeRefreshTokenInvalid)
}

func TestExpiredRefreshToken(t *testing.T) {
	sim, app := simApp(t, tiktoksim.Options{RefreshTTL: time.Hour}, tiktok.KindTikTokAccount)
	var c tiktok.Client
	g, err := c.Exchange(context.Background(), app, sim.IssueCode(appID, nil))
	if err != nil {
		t.Fatal(err)
	}
	sim.Advance(time.Hour)
	_, err = c.Refresh(context.Background(), app, g.RefreshToken)
	wantCode(t, err, tiktok.CodeRefreshTokenExpired)
}

func TestInvalidAuthCode(t *testing.T) {
	sim, app := simApp(t, tiktoksim.Options{}, tiktok.KindAdvertiser)
	var c tiktok.Client
	code := sim.IssueCode(appID, nil)
	if _, err := c.Exchange(context.Background(), app, code); err != nil {
		t.Fatal(err)
	}
	_, err := c.Exchange(context.Background(), app, code)
	wantCode(t, err, tiktok.CodeInvalidAuthCode)
	if strings.Contains(err.Error(), code) {
		t.Errorf("error shows the auth code: %v", err)
	}
}

// received is what a fake TikTok endpoint saw.
type received struct {
	method, contentType, accessToken string
	query                            url.Values
	body                             map[string]any
}

// fake serves status and body and records the request.
func fake(t *testing.T, status int, body string) (*httptest.Server, *received) {
	t.Helper()
	got := &received{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.method, got.contentType, got.accessToken = r.Method, r.Header.Get("Content-Type"), r.Header.Get("Access-Token")
		got.query = r.URL.Query()
		if r.Method == http.MethodPost {
			if err := json.NewDecoder(r.Body).Decode(&got.body); err != nil {
				t.Errorf("request body: %v", err)
			}
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(ts.Close)
	return ts, got
}

func TestRequestBodies(t *testing.T) {
	okBody := `{"code":0,"message":"OK","request_id":"r","data":{"access_token":"at"}}`
	tests := []struct {
		name string
		kind string
		call func(c *tiktok.Client, app tiktok.App) error
		want map[string]any
	}{
		{"advertiser exchange", tiktok.KindAdvertiser, func(c *tiktok.Client, app tiktok.App) error {
			_, err := c.Exchange(context.Background(), app, "the-code")
			return err
		}, map[string]any{"app_id": appID, "secret": secret, "auth_code": "the-code"}},
		{"advertiser refresh", tiktok.KindAdvertiser, func(c *tiktok.Client, app tiktok.App) error {
			_, err := c.Refresh(context.Background(), app, "the-rt")
			return err
		}, map[string]any{"app_id": appID, "secret": secret, "refresh_token": "the-rt", "grant_type": "refresh_token"}},
		{"tt_user exchange", tiktok.KindTikTokAccount, func(c *tiktok.Client, app tiktok.App) error {
			_, err := c.Exchange(context.Background(), app, "the-code")
			return err
		}, map[string]any{"client_id": appID, "client_secret": secret, "grant_type": "authorization_code",
			"auth_code": "the-code", "redirect_uri": "http://127.0.0.1/cb"}},
		{"tt_user refresh", tiktok.KindTikTokAccount, func(c *tiktok.Client, app tiktok.App) error {
			_, err := c.Refresh(context.Background(), app, "the-rt")
			return err
		}, map[string]any{"client_id": appID, "client_secret": secret, "grant_type": "refresh_token", "refresh_token": "the-rt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, got := fake(t, http.StatusOK, okBody)
			app := tiktok.App{Kind: tt.kind, AppID: appID, Secret: secret, RedirectURL: "http://127.0.0.1/cb",
				Endpoints: tiktok.Endpoints{TokenURL: ts.URL + "/token/", RefreshURL: ts.URL + "/refresh/"}}
			if err := tt.call(&tiktok.Client{}, app); err != nil {
				t.Fatal(err)
			}
			if got.method != http.MethodPost || got.contentType != "application/json" || !reflect.DeepEqual(got.body, tt.want) {
				t.Errorf("TikTok received %s %s %v, want POST application/json %v", got.method, got.contentType, got.body, tt.want)
			}
		})
	}
}

func TestTokenResponses(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		want    *tiktok.Grant
		apiErr  *tiktok.APIError
		errText string
	}{
		{"tt_user scopes and durations", 200, `{"code":0,"message":"OK","request_id":"r","data":{"access_token":"at","expires_in":86400,"open_id":"o","refresh_token":"rt","refresh_token_expires_in":31536000,"scope":"user.info.basic, video.list","token_type":"Bearer"}}`,
			&tiktok.Grant{AccessToken: "at", ExpiresIn: 24 * time.Hour, RefreshToken: "rt", RefreshExpiresIn: 8760 * time.Hour,
				Scopes: []string{"user.info.basic", "video.list"}, OpenID: "o"}, nil, ""},
		{"numeric ids and scopes", 200, `{"data":{"access_token":"at","advertiser_ids":[7012345678901234567,"9223372036854775807"],"scope":[4,100]},"request_id":"r","code":0}`,
			&tiktok.Grant{AccessToken: "at", AdvertiserIDs: []string{"7012345678901234567", "9223372036854775807"}, Scopes: []string{"4", "100"}}, nil, ""},
		{"partial success", 200, `{"code":20001,"message":"partial","request_id":"r","data":{"access_token":"at"}}`,
			&tiktok.Grant{AccessToken: "at"}, nil, ""},
		{"expires_in as string", 200, `{"code":0,"data":{"access_token":"at","expires_in":"3600"}}`,
			&tiktok.Grant{AccessToken: "at", ExpiresIn: time.Hour}, nil, ""},
		{"envelope error", 200, `{"code":40110,"message":"Auth code is invalid","request_id":"rid-1","data":{}}`,
			nil, &tiktok.APIError{Code: 40110, Message: "Auth code is invalid", RequestID: "rid-1"}, ""},
		{"HTTP 500 no envelope", 500, `<html>oops</html>`,
			nil, &tiktok.APIError{HTTPStatus: 500, Message: "Internal Server Error"}, ""},
		{"HTTP 503 empty", 503, ``,
			nil, &tiktok.APIError{HTTPStatus: 503, Message: "Service Unavailable"}, ""},
		{"HTTP 502 with envelope", 502, `{"code":50000,"message":"system error","request_id":"r5"}`,
			nil, &tiktok.APIError{Code: 50000, Message: "system error", RequestID: "r5", HTTPStatus: 502}, ""},
		{"HTTP 404 success envelope", 404, `{"code":0,"message":"OK"}`,
			nil, &tiktok.APIError{HTTPStatus: 404, Message: "Not Found"}, ""},
		{"garbage", 200, `<html>hello</html>`, nil, nil, "tiktok: decode token response: "},
		{"truncated", 200, `{"code":0,"message":"OK","data":{"access_tok`, nil, nil, "tiktok: decode token response: "},
		{"empty", 200, ``, nil, nil, "tiktok: decode token response: unexpected EOF"},
		{"no code", 200, `{"message":"OK","data":{"access_token":"at"}}`, nil, nil, `tiktok: decode token response: no "code" field`},
		{"code not integer", 200, `{"code":"0","data":{"access_token":"at"}}`, nil, nil, `tiktok: decode token response: "code" is not an integer`},
		{"not an object", 200, `[1,2]`, nil, nil, "tiktok: decode token response: "},
		{"no data", 200, `{"code":0,"message":"OK"}`, nil, nil, "tiktok: decode token response: no data"},
		{"no access token", 200, `{"code":0,"data":{"expires_in":5}}`, nil, nil, "tiktok: decode token response: no access_token"},
		// Unusable ids and scopes are dropped, not fatal: the tokens of the
		// answer (a refresh has already rotated) are kept.
		{"bad scope", 200, `{"code":0,"data":{"access_token":"at","scope":{}}}`,
			&tiktok.Grant{AccessToken: "at", Dropped: []string{"scope: want a list or a comma-separated string"}}, nil, ""},
		{"object id", 200, `{"code":0,"data":{"access_token":"at","advertiser_ids":[{},"7012345678901234567"]}}`,
			&tiktok.Grant{AccessToken: "at", AdvertiserIDs: []string{"7012345678901234567"}, Dropped: []string{"advertiser_ids: an object is not an advertiser id"}}, nil, ""},
		{"access token a number", 200, `{"code":0,"data":{"access_token":12345}}`, nil, nil, "tiktok: decode token response: access_token: want a string, got a number"},
		{"data a list", 200, `{"code":0,"data":[{"access_token":"at"}]}`, nil, nil, "tiktok: decode token response: "},
		{"float id", 200, `{"code":0,"data":{"access_token":"at","advertiser_ids":[1.5]}}`,
			&tiktok.Grant{AccessToken: "at", Dropped: []string{`advertiser_ids: "1.5" is not an advertiser id (want digits)`}}, nil, ""},
		{"exponent id", 200, `{"code":0,"data":{"access_token":"at","refresh_token":"rt","advertiser_ids":["7012345678901234567",7.0e18]}}`,
			&tiktok.Grant{AccessToken: "at", RefreshToken: "rt", AdvertiserIDs: []string{"7012345678901234567"},
				Dropped: []string{`advertiser_ids: "7.0e18" is not an advertiser id (want digits)`}}, nil, ""},
		{"exponent id as string", 200, `{"code":0,"data":{"access_token":"at","advertiser_ids":["7.0e18"]}}`,
			&tiktok.Grant{AccessToken: "at", Dropped: []string{`advertiser_ids: "7.0e18" is not an advertiser id (want digits)`}}, nil, ""},
		{"negative id", 200, `{"code":0,"data":{"access_token":"at","advertiser_ids":[-7012345678901234567]}}`,
			&tiktok.Grant{AccessToken: "at", Dropped: []string{`advertiser_ids: "-7012345678901234567" is not an advertiser id (want digits)`}}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, _ := fake(t, tt.status, tt.body)
			app := tiktok.App{AppID: appID, Secret: secret, Endpoints: tiktok.Endpoints{TokenURL: ts.URL + "/token/"}}
			g, err := (&tiktok.Client{}).Exchange(context.Background(), app, "the-code")
			switch {
			case tt.want != nil:
				if err != nil || !reflect.DeepEqual(g, tt.want) {
					t.Errorf("Exchange = %+v, %v; want %+v", g, err, tt.want)
				}
			case tt.apiErr != nil:
				var apiErr *tiktok.APIError
				if !errors.As(err, &apiErr) || *apiErr != *tt.apiErr {
					t.Errorf("err = %#v, want %#v", err, tt.apiErr)
				}
				if errors.Is(err, tiktok.ErrBadResponse) {
					t.Errorf("err = %v: a TikTok refusal is not ErrBadResponse", err)
				}
			default:
				if err == nil || !strings.HasPrefix(err.Error(), tt.errText) {
					t.Errorf("err = %v, want prefix %q", err, tt.errText)
				}
				if !errors.Is(err, tiktok.ErrBadResponse) {
					t.Errorf("err = %v, want it to wrap ErrBadResponse", err)
				}
			}
			if err != nil && (strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "the-code")) {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}

func TestAdvertiserListBadResponses(t *testing.T) {
	tests := []struct{ name, body, errText string }{
		{"float id", `{"code":0,"data":{"list":[{"advertiser_id":1.5,"advertiser_name":"a"}]}}`,
			`tiktok: decode advertiser list response: advertiser_id: "1.5" is not an advertiser id (want digits)`},
		{"exponent id", `{"code":0,"data":{"list":[{"advertiser_id":7.0e18,"advertiser_name":"a"}]}}`,
			`tiktok: decode advertiser list response: advertiser_id: "7.0e18" is not an advertiser id (want digits)`},
		{"no data", `{"code":0,"message":"OK"}`, "tiktok: decode advertiser list response: no data"},
		{"not JSON", `<html>login</html>`, "tiktok: decode advertiser list response: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, _ := fake(t, http.StatusOK, tt.body)
			app := tiktok.App{AppID: appID, Secret: secret, Endpoints: tiktok.Endpoints{AdvertiserURL: ts.URL + "/adv/"}}
			ads, err := (&tiktok.Client{}).Advertisers(context.Background(), app, "the-token")
			if err == nil || !strings.HasPrefix(err.Error(), tt.errText) || !errors.Is(err, tiktok.ErrBadResponse) {
				t.Errorf("Advertisers = %v, %v; want ErrBadResponse %q", ads, err, tt.errText)
			}
		})
	}
}

// A connection that breaks mid-answer is a transport failure, not a bad
// answer: callers tell operators TikTok could not be reached.
func TestResponseCutOff(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "200")
		_, _ = io.WriteString(w, `{"code":0,"data":{"access_tok`)
	}))
	defer ts.Close()
	app := tiktok.App{AppID: appID, Secret: secret, Endpoints: tiktok.Endpoints{TokenURL: ts.URL + "/token/"}}
	_, err := (&tiktok.Client{}).Exchange(context.Background(), app, "the-code")
	if err == nil || errors.Is(err, tiktok.ErrBadResponse) || !strings.HasPrefix(err.Error(), "tiktok: read token response: ") {
		t.Errorf("err = %v, want a read failure that is not ErrBadResponse", err)
	}
}

func TestContextAndTransportErrors(t *testing.T) {
	blocked := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(blocked)
	}))
	defer ts.Close()
	app := tiktok.App{AppID: appID, Secret: secret, Endpoints: tiktok.DefaultEndpoints(ts.URL, "")}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := (&tiktok.Client{}).Advertisers(ctx, app, "the-token")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "the-token") {
		t.Errorf("error shows a secret: %v", err)
	}
	<-blocked

	// A client timeout with no context deadline; the *url.Error would
	// carry the URL with the secret in its query.
	c := &tiktok.Client{HTTP: &http.Client{Timeout: 50 * time.Millisecond}}
	blocked = make(chan struct{})
	_, err = c.Advertisers(context.Background(), app, "the-token")
	if err == nil || strings.Contains(err.Error(), secret) || !strings.HasPrefix(err.Error(), "tiktok: advertiser list request: ") {
		t.Errorf("err = %v", err)
	}
	<-blocked

	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	app.Endpoints = tiktok.DefaultEndpoints(closed.URL, "")
	if _, err := (&tiktok.Client{}).Advertisers(context.Background(), app, "the-token"); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("refused connection: err = %v", err)
	}
	if _, err := (&tiktok.Client{}).Refresh(context.Background(), app, "the-rt"); err == nil ||
		!strings.HasPrefix(err.Error(), "tiktok: refresh request: ") || errors.Is(err, tiktok.ErrBadResponse) {
		t.Errorf("refused connection: err = %v, want a request failure that is not ErrBadResponse", err)
	}
	if _, err := (&tiktok.Client{}).Exchange(context.Background(), tiktok.App{}, "c"); err == nil {
		t.Error("Exchange without URL: no error")
	}
}
