package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Two credentials of two apps, each granted its own advertisers.
const (
	appMain  = "7000000000000000001"
	appOther = "7000000000000000002"
	advMain1 = "7100000000000000001"
	advMain2 = "7100000000000000002"
	advOther = "7200000000000000001"
	// Secrets used in configs; the log scan looks for them.
	secretMain  = "e2e-app-secret-main-5b1f"
	secretOther = "e2e-app-secret-other-9c2d"
	// campaignGet narrows simulator faults to the scripts' calls, so the
	// proxy's own periodic advertiser listing never consumes one.
	campaignGet = "/open_api/v1.3/campaign/get/"
)

var twoCredentials = fmt.Sprintf(`  - name: main
    app_id: "%s"
    app_secret: %s
    default: true
  - name: other
    app_id: "%s"
    app_secret: %s
`, appMain, secretMain, appOther, secretOther)

// simRequest is one request the simulator recorded.
type simRequest struct {
	Method           string   `json:"method"`
	Path             string   `json:"path"`
	AccessToken      string   `json:"access_token"`
	TokenKnown       bool     `json:"token_known"`
	AppID            string   `json:"app_id"`
	AdvertiserIDs    []string `json:"advertiser_ids"`
	CredentialHeader string   `json:"credential_header"`
	BodyBytes        int64    `json:"body_bytes"`
	BodySHA256       string   `json:"body_sha256"`
	Code             int      `json:"code"`
	HTTPStatus       int      `json:"http_status"`
	Fault            string   `json:"fault"`
	// ResponseBytes and ClientGone tell a stream or latency cut short by
	// the proxy hanging up from one served in full.
	ResponseBytes int64 `json:"response_bytes"`
	ClientGone    bool  `json:"client_gone"`
}

func (s *sim) requests(t *testing.T) []simRequest {
	t.Helper()
	status, _, b := httpDo(t, "GET", s.URL+"/sim/requests", nil, nil)
	if status != 200 {
		t.Fatalf("sim requests: HTTP %d", status)
	}
	var out struct{ Requests []simRequest }
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out.Requests
}

// inflight is the requests the simulator is serving now (not yet answered).
func (s *sim) inflight(t *testing.T) []simRequest {
	t.Helper()
	status, _, b := httpDo(t, "GET", s.URL+"/sim/inflight", nil, nil)
	if status != 200 {
		t.Fatalf("sim inflight: HTTP %d", status)
	}
	var out struct{ Requests []simRequest }
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out.Requests
}

// recordedTo returns the simulator's recorded requests to path, oldest first.
func (s *sim) recordedTo(t *testing.T, path string) []simRequest {
	t.Helper()
	var out []simRequest
	for _, r := range s.requests(t) {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// lastRequest is the newest recorded API request (not a token endpoint).
func (s *sim) lastRequest(t *testing.T) simRequest {
	t.Helper()
	reqs := s.requests(t)
	for i := len(reqs) - 1; i >= 0; i-- {
		if !strings.Contains(reqs[i].Path, "/oauth2/") {
			return reqs[i]
		}
	}
	t.Fatal("the simulator recorded no API request")
	return simRequest{}
}

type simGrant struct {
	AppID        string `json:"app_id"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Revoked      bool   `json:"revoked"`
}

func (s *sim) grants(t *testing.T) []simGrant {
	t.Helper()
	status, _, b := httpDo(t, "GET", s.URL+"/sim/grants", nil, nil)
	if status != 200 {
		t.Fatalf("sim grants: HTTP %d", status)
	}
	var out struct{ Grants []simGrant }
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out.Grants
}

type simStats struct {
	ExchangeCalls   int `json:"exchange_calls"`
	RefreshCalls    int `json:"refresh_calls"`
	RefreshFailures int `json:"refresh_failures"`
	APICalls        int `json:"api_calls"`
}

func (s *sim) stats(t *testing.T, appID string) simStats {
	t.Helper()
	status, _, b := httpDo(t, "GET", s.URL+"/sim/stats", nil, nil)
	if status != 200 {
		t.Fatalf("sim stats: HTTP %d", status)
	}
	var out struct{ Apps map[string]simStats }
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out.Apps[appID]
}

// twoCredentialSetup starts a simulator and a proxy with both credentials
// authorized through the admin listener's callback.
func twoCredentialSetup(t *testing.T, extra string) (*sim, *proxy) {
	t.Helper()
	s := startSim(t)
	px := startProxy(t, s, proxyConfig{Credentials: twoCredentials, Extra: extra})
	px.authorize(t, s, "main", appMain, advMain1, advMain2)
	px.authorize(t, s, "other", appOther, advOther)
	return s, px
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// The script's view: unmodified requests reach TikTok with the right
// credential's token, selected by every rule of SPEC.
func TestScriptCallsReachTikTokWithTheRightToken(t *testing.T) {
	s, px := twoCredentialSetup(t, "")
	api := px.URL + "/open_api/v1.3"

	upload := &bytes.Buffer{}
	mw := multipart.NewWriter(upload)
	_ = mw.WriteField("advertiser_id", advOther)
	_ = mw.WriteField("upload_type", "UPLOAD_BY_FILE")
	fw, _ := mw.CreateFormFile("image_file", "banner.png")
	fileBytes := bytes.Repeat([]byte("\x89PNG image bytes "), 200_000) // ~3.4 MB
	_, _ = fw.Write(fileBytes)
	_ = mw.Close()

	jsonBody := []byte(`{"advertiser_id": "` + advOther + `", "campaign_name": "spring \u00e9t\u00e9", "budget": 50.00,  "objective_type":"TRAFFIC"}`)
	tests := []struct {
		name       string
		method     string
		url        string
		header     http.Header
		body       []byte
		wantApp    string
		wantCred   string
		wantBodySH string
	}{
		{name: "GET advertiser_id query", method: "GET", url: api + "/campaign/get/?advertiser_id=" + advMain2,
			wantApp: appMain, wantCred: "main"},
		{name: "GET advertiser_ids JSON list", method: "GET",
			url:     api + "/advertiser/info/?advertiser_ids=" + url.QueryEscape(`["`+advOther+`"]`),
			wantApp: appOther, wantCred: "other"},
		{name: "POST JSON body", method: "POST", url: api + "/campaign/create/",
			header: http.Header{"Content-Type": {"application/json"}}, body: jsonBody,
			wantApp: appOther, wantCred: "other", wantBodySH: sha(jsonBody)},
		{name: "multipart upload", method: "POST", url: api + "/file/image/ad/upload/",
			header: http.Header{"Content-Type": {mw.FormDataContentType()}}, body: upload.Bytes(),
			wantApp: appOther, wantCred: "other", wantBodySH: sha(upload.Bytes())},
		{name: "header selection", method: "GET", url: api + "/bc/get/?page=1",
			header: http.Header{"X-Tiktok-Credential": {"other"}}, wantApp: appOther, wantCred: "other"},
		{name: "default credential", method: "GET", url: api + "/bc/get/?page=2",
			wantApp: appMain, wantCred: "main"},
		{name: "client's own Access-Token is replaced", method: "GET", url: api + "/campaign/get/?advertiser_id=" + advMain1,
			header: http.Header{"Access-Token": {"client-own-token-must-not-leak"}}, wantApp: appMain, wantCred: "main"},
		{name: "SDK style: empty Access-Token, JSON content type on GET", method: "GET",
			url:     api + "/campaign/get/?advertiser_id=" + advOther,
			header:  http.Header{"Access-Token": {""}, "Content-Type": {"application/json"}, "Sdk-Language": {"nodejs"}},
			wantApp: appOther, wantCred: "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != nil {
				body = bytes.NewReader(tt.body)
			}
			status, h, b := httpDo(t, tt.method, tt.url, tt.header, body)
			if status != 200 {
				t.Fatalf("HTTP %d: %s", status, b)
			}
			if env := decodeEnvelope(t, b); env.Code != 0 {
				t.Fatalf("code %d: %s", env.Code, env.Message)
			}
			if got := h.Get("X-TikTok-Auth-Proxy-Credential"); got != tt.wantCred {
				t.Errorf("X-TikTok-Auth-Proxy-Credential = %q, want %q", got, tt.wantCred)
			}
			r := s.lastRequest(t)
			if !r.TokenKnown || r.AppID != tt.wantApp {
				t.Errorf("TikTok saw a token of app %q (known %v), want app %q", r.AppID, r.TokenKnown, tt.wantApp)
			}
			if r.AccessToken == "client-own-token-must-not-leak" || r.CredentialHeader != "" {
				t.Errorf("client headers leaked to TikTok: token %q, credential header %q", r.AccessToken, r.CredentialHeader)
			}
			if tt.wantBodySH != "" && r.BodySHA256 != tt.wantBodySH {
				t.Errorf("body reached TikTok changed: sha256 %s, want %s", r.BodySHA256, tt.wantBodySH)
			}
		})
	}
}
