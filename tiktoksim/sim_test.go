package tiktoksim_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktoksim"
)

const (
	appID  = "app-1"
	secret = "s3cret"
	adv1   = "7012345678901234567"
	adv2   = "7012345678901234568"
	api    = "/open_api/v1.3/"
)

// env is a simulator on loopback with a client pointed at it.
type env struct {
	sim *tiktoksim.Server
	url string
	app tiktok.App
	c   *tiktok.Client
}

func newEnv(t *testing.T, opts tiktoksim.Options) *env {
	t.Helper()
	sim := tiktoksim.New(opts)
	ts := httptest.NewServer(sim)
	t.Cleanup(func() { sim.Close(); ts.Close() })
	return &env{sim: sim, url: ts.URL, c: &tiktok.Client{},
		app: tiktok.App{AppID: appID, Secret: secret, RedirectURL: "http://127.0.0.1:1/cb", Endpoints: tiktok.DefaultEndpoints(ts.URL, "")}}
}

// grant exchanges a fresh code for advertiserIDs (nil: the app's).
func (e *env) grant(t *testing.T, advertiserIDs []string) *tiktok.Grant {
	t.Helper()
	g, err := e.c.Exchange(context.Background(), e.app, e.sim.IssueCode(appID, advertiserIDs))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

type envelope struct {
	Code      int             `json:"code"`
	Message   string          `json:"message"`
	RequestID string          `json:"request_id"`
	Data      json.RawMessage `json:"data"`
}

// do sends a request and decodes the envelope.
func (e *env) do(t *testing.T, method, path, token string, body io.Reader, contentType string) (*http.Response, envelope) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Access-Token", token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var en envelope
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &en); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
		if en.RequestID == "" || resp.Header.Get("X-Tt-Logid") == "" {
			t.Errorf("%s %s: no request id / X-Tt-Logid", method, path)
		}
	}
	return resp, en
}

// control calls a /sim/ endpoint and decodes its JSON answer into out.
func (e *env) control(t *testing.T, method, path, body string, wantStatus int, out any) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != wantStatus {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, raw, wantStatus)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

func uploadBody(t *testing.T, advertiserID string, file []byte) (*bytes.Buffer, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	// The file comes first: the simulator must not need the id before it.
	fw, err := mw.CreateFormFile("image_file", "pic.png")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(file)
	if advertiserID != "" {
		_ = mw.WriteField("advertiser_id", advertiserID)
	}
	_ = mw.WriteField("upload_type", "UPLOAD_BY_FILE")
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf, mw.FormDataContentType()
}

func TestAPIAuthorization(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	g := e.grant(t, []string{adv1})
	expired := e.grant(t, []string{adv1})
	revoked := e.grant(t, []string{adv1})
	if !e.sim.RevokeToken(revoked.AccessToken) {
		t.Fatal("RevokeToken = false")
	}
	upload := func(id string) func() (io.Reader, string) {
		return func() (io.Reader, string) { return uploadBody(t, id, []byte("png bytes")) }
	}
	jsonBody := func(s string) func() (io.Reader, string) {
		return func() (io.Reader, string) { return strings.NewReader(s), "application/json" }
	}
	endpoints := []struct {
		name, method, path string
		body               func() (io.Reader, string) // for adv1
		other              string                     // the same naming adv2
		otherBody          func() (io.Reader, string)
	}{
		{"advertiser info", "GET", api + "advertiser/info/?advertiser_ids=" + url.QueryEscape(`["`+adv1+`"]`), nil,
			api + "advertiser/info/?advertiser_ids=" + url.QueryEscape(`["`+adv1+`",`+adv2+`]`), nil},
		{"campaign get", "GET", api + "campaign/get/?advertiser_id=" + adv1, nil, api + "campaign/get/?advertiser_id=" + adv2, nil},
		{"campaign create", "POST", api + "campaign/create/", jsonBody(`{"advertiser_id":"` + adv1 + `","campaign_name":"c"}`),
			api + "campaign/create/", jsonBody(`{"advertiser_id":` + adv2 + `}`)},
		{"report", "GET", api + "report/integrated/get/?advertiser_id=" + adv1, nil,
			api + "report/integrated/get/?advertiser_ids=" + url.QueryEscape(`["`+adv2+`"]`), nil},
		{"upload", "POST", api + "file/image/ad/upload/", upload(adv1), api + "file/image/ad/upload/", upload(adv2)},
		{"download", "GET", api + "sim/report/download/?size=10&advertiser_id=" + adv1, nil,
			api + "sim/report/download/?size=10&advertiser_id=" + adv2, nil},
		{"generic query", "GET", api + "ad/get/?advertiser_id=" + adv1, nil, api + "ad/get/?advertiser_id=" + adv2, nil},
		{"generic body", "POST", api + "ad/create/", jsonBody(`{"advertiser_id":` + adv1 + `}`), api + "ad/create/", jsonBody(`{"advertiser_ids":["` + adv2 + `"]}`)},
	}
	// Expire every token issued so far (expired's among them), then
	// refresh g only.
	e.sim.Advance(24 * time.Hour)
	g2, err := e.c.Refresh(context.Background(), e.app, g.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range endpoints {
		t.Run(ep.name, func(t *testing.T) {
			cases := []struct {
				name, token, path string
				body              func() (io.Reader, string)
				code              int
			}{
				{"ok", g2.AccessToken, ep.path, ep.body, 0},
				{"missing", "", ep.path, ep.body, tiktok.CodeTokenEmpty},
				{"unknown", "nope", ep.path, ep.body, tiktok.CodeTokenInvalid},
				{"expired", expired.AccessToken, ep.path, ep.body, tiktok.CodeTokenExpired},
				{"revoked", revoked.AccessToken, ep.path, ep.body, tiktok.CodeTokenInvalid},
				{"other advertiser", g2.AccessToken, ep.other, ep.otherBody, tiktok.CodeTokenAdvertiser},
			}
			for _, tc := range cases {
				var body io.Reader
				var ct string
				if tc.body != nil {
					body, ct = tc.body()
				}
				resp, en := e.do(t, ep.method, tc.path, tc.token, body, ct)
				if tc.code == 0 && ep.name == "download" {
					if resp.Header.Get("Content-Type") != "text/csv" {
						t.Errorf("%s: download answered %s", tc.name, resp.Header.Get("Content-Type"))
					}
					continue
				}
				if resp.StatusCode != http.StatusOK || en.Code != tc.code {
					t.Errorf("%s: HTTP %d code %d (%s), want 200 code %d", tc.name, resp.StatusCode, en.Code, en.Message, tc.code)
				}
			}
		})
	}
}

func TestEndpointData(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	g := e.grant(t, nil)

	_, en := e.do(t, "POST", api+"campaign/create/", g.AccessToken, strings.NewReader(`{"advertiser_id":`+adv1+`,"campaign_name":"Summer"}`), "application/json")
	var created struct {
		AdvertiserID string         `json:"advertiser_id"`
		CampaignName string         `json:"campaign_name"`
		Received     map[string]any `json:"received"`
	}
	if err := json.Unmarshal(en.Data, &created); err != nil || created.AdvertiserID != adv1 || created.CampaignName != "Summer" || created.Received["campaign_name"] != "Summer" {
		t.Errorf("campaign create = %s (%v)", en.Data, err)
	}

	file := bytes.Repeat([]byte("0123456789"), 100_000)
	body, ct := uploadBody(t, adv2, file)
	sent, sentLen := sha256.Sum256(body.Bytes()), int64(body.Len())
	_, en = e.do(t, "POST", api+"file/image/ad/upload/", g.AccessToken, body, ct)
	var up struct {
		AdvertiserID string `json:"advertiser_id"`
		FileName     string `json:"file_name"`
		Size         int64  `json:"size"`
		SHA256       string `json:"sha256"`
	}
	sum := sha256.Sum256(file)
	if err := json.Unmarshal(en.Data, &up); err != nil || up.AdvertiserID != adv2 || up.Size != int64(len(file)) ||
		up.SHA256 != hex.EncodeToString(sum[:]) || up.FileName != "pic.png" {
		t.Errorf("upload = %s (%v)", en.Data, err)
	}
	reqs := e.sim.Requests()
	if last := reqs[len(reqs)-1]; last.BodySHA256 != hex.EncodeToString(sent[:]) || last.BodyBytes != sentLen {
		t.Errorf("recorded body %s (%d bytes), want %x", last.BodySHA256, last.BodyBytes, sent)
	}

	_, en = e.do(t, "GET", api+"report/integrated/get/?advertiser_ids="+url.QueryEscape(`[`+adv1+`,"`+adv2+`"]`), g.AccessToken, nil, "")
	var rep struct {
		IDs  []string `json:"advertiser_ids"`
		List []any    `json:"list"`
	}
	if err := json.Unmarshal(en.Data, &rep); err != nil || len(rep.List) != 2 || rep.IDs[0] != adv1 || rep.IDs[1] != adv2 {
		t.Errorf("report = %s (%v)", en.Data, err)
	}

	_, en = e.do(t, "GET", api+"campaign/get/", g.AccessToken, nil, "")
	if en.Code != 40002 {
		t.Errorf("campaign get without advertiser_id: code %d", en.Code)
	}
	_, en = e.do(t, "GET", api+"advertiser/info/?advertiser_ids=notjson", g.AccessToken, nil, "")
	if en.Code != 40002 {
		t.Errorf("advertiser info with bad list: code %d", en.Code)
	}
}

func TestDownloadStreams(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	g := e.grant(t, nil)
	for _, size := range []int64{0, 1, 31, 33, 5<<20 + 7} {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s%ssim/report/download/?advertiser_id=%s&size=%d", e.url, api, adv1, size), nil)
		req.Header.Set("Access-Token", g.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.New()
		n, err := io.Copy(got, resp.Body)
		resp.Body.Close()
		want := sha256.New()
		_, _ = io.Copy(want, tiktoksim.NewReportReader(size))
		if err != nil || n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
			t.Errorf("size %d: read %d bytes, err %v, digest match %v", size, n, err, bytes.Equal(got.Sum(nil), want.Sum(nil)))
		}
		if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
			t.Errorf("size %d: Content-Length %d", size, resp.ContentLength)
		}
	}
	first, _ := io.ReadAll(io.LimitReader(tiktoksim.NewReportReader(70), 70))
	if want := "0000000000,sim-report-row,12345\n0000000001,sim-report-row,12345\n000000"; string(first) != want {
		t.Errorf("report bytes = %q", first)
	}

	// Close ends a download in flight.
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s%ssim/report/download/?advertiser_id=%s&size=%d", e.url, api, adv1, int64(1)<<40), nil)
	req.Header.Set("Access-Token", g.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<16)); err != nil {
		t.Fatal(err)
	}
	e.sim.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	if n >= 1<<40 {
		t.Errorf("download went on after Close: %d bytes", n)
	}
}

func TestPathsAndMethods(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	g := e.grant(t, nil)
	tests := []struct {
		method, path string
		status       int
	}{
		{"GET", api + "campaign/get", http.StatusNotFound},
		{"GET", "/open_api/v1.2/campaign/get", http.StatusNotFound},
		{"POST", api + "campaign/get/?advertiser_id=" + adv1, http.StatusMethodNotAllowed},
		{"GET", api + "oauth2/access_token/", http.StatusMethodNotAllowed},
		{"GET", "/nothing", http.StatusNotFound},
	}
	for _, tt := range tests {
		resp, _ := e.do(t, tt.method, tt.path, g.AccessToken, nil, "")
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		}
		if resp.Header.Get("X-Tt-Logid") == "" && strings.HasPrefix(tt.path, "/open_api/") {
			t.Errorf("%s %s: no X-Tt-Logid", tt.method, tt.path)
		}
	}
}

func TestRecording(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	g := e.grant(t, nil)
	req, _ := http.NewRequest("GET", e.url+api+"campaign/get/?advertiser_id="+adv2, nil)
	req.Header.Set("Access-Token", g.AccessToken)
	req.Header.Set("X-TikTok-Credential", "main")
	req.Header.Set("Authorization", "Bearer client-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, _ = e.do(t, "GET", api+"campaign/get/?advertiser_id="+adv1, "clients-own-token", nil, "")

	var got struct{ Requests []tiktoksim.Request }
	e.control(t, "GET", "/sim/requests", "", 200, &got)
	if len(got.Requests) != 3 {
		t.Fatalf("recorded %d requests, want 3 (exchange, two calls)", len(got.Requests))
	}
	ex, leak, foreign := got.Requests[0], got.Requests[1], got.Requests[2]
	if ex.Path != api+"oauth2/access_token/" || ex.AppID != appID || ex.BodyBytes == 0 {
		t.Errorf("exchange recorded as %+v", ex)
	}
	if leak.AccessToken != g.AccessToken || !leak.TokenKnown || leak.AppID != appID || leak.CredentialHeader != "main" ||
		leak.Authorization != "Bearer client-token" || len(leak.AdvertiserIDs) != 1 || leak.AdvertiserIDs[0] != adv2 || leak.Code != 0 ||
		leak.Header.Get("X-Tiktok-Credential") != "main" {
		t.Errorf("call recorded as %+v", leak)
	}
	if foreign.TokenKnown || foreign.AccessToken != "clients-own-token" || foreign.Code != tiktok.CodeTokenInvalid {
		t.Errorf("foreign token recorded as %+v", foreign)
	}
	e.control(t, "DELETE", "/sim/requests", "", 200, nil)
	if n := len(e.sim.Requests()); n != 0 {
		t.Errorf("after DELETE: %d requests", n)
	}

	// The log keeps the last 1000, oldest first.
	for i := range 1005 {
		r := httptest.NewRequest("GET", fmt.Sprintf("%sad/get/?advertiser_id=%d", api, i), nil)
		e.sim.ServeHTTP(httptest.NewRecorder(), r)
	}
	reqs := e.sim.Requests()
	if len(reqs) != 1000 || reqs[0].Query != "advertiser_id=5" || reqs[999].Query != "advertiser_id=1004" {
		t.Errorf("ring holds %d, first %q, last %q", len(reqs), reqs[0].Query, reqs[len(reqs)-1].Query)
	}
}

func TestStats(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	g := e.grant(t, nil)
	if _, err := e.c.Refresh(context.Background(), e.app, g.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Refresh(context.Background(), e.app, g.RefreshToken); err == nil {
		t.Fatal("reused refresh token accepted")
	}
	if _, err := e.c.Advertisers(context.Background(), e.app, g.AccessToken); err != nil {
		t.Fatal(err)
	}
	var got struct{ Apps map[string]tiktoksim.AppStats }
	e.control(t, "GET", "/sim/stats", "", 200, &got)
	want := tiktoksim.AppStats{ExchangeCalls: 1, RefreshCalls: 2, RefreshFailures: 1, APICalls: 1}
	if got.Apps[appID] != want {
		t.Errorf("stats = %+v, want %+v", got.Apps, want)
	}
	if e.sim.RefreshCalls(appID) != 2 || e.sim.ExchangeCalls(appID) != 1 || e.sim.APICalls(appID) != 1 || e.sim.RefreshCalls("other") != 0 {
		t.Errorf("Go accessors disagree: %+v", e.sim.Stats())
	}
}

func TestFaults(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	g := e.grant(t, nil)
	ctx := context.Background()
	campaign := func() (int, int) {
		resp, en := e.do(t, "GET", api+"campaign/get/?advertiser_id="+adv1, g.AccessToken, nil, "")
		return resp.StatusCode, en.Code
	}

	for _, code := range []int{40100, 40016, 40133, 50002, 40105} {
		e.control(t, "POST", "/sim/fault", fmt.Sprintf(`{"path_prefix":"/open_api/v1.3/campaign/","code":%d,"count":2}`, code), 200, nil)
		for i := range 2 {
			if status, got := campaign(); status != 200 || got != code {
				t.Errorf("fault %d, call %d: HTTP %d code %d", code, i, status, got)
			}
		}
		if _, got := campaign(); got != 0 {
			t.Errorf("fault %d outlived its count: code %d", code, got)
		}
	}

	// A fault bound to one access token spares every other token.
	e.control(t, "POST", "/sim/fault", `{"code":40105,"access_token":"`+g.AccessToken+`"}`, 200, nil)
	if _, got := campaign(); got != 40105 {
		t.Errorf("token-bound fault on its token: code %d", got)
	}
	if resp, en := e.do(t, "GET", api+"campaign/get/?advertiser_id="+adv1, e.grant(t, nil).AccessToken, nil, ""); resp.StatusCode != 200 || en.Code != 0 {
		t.Errorf("token-bound fault hit another token: HTTP %d code %d", resp.StatusCode, en.Code)
	}
	e.control(t, "DELETE", "/sim/fault", "", 200, nil)

	// A prefix that does not match, and the token scope, leave API calls alone.
	e.control(t, "POST", "/sim/fault", `{"path_prefix":"/open_api/v1.3/report/","code":40100}`, 200, nil)
	e.control(t, "POST", "/sim/fault", `{"scope":"token","http_status":503}`, 200, nil)
	if _, got := campaign(); got != 0 {
		t.Errorf("non-matching fault applied: code %d", got)
	}
	_, err := e.c.Refresh(ctx, e.app, g.RefreshToken)
	var apiErr *tiktok.APIError
	if !errors.As(err, &apiErr) || apiErr.HTTPStatus != 503 {
		t.Errorf("token endpoint down: err = %v", err)
	}
	var listed struct{ Faults []tiktoksim.Fault }
	e.control(t, "GET", "/sim/fault", "", 200, &listed)
	if len(listed.Faults) != 2 || listed.Faults[1].Scope != tiktoksim.ScopeToken {
		t.Errorf("faults = %+v", listed.Faults)
	}
	e.control(t, "DELETE", "/sim/fault", "", 200, nil)
	g2, err := e.c.Refresh(ctx, e.app, g.RefreshToken)
	if err != nil {
		t.Fatalf("refresh after clearing faults: %v", err)
	}

	// A raw body where TikTok's answer should be: garbage, a truncated envelope.
	for _, body := range []string{"<html>login</html>", `{"code":0,"data":{"access_tok`} {
		b, _ := json.Marshal(map[string]any{"scope": "token", "body": body, "count": 1})
		e.control(t, "POST", "/sim/fault", string(b), 200, nil)
		if _, err := e.c.Refresh(ctx, e.app, g2.RefreshToken); !errors.Is(err, tiktok.ErrBadResponse) {
			t.Errorf("body fault %q: err = %v, want ErrBadResponse", body, err)
		}
		if reqs := e.sim.Requests(); reqs[len(reqs)-1].Fault != "body" {
			t.Errorf("body fault recorded as %q", reqs[len(reqs)-1].Fault)
		}
	}

	// Hold: the refresh is served (the token rotates) but its answer is
	// held; a client that gives up first never learns the new token.
	e.control(t, "POST", "/sim/fault", `{"scope":"token","hold":"5s","count":1}`, 200, nil)
	hctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = e.c.Refresh(hctx, e.app, g2.RefreshToken)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("held answer: err = %v, want the client's deadline", err)
	}
	if _, err := e.c.Refresh(ctx, e.app, g2.RefreshToken); !errors.As(err, &apiErr) || apiErr.Code != tiktok.CodeRefreshTokenInvalid {
		t.Errorf("refresh with the token the held refresh rotated: err = %v, want 40107", err)
	}
	g2 = e.grant(t, nil)
	e.control(t, "POST", "/sim/fault", `{"scope":"token","hold":"50ms","count":1}`, 200, nil)
	if g3, err := e.c.Refresh(ctx, e.app, g2.RefreshToken); err != nil || g3.RefreshToken == "" {
		t.Errorf("held answer released: %+v, %v", g3, err)
	} else {
		g2 = g3
	}

	// HTTP 500 on API paths.
	if err := e.sim.AddFault(tiktoksim.Fault{HTTPStatus: 500, Count: 1}); err != nil {
		t.Fatal(err)
	}
	g = g2
	if status, _ := campaign(); status != 500 {
		t.Errorf("http_status fault: HTTP %d", status)
	}

	// Connection reset, on the API and on the token endpoint.
	e.control(t, "POST", "/sim/fault", `{"reset":true,"count":1}`, 200, nil)
	req, _ := http.NewRequest("GET", e.url+api+"campaign/get/?advertiser_id="+adv1, nil)
	req.Header.Set("Access-Token", g.AccessToken)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Error("reset fault: got a response")
	}
	e.control(t, "POST", "/sim/fault", `{"scope":"token","reset":true,"count":1}`, 200, nil)
	if _, err := e.c.Refresh(ctx, e.app, g.RefreshToken); err == nil || errors.As(err, &apiErr) {
		t.Errorf("token endpoint reset: err = %v, want a transport error", err)
	}

	// Latency delays, then serves. Only a lower bound on the wait is
	// checked: a loaded machine may add to it, never take from it.
	const latency = 300 * time.Millisecond
	e.control(t, "POST", "/sim/fault", `{"latency":"`+latency.String()+`","count":1}`, 200, nil)
	began := time.Now()
	if _, got := campaign(); got != 0 {
		t.Errorf("latency fault: code %d", got)
	}
	if waited := time.Since(began); waited < latency {
		t.Errorf("latency fault of %v answered after %v", latency, waited)
	}
	reqs := e.sim.Requests()
	if last := reqs[len(reqs)-1]; last.Fault != "latency" {
		t.Errorf("latency fault recorded as %q", last.Fault)
	}
	if len(e.sim.Faults()) != 0 {
		t.Errorf("count-limited faults left: %+v", e.sim.Faults())
	}

	for _, bad := range []string{`{}`, `{"code":1,"scope":"x"}`, `{"http_status":200}`, `{"latency":"soon"}`, `{"code":1,"bogus":1}`, `{"code":1,"count":-1}`} {
		e.control(t, "POST", "/sim/fault", bad, 400, nil)
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	ctx := context.Background()
	a, b := e.grant(t, nil), e.grant(t, nil)
	var n struct{ Revoked int }
	e.control(t, "POST", "/sim/revoke?app_id="+appID, "", 200, &n)
	if n.Revoked != 2 {
		t.Errorf("revoked %d grants, want 2", n.Revoked)
	}
	for _, g := range []*tiktok.Grant{a, b} {
		_, err := e.c.Advertisers(ctx, e.app, g.AccessToken)
		wantCode(t, err, tiktok.CodeTokenInvalid)
		_, err = e.c.Refresh(ctx, e.app, g.RefreshToken)
		wantCode(t, err, tiktok.CodeRefreshTokenInvalid)
	}

	c := e.grant(t, nil)
	e.control(t, "POST", "/sim/revoke?access_token="+c.AccessToken, "", 200, &n)
	if n.Revoked != 1 {
		t.Errorf("revoke by token: %d", n.Revoked)
	}
	_, err := e.c.Advertisers(ctx, e.app, c.AccessToken)
	wantCode(t, err, tiktok.CodeTokenInvalid)
	e.control(t, "POST", "/sim/revoke", "", 400, nil)

	// TikTok's own revoke endpoint.
	d := e.grant(t, nil)
	_, en := e.do(t, "POST", api+"oauth2/revoke_token/", "", strings.NewReader(`{"app_id":"`+appID+`","secret":"x","access_token":"`+d.AccessToken+`"}`), "application/json")
	if en.Code != 0 {
		t.Fatalf("revoke_token: code %d", en.Code)
	}
	_, err = e.c.Advertisers(ctx, e.app, d.AccessToken)
	wantCode(t, err, tiktok.CodeTokenInvalid)
}

func TestConfigAndClock(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{AccessTTL: time.Hour})
	ctx := context.Background()
	g := e.grant(t, nil)
	if g.ExpiresIn != time.Hour {
		t.Errorf("ExpiresIn = %v", g.ExpiresIn)
	}
	var cfg struct {
		AccessTTL  string `json:"access_ttl"`
		RefreshTTL string `json:"refresh_ttl"`
	}
	e.control(t, "POST", "/sim/config", `{"access_ttl":"2h","refresh_ttl":"3h"}`, 200, &cfg)
	if cfg.AccessTTL != "2h0m0s" || cfg.RefreshTTL != "3h0m0s" {
		t.Errorf("config = %+v", cfg)
	}
	g2, err := e.c.Refresh(ctx, e.app, g.RefreshToken)
	if err != nil || g2.ExpiresIn != 2*time.Hour || g2.RefreshExpiresIn != 3*time.Hour {
		t.Fatalf("refresh after config: %+v, %v", g2, err)
	}

	var now struct{ Now string }
	e.control(t, "POST", "/sim/clock", `{"advance":"2h"}`, 200, &now)
	if now.Now == "" {
		t.Error("clock answered no time")
	}
	_, err = e.c.Advertisers(ctx, e.app, g2.AccessToken)
	wantCode(t, err, tiktok.CodeTokenExpired)
	e.control(t, "POST", "/sim/clock", `{"advance":"1h"}`, 200, nil)
	_, err = e.c.Refresh(ctx, e.app, g2.RefreshToken)
	wantCode(t, err, tiktok.CodeRefreshTokenExpired)

	e.control(t, "POST", "/sim/config", `{"access_ttl":"0s"}`, 200, &cfg)
	if cfg.AccessTTL != "0s" {
		t.Errorf("config = %+v", cfg)
	}
	long := e.grant(t, nil)
	if long.ExpiresIn != 0 || long.RefreshToken != "" {
		t.Errorf("long-lived grant = %+v", long)
	}
	e.sim.Advance(10 * 365 * 24 * time.Hour)
	if _, err := e.c.Advertisers(ctx, e.app, long.AccessToken); err != nil {
		t.Errorf("long-lived token after ten years: %v", err)
	}
	var grants struct{ Grants []tiktoksim.Grant }
	e.control(t, "GET", "/sim/grants", "", 200, &grants)
	if len(grants.Grants) != 2 || grants.Grants[1].AccessToken != long.AccessToken || grants.Grants[0].RefreshToken != g2.RefreshToken {
		t.Errorf("grants = %+v", grants.Grants)
	}
	for _, bad := range []string{`{"access_ttl":"x"}`, `{"refresh_ttl":"x"}`, `{"other":"1h"}`} {
		e.control(t, "POST", "/sim/config", bad, 400, nil)
	}
	e.control(t, "POST", "/sim/clock", `{"advance":"-1h"}`, 400, nil)
}

func wantCode(t *testing.T, err error, code int) {
	t.Helper()
	var apiErr *tiktok.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != code {
		t.Errorf("err = %v, want code %d", err, code)
	}
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lastRecorded is the newest recorded request to path, if any.
func lastRecorded(e *env, path string) (tiktoksim.Request, bool) {
	reqs := e.sim.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Path == path {
			return reqs[i], true
		}
	}
	return tiktoksim.Request{}, false
}

// A download read to the end is recorded with every byte sent; one the
// client hangs up on is recorded as cut short by the client.
func TestDownloadRecordsBytesAndHangUp(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	g := e.grant(t, nil)
	path := api + "sim/report/download/"
	get := func(ctx context.Context, size int64) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s%s?advertiser_id=%s&size=%d", e.url, path, adv1, size), nil)
		req.Header.Set("Access-Token", g.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	const full = 1<<20 + 5
	resp := get(context.Background(), full)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	waitFor(t, 5*time.Second, "the full download to be recorded", func() bool {
		_, ok := lastRecorded(e, path)
		return ok
	})
	if r, _ := lastRecorded(e, path); r.ResponseBytes != full || r.ClientGone {
		t.Errorf("full download recorded %d bytes, client_gone %v; want %d, false", r.ResponseBytes, r.ClientGone, full)
	}
	e.sim.ClearRequests()

	const huge = int64(1) << 40
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp = get(ctx, huge)
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	// Streaming 1 TiB takes hours: the record appearing at all means the
	// handler saw the hang-up.
	waitFor(t, 10*time.Second, "the hung-up download to be recorded", func() bool {
		_, ok := lastRecorded(e, path)
		return ok
	})
	r, _ := lastRecorded(e, path)
	if !r.ClientGone || r.ResponseBytes < 1<<20 || r.ResponseBytes >= huge {
		t.Errorf("hung-up download recorded %d bytes, client_gone %v; want at least the 1 MiB read, far below %d, and client_gone",
			r.ResponseBytes, r.ClientGone, huge)
	}
	var got struct{ Requests []tiktoksim.Request }
	e.control(t, "GET", "/sim/requests", "", 200, &got)
	if n := len(got.Requests); n != 1 || !got.Requests[0].ClientGone || got.Requests[0].ResponseBytes != r.ResponseBytes {
		t.Errorf("/sim/requests = %+v, want the hung-up download with client_gone and response_bytes", got.Requests)
	}
}

// A request waiting on a latency fault shows in /sim/inflight; the client
// hanging up ends the wait at once and is recorded as client_gone.
func TestLatencyHangUpRecorded(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	g := e.grant(t, nil)
	path := api + "campaign/get/"
	e.control(t, "POST", "/sim/fault", `{"latency":"10m","count":1}`, 200, nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.url+path+"?advertiser_id="+adv1, nil)
		req.Header.Set("Access-Token", g.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, 5*time.Second, "the request to wait on the latency", func() bool {
		var got struct{ Requests []tiktoksim.Request }
		e.control(t, "GET", "/sim/inflight", "", 200, &got)
		return len(got.Requests) == 1 && got.Requests[0].Path == path && got.Requests[0].Fault == "latency"
	})
	if _, ok := lastRecorded(e, path); ok {
		t.Fatal("a request still waiting on its latency is already recorded as answered")
	}
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	// Ten minutes of latency: a record within seconds means the wait ended
	// with the hang-up.
	waitFor(t, 5*time.Second, "the hang-up to be recorded", func() bool {
		_, ok := lastRecorded(e, path)
		return ok
	})
	if r, _ := lastRecorded(e, path); !r.ClientGone || r.Fault != "latency" || r.ResponseBytes != 0 {
		t.Errorf("hung-up request recorded as %+v, want client_gone, fault latency, no bytes", r)
	}
	if n := len(e.sim.Inflight()); n != 0 {
		t.Errorf("%d requests still in flight after the hang-up", n)
	}
}

// /sim/issued keeps every token and code ever handed out, including those
// a refresh rotated away and codes already spent.
func TestIssued(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	ctx := context.Background()
	first := e.grant(t, nil)
	second, err := e.c.Refresh(ctx, e.app, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	unused := e.sim.IssueCode(appID, nil)

	// A code from the consent page, as a browser gets it.
	form := url.Values{"action": {"authorize"}, "advertiser_id": {adv1}, "app_id": {appID},
		"state": {"st"}, "redirect_uri": {"http://127.0.0.1:1/cb"}}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(e.url+"/portal/auth", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("auth_code") == "" {
		t.Fatalf("consent redirect %q: %v", resp.Header.Get("Location"), err)
	}
	consented := loc.Query().Get("auth_code")

	// Long-lived grants have no refresh token to record.
	e.sim.SetAccessTTL(0)
	long := e.grant(t, nil)

	var got tiktoksim.Issued
	e.control(t, "GET", "/sim/issued", "", 200, &got)
	want := tiktoksim.Issued{
		AccessTokens:  []string{first.AccessToken, second.AccessToken, long.AccessToken},
		RefreshTokens: []string{first.RefreshToken, second.RefreshToken},
	}
	if fmt.Sprint(got.AccessTokens) != fmt.Sprint(want.AccessTokens) || fmt.Sprint(got.RefreshTokens) != fmt.Sprint(want.RefreshTokens) {
		t.Errorf("issued tokens = %+v, want %+v", got, want)
	}
	// The first grant's code, the unused one, the consented one, the long
	// grant's code.
	if n := len(got.AuthCodes); n != 4 || got.AuthCodes[1] != unused || got.AuthCodes[2] != consented {
		t.Errorf("issued codes = %v, want 4 with the unused and the consented one second and third", got.AuthCodes)
	}
	if fmt.Sprint(e.sim.Issued()) != fmt.Sprint(got) {
		t.Errorf("Issued() = %+v, /sim/issued = %+v", e.sim.Issued(), got)
	}
}

// TestStrayRequestsRecorded: a token sent to a path the API does not serve
// is in the request log too, marked stray; control calls without a token
// are not.
func TestStrayRequestsRecorded(t *testing.T) {
	s := tiktoksim.New(tiktoksim.Options{})
	defer s.Close()
	ts := httptest.NewServer(s)
	defer ts.Close()
	for _, target := range []string{"/sim/requests", "/open_api/v1.3/../../sim/stats", "/elsewhere"} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/sim/stats", nil)
		req.URL.Opaque = target // sent as written, not cleaned
		req.Header.Set("Access-Token", "leaked-"+target)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(ts.URL + "/sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := s.Requests()
	if len(reqs) != 3 {
		t.Fatalf("recorded %d requests, want the 3 stray ones: %+v", len(reqs), reqs)
	}
	for _, r := range reqs {
		if !r.Stray || !strings.HasPrefix(r.AccessToken, "leaked-") {
			t.Errorf("recorded %+v, want a stray request with its token", r)
		}
	}
}

// TestOddTokenFields: with odd_token_fields the answers keep their tokens
// and carry every other field in an odd shape; the rotation still works.
func TestOddTokenFields(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{AccessTTL: 8 * time.Hour})
	var cfg struct {
		OddTokenFields bool `json:"odd_token_fields"`
	}
	e.control(t, "POST", "/sim/config", `{"odd_token_fields":true}`, 200, &cfg)
	if !cfg.OddTokenFields {
		t.Fatalf("config answered %+v", cfg)
	}
	g := e.grant(t, nil)
	if g.ExpiresIn != 8*time.Hour || g.RefreshToken == "" || g.OpenID != "7000000000000000099" || len(g.Dropped) != 2 {
		t.Fatalf("odd exchange answer read as %+v", g)
	}
	g2, err := e.c.Refresh(context.Background(), e.app, g.RefreshToken)
	if err != nil || g2.RefreshToken == "" || g2.RefreshToken == g.RefreshToken {
		t.Fatalf("odd refresh answer: %+v, %v", g2, err)
	}
}

// TestRedirectFault: the redirect knob answers 307 to the given URL.
func TestRedirectFault(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{})
	g := e.grant(t, nil)
	e.control(t, "POST", "/sim/fault", `{"scope":"token","redirect":"http://127.0.0.1:1/elsewhere","count":1}`, 200, nil)
	_, err := e.c.Refresh(context.Background(), e.app, g.RefreshToken)
	if !errors.Is(err, tiktok.ErrBadResponse) || !strings.Contains(err.Error(), "http://127.0.0.1:1/elsewhere") {
		t.Errorf("refresh answered with a redirect: err = %v", err)
	}
	if reqs := e.sim.Requests(); reqs[len(reqs)-1].Fault != "redirect" || reqs[len(reqs)-1].HTTPStatus != http.StatusTemporaryRedirect {
		t.Errorf("recorded %+v", reqs[len(reqs)-1])
	}
}
