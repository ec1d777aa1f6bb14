package proxy

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

const (
	advMain  = "1111111111111111111"
	advOther = "2222222222222222222"
	advNone  = "9999999999999999999"
)

func TestSelection(t *testing.T) {
	big := `{"advertiser_id":"` + advOther + `","pad":"` + strings.Repeat("x", 2000) + `"}`
	file := `Content-Disposition: form-data; name="image_file"; filename="a.png"` + "\r\nContent-Type: image/png\r\n\r\n" + strings.Repeat("P", 100)
	field := func(name, v string) string {
		return `Content-Disposition: form-data; name="` + name + `"` + "\r\n\r\n" + v
	}
	jsonBody := `{"advertiser_id":"` + advOther + `"}`
	afterFile := multipartBody("XYZ", file, field("advertiser_id", advOther))
	tests := []selectionCase{
		{name: "header", target: "/open_api/v1.3/campaign/get/?advertiser_id=" + advMain, header: map[string]string{"X-TikTok-Credential": "other"}, want: "other"},
		{name: "header unknown", target: "/open_api/v1.3/campaign/get/", header: map[string]string{"X-TikTok-Credential": "nope"}, errCode: 90002, status: 400},
		{name: "header repeated", target: "/open_api/v1.3/campaign/get/", header: map[string]string{"X-TikTok-Credential": "main"},
			repeat: map[string]string{"X-TikTok-Credential": "other"}, errCode: 90011, status: 400, msg: "X-TikTok-Credential is sent 2 times"},
		{name: "header repeated same name", target: "/open_api/v1.3/campaign/get/", header: map[string]string{"X-TikTok-Credential": "main"},
			repeat: map[string]string{"X-TikTok-Credential": "main"}, errCode: 90011, status: 400},
		{name: "query advertiser_id", target: "/open_api/v1.3/campaign/get/?advertiser_id=" + advOther, want: "other"},
		{name: "query unknown falls to default", target: "/open_api/v1.3/campaign/get/?advertiser_id=" + advNone, want: "main"},
		{name: "query advertiser_ids strings", target: `/open_api/v1.3/advertiser/info/?advertiser_ids=["` + advOther + `"]`, want: "other"},
		{name: "query advertiser_ids numbers", target: `/open_api/v1.3/advertiser/info/?advertiser_ids=[` + advOther + `]`, want: "other"},
		{name: "query advertiser_ids bad JSON", target: `/open_api/v1.3/advertiser/info/?advertiser_ids=[1,`, errCode: 90011, status: 400},
		{name: "query two credentials", target: `/open_api/v1.3/advertiser/info/?advertiser_ids=["` + advOther + `","` + advMain + `"]`, errCode: 90001, status: 400},
		{name: "no advertiser default", target: "/open_api/v1.3/bc/get/", want: "main"},
		{name: "SDK style GET", target: "/open_api/v1.3/campaign/get/?advertiser_id=" + advOther,
			header: map[string]string{"Content-Type": "application/json", "Access-Token": ""}, want: "other"},
		{name: "JSON body string id", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/json"}, body: `{"advertiser_id":"` + advOther + `","name":"c"}`, want: "other"},
		{name: "JSON body number id", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/json; charset=utf-8"}, body: `{"advertiser_id":` + advOther + `}`, want: "other"},
		{name: "JSON body advertiser_ids", method: "POST", target: "/open_api/v1.3/report/task/create/",
			header: map[string]string{"Content-Type": "application/json"}, body: ` {"advertiser_ids":[` + advOther + `,"` + advOther + `"]}`, want: "other"},
		{name: "JSON body float id", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/json"}, body: `{"advertiser_id":2.2e18}`, errCode: 90011, status: 400},
		{name: "JSON body bad", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/json"}, body: `{"advertiser_id":`, errCode: 90011, status: 400},
		{name: "JSON body against query", method: "POST", target: "/open_api/v1.3/campaign/create/?advertiser_id=" + advMain,
			header: map[string]string{"Content-Type": "application/json"}, body: `{"advertiser_id":"` + advOther + `"}`, errCode: 90001, status: 400},
		{name: "JSON body too large", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/json"}, body: big, errCode: 90008, status: 413},
		{name: "JSON body too large with header", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/json", "X-TikTok-Credential": "other"}, body: big, want: "other"},
		{name: "JSON body too large with query", method: "POST", target: "/open_api/v1.3/campaign/create/?advertiser_id=" + advOther,
			header: map[string]string{"Content-Type": "application/json"}, body: big, want: "other"},
		{name: "text/plain JSON that does not parse", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "text/plain"}, body: `{"advertiser_id":`, errCode: 90011, status: 400},
		{name: "text/plain JSON read", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "text/plain;charset=UTF-8"}, body: jsonBody, want: "other"},
		{name: "JSON without Content-Type read", method: "POST", target: "/open_api/v1.3/campaign/create/", body: " \r\n" + jsonBody, want: "other"},
		{name: "JSON after a byte order mark read", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/octet-stream"}, body: "\ufeff" + jsonBody, want: "other"},
		{name: "+json read", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/merge-patch+json"}, body: jsonBody, want: "other"},
		{name: "text/plain JSON against query", method: "POST", target: "/open_api/v1.3/campaign/create/?advertiser_id=" + advMain,
			header: map[string]string{"Content-Type": "text/plain"}, body: jsonBody, errCode: 90001, status: 400},
		{name: "text/plain JSON too large", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "text/plain"}, body: big, errCode: 90008, status: 413},
		{name: "text/plain not JSON streams on", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "text/plain"}, body: `hello {"advertiser_id":"` + advOther + `"}` + strings.Repeat("x", 2000), want: "main"},
		{name: "two Content-Type headers", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "text/plain"}, repeat: map[string]string{"Content-Type": "application/json"}, body: jsonBody,
			errCode: 90011, status: 400, msg: "Content-Type header is sent 2 times"},
		{name: "two Content-Type headers with query", method: "POST", target: "/open_api/v1.3/campaign/create/?advertiser_id=" + advOther,
			header: map[string]string{"Content-Type": "text/plain"}, repeat: map[string]string{"Content-Type": "application/json"}, body: jsonBody, errCode: 90011, status: 400},
		{name: "multipart encoded advertiser with query", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/?advertiser_id=" + advMain,
			header:  map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"},
			body:    multipartBody("XYZ", "Content-Disposition: form-data; name=\"advertiser_id\"\r\nContent-Transfer-Encoding: base64\r\n\r\nMjIy", field("advertiser_id", advOther)),
			errCode: 90011, status: 400},
		{name: "two Content-Type headers with header", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "text/plain", "X-TikTok-Credential": "other"}, repeat: map[string]string{"Content-Type": "application/json"}, body: jsonBody, want: "other"},
		{name: "gzip body", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, body: "\x1f\x8b\x08\x00",
			errCode: 90011, status: 400, msg: "compressed bodies cannot be inspected; name the credential with X-TikTok-Credential or advertiser_id in the query"},
		{name: "gzip body with query", method: "POST", target: "/open_api/v1.3/campaign/create/?advertiser_id=" + advOther,
			header: map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, body: "\x1f\x8b\x08\x00", want: "other"},
		{name: "identity encoding read", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/json", "Content-Encoding": "identity"}, body: jsonBody, want: "other"},
		{name: "form advertiser_id", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "name=c&advertiser_id=" + advOther, want: "other"},
		{name: "form advertiser_ids", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "advertiser_ids=%5B%22" + advOther + "%22%5D", want: "other"},
		{name: "form two credentials", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "advertiser_id=" + advOther + "&advertiser_id=" + advMain, errCode: 90001, status: 400},
		{name: "form against query", method: "POST", target: "/open_api/v1.3/campaign/create/?advertiser_id=" + advMain,
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "advertiser_id=" + advOther, errCode: 90001, status: 400},
		{name: "form bad escape", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "advertiser_id=%zz", errCode: 90011, status: 400},
		{name: "form too large", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "advertiser_id=" + advOther + "&pad=" + strings.Repeat("x", 2000), errCode: 90008, status: 413},
		{name: "multipart two advertisers of two credentials", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"},
			body:   multipartBody("XYZ", field("advertiser_id", advMain), field("advertiser_id", advOther), file), errCode: 90001, status: 400},
		{name: "multipart advertiser_ids field", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"},
			body:   multipartBody("XYZ", field("advertiser_ids", `["`+advOther+`"]`), file), want: "other"},
		{name: "multipart encoded advertiser", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header:  map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"},
			body:    multipartBody("XYZ", "Content-Disposition: form-data; name=\"advertiser_id\"\r\nContent-Transfer-Encoding: base64\r\n\r\nMjIyMjIyMjIyMjIyMjIyMjIyMg==", file),
			errCode: 90011, status: 400, msg: "Content-Transfer-Encoding"},
		{name: "multipart advertiser field too long", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"},
			body:   multipartBody("XYZ", field("advertiser_id", strings.Repeat(" ", 300)+advOther), file), errCode: 90011, status: 400},
		{name: "multipart field first", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"},
			body:   multipartBody("XYZ", field("upload_type", "UPLOAD_BY_FILE"), field("advertiser_id", advOther), file), want: "other"},
		{name: "multipart field after file", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"},
			body:   afterFile, errCode: 90008, status: 413, msg: "put the advertiser_id field before the file, or name the credential with X-TikTok-Credential"},
		{name: "multipart field after file one credential", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"}, oneCred: true, body: afterFile, want: "main"},
		{name: "multipart field after file with header", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ", "X-TikTok-Credential": "other"}, body: afterFile, want: "other"},
		{name: "multipart field after file with query", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/?advertiser_id=" + advOther,
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"}, body: afterFile, want: "other"},
		{name: "multipart field after file unknown query advertiser", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/?advertiser_id=" + advNone,
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"}, body: afterFile, errCode: 90008, status: 413},
		{name: "multipart field beyond max_inspect_bytes", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"},
			body:   multipartBody("XYZ", field("note", strings.Repeat("n", 2000)), field("advertiser_id", advOther)), errCode: 90008, status: 413},
		{name: "multipart names no advertiser", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"},
			body:   multipartBody("XYZ", field("upload_type", "UPLOAD_BY_URL"), field("image_url", "https://example.com/a.png")), want: "main"},
		{name: "multipart malformed", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"}, body: "not multipart at all", errCode: 90011, status: 400},
		{name: "multipart malformed with header", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ", "X-TikTok-Credential": "other"}, body: "not multipart at all", want: "other"},
		{name: "multipart without boundary", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data"}, body: afterFile, errCode: 90011, status: 400, msg: "no boundary"},
		{name: "multipart broken boundary parameter", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary"}, body: afterFile, errCode: 90011, status: 400},
		{name: "multipart without boundary one credential", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data"}, oneCred: true, body: afterFile, errCode: 90011, status: 400},
		{name: "multipart without boundary with header", method: "POST", target: "/open_api/v1.3/file/image/ad/upload/",
			header: map[string]string{"Content-Type": "multipart/form-data", "X-TikTok-Credential": "other"}, body: afterFile, want: "other"},
		{name: "Content-Type unparsable", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/"}, body: jsonBody, errCode: 90011, status: 400, msg: `Content-Type header "application/" does not parse`},
		{name: "Content-Type unparsable with header", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/", "X-TikTok-Credential": "other"}, body: jsonBody, want: "other"},
		{name: "Content-Type unparsable with query", method: "POST", target: "/open_api/v1.3/campaign/create/?advertiser_id=" + advOther,
			header: map[string]string{"Content-Type": "application/"}, body: jsonBody, want: "other"},
		{name: "Content-Type unparsable without body", target: "/open_api/v1.3/campaign/get/", header: map[string]string{"Content-Type": "application/"}, want: "main"},
		{name: "JSON with a broken parameter still read", method: "POST", target: "/open_api/v1.3/campaign/create/",
			header: map[string]string{"Content-Type": "application/json; charset"}, body: jsonBody, want: "other"},
		{name: "no default", target: "/open_api/v1.3/bc/get/", noDflt: true, errCode: 90001, status: 400},
		{name: "unknown advertiser no default", target: "/open_api/v1.3/campaign/get/?advertiser_id=" + advNone, noDflt: true, errCode: 90001, status: 400},
		{name: "path outside open_api", target: "/admin/", errCode: 90009, status: 404},
		{name: "path escaping open_api", target: "/open_api/../metrics", errCode: 90009, status: 404},
		{name: "absolute URL other host", target: "http://evil.example/open_api/v1.3/campaign/get/", errCode: 90009, status: 421},
		{name: "oauth2 revoke", method: "POST", target: "/open_api/v1.3/oauth2/revoke_token/", header: map[string]string{"Content-Type": "application/json"},
			body: `{"access_token":"x"}`, errCode: 90009, status: 404, msg: "/oauth2/ paths are not forwarded"},
		{name: "oauth2 refresh", method: "POST", target: "/open_api/v1.3/oauth2/refresh_token/", errCode: 90009, status: 404},
		{name: "oauth2 tt_user token", method: "POST", target: "/open_api/v1.3/tt_user/oauth2/token/", errCode: 90009, status: 404},
		{name: "oauth2 other version", target: "/open_api/v1.2/oauth2/advertiser/get/", errCode: 90009, status: 404},
		{name: "oauth2 upper case", target: "/open_api/v1.3/OAuth2/advertiser/get/", errCode: 90009, status: 404},
		{name: "oauth2 advertiser get without slash", target: "/open_api/v1.3/oauth2/advertiser/get", errCode: 90009, status: 404},
		{name: "oauth2 advertiser get", target: "/open_api/v1.3/oauth2/advertiser/get/", header: map[string]string{"X-TikTok-Credential": "other"}, want: "other"},
		{name: "method TRACE", method: "TRACE", target: "/open_api/v1.3/campaign/get/", errCode: 90009, status: 405, msg: "only GET and POST"},
		{name: "method PUT", method: "PUT", target: "/open_api/v1.3/campaign/get/", body: "{}", errCode: 90009, status: 405},
		{name: "method DELETE", method: "DELETE", target: "/open_api/v1.3/campaign/get/", errCode: 90009, status: 405},
		{name: "path backslash", target: `/open_api/v1.3/campaign\get/`, errCode: 90009, status: 404, msg: "backslash"},
		{name: "path semicolon", target: "/open_api/v1.3/campaign/get/;x=1", errCode: 90009, status: 404},
		{name: "path encoded slash", target: "/open_api/v1.3/campaign%2fget/", errCode: 90009, status: 404},
		{name: "path encoded slash upper", target: "/open_api/v1.3/campaign%2Fget/", errCode: 90009, status: 404},
		{name: "path encoded backslash", target: "/open_api/v1.3/campaign%5Cget/", errCode: 90009, status: 404},
		{name: "path encoded dot", target: "/open_api/v1.3/%2e%2E/campaign/get/", errCode: 90009, status: 404},
		{name: "path encoded backslash lower", target: "/open_api/v1.3/campaign%5cget/", errCode: 90009, status: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

// selectionCase is one request through a two-credential proxy (main the
// default, other) and what must come of it: a forward through want with
// the body and Content-Type unchanged, or the proxy error, with nothing
// sent to TikTok.
type selectionCase struct {
	name    string
	method  string
	target  string
	header  map[string]string
	repeat  map[string]string // added as a second value of the header
	body    string
	noDflt  bool
	oneCred bool   // only "main" is configured
	want    string // credential, or "" for an error
	errCode int
	status  int
	msg     string // substring of the error message
}

func (tc selectionCase) run(t *testing.T) {
	h := newHarness(t, nil, func(c *config.Config, _ *Options) {
		if tc.noDflt {
			c.Credentials[0].Default = false
		}
		if tc.oneCred {
			c.Credentials = c.Credentials[:1]
		}
	})
	method := tc.method
	if method == "" {
		method = http.MethodGet
	}
	r := httptest.NewRequest(method, tc.target, strings.NewReader(tc.body))
	if tc.body == "" {
		r = httptest.NewRequest(method, tc.target, nil)
	}
	for k, v := range tc.header {
		r.Header.Set(k, v)
	}
	for k, v := range tc.repeat {
		r.Header.Add(k, v)
	}
	w := h.do(r)
	seen := h.up.requests()
	if tc.want == "" {
		e := checkProxyError(t, w, tc.errCode, tc.status)
		if !strings.Contains(e.Message, tc.msg) {
			t.Errorf("message %q does not contain %q", e.Message, tc.msg)
		}
		if len(seen) != 0 {
			t.Errorf("upstream got %d requests, want none", len(seen))
		}
		return
	}
	if w.Code != http.StatusOK || len(seen) != 1 {
		t.Fatalf("status %d, upstream requests %d; body %s", w.Code, len(seen), w.Body)
	}
	if got := w.Header().Get(HeaderCredential); got != tc.want {
		t.Errorf("%s = %q, want %q", HeaderCredential, got, tc.want)
	}
	if got := seen[0].Header.Values("Access-Token"); len(got) != 1 || got[0] != "tok-"+tc.want {
		t.Errorf("upstream Access-Token = %q, want [tok-%s]", got, tc.want)
	}
	if !bytes.Equal(seen[0].Body, []byte(tc.body)) {
		t.Errorf("upstream body differs:\n got %q\nwant %q", seen[0].Body, tc.body)
	}
	if seen[0].Header.Get("X-TikTok-Credential") != "" {
		t.Errorf("selection header forwarded")
	}
	if ct := tc.header["Content-Type"]; seen[0].Header.Get("Content-Type") != ct {
		t.Errorf("Content-Type forwarded as %q, want %q", seen[0].Header.Get("Content-Type"), ct)
	}
}

func TestAbsoluteURLForUpstreamHost(t *testing.T) {
	h := newHarness(t, nil, nil)
	r := httptest.NewRequest(http.MethodGet, h.up.URL+"/open_api/v1.3/campaign/get/", nil)
	if w := h.do(r); w.Code != http.StatusOK || len(h.up.requests()) != 1 {
		t.Fatalf("status %d, want 200 forwarded; body %s", w.Code, w.Body)
	}
}

// TestBrowsersRefused: without clients, a Host the proxy was not configured
// for is refused (DNS rebinding), and so is any request a browser marks as
// cross-site; what scripts send passes.
func TestBrowsersRefused(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		header  map[string]string
		clients bool
		code    int // 0: forwarded
		status  int
	}{
		{name: "loopback address", host: "127.0.0.1:8080"},
		{name: "other loopback port", host: "127.0.0.2:9999"},
		{name: "localhost", host: "LOCALHOST:8080"},
		{name: "name under localhost", host: "api.localhost:8080"},
		{name: "IPv6 loopback", host: "[::1]:8080"},
		{name: "allowed host", host: "proxy.internal:8080"},
		{name: "allowed host other port", host: "Proxy.Internal"},
		{name: "allowed host with port", host: "sidecar:8080"},
		{name: "rebound DNS name", host: "attacker.example:8080", code: 90009, status: 421},
		{name: "allowed host with wrong port", host: "sidecar:9090", code: 90009, status: 421},
		{name: "LAN address", host: "192.168.1.10:8080", code: 90009, status: 421},
		{name: "foreign host with clients", host: "attacker.example:8080", clients: true},
		{name: "cross-site origin", host: "127.0.0.1:8080", header: map[string]string{"Origin": "http://attacker.example"}, code: 90010, status: 403},
		{name: "null origin", host: "127.0.0.1:8080", header: map[string]string{"Origin": "null"}, code: 90010, status: 403},
		{name: "origin of another port", host: "127.0.0.1:8080", header: map[string]string{"Origin": "http://127.0.0.1:3000"}, code: 90010, status: 403},
		{name: "same origin", host: "127.0.0.1:8080", header: map[string]string{"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"}},
		{name: "cross-site fetch", host: "127.0.0.1:8080", header: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, code: 90010, status: 403},
		{name: "same-site fetch", host: "127.0.0.1:8080", header: map[string]string{"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}, code: 90010, status: 403},
		{name: "cross-site navigation", host: "127.0.0.1:8080", header: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, code: 90010, status: 403},
		{name: "typed in the address bar", host: "127.0.0.1:8080", header: map[string]string{"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}},
		{name: "cross-site with clients", host: "127.0.0.1:8080", clients: true, header: map[string]string{"Origin": "http://attacker.example"}, code: 90010, status: 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, func(c *config.Config, _ *Options) {
				c.AllowedHosts = []string{"proxy.internal", "SIDECAR:8080"}
				if tc.clients {
					c.Clients = []config.Client{{Name: "ci", Token: "client-token", Credentials: []string{"main"}}}
				}
			})
			r := httptest.NewRequest(http.MethodPost, "/open_api/v1.3/campaign/create/", strings.NewReader(`{"advertiser_id":"`+advMain+`"}`))
			r.Host = tc.host
			r.Header.Set("Content-Type", "text/plain")
			if tc.clients {
				r.Header.Set("Proxy-Authorization", "Bearer client-token")
			}
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			w := h.do(r)
			if tc.code != 0 {
				checkProxyError(t, w, tc.code, tc.status)
				if n := len(h.up.requests()); n != 0 {
					t.Errorf("upstream got %d requests", n)
				}
				return
			}
			if w.Code != http.StatusOK || len(h.up.requests()) != 1 {
				t.Errorf("status %d, upstream requests %d, want forwarded: %s", w.Code, len(h.up.requests()), w.Body)
			}
		})
	}
}

// TestMultipartCheckedAfterFile: the parts of an upload past what
// selection reads (after the file) are checked as they stream to TikTok; a
// refused one cuts the upload off before its end, so TikTok never has the
// whole body, and the client gets the proxy's error.
func TestMultipartCheckedAfterFile(t *testing.T) {
	file := `Content-Disposition: form-data; name="video_file"; filename="a.mp4"` + "\r\n\r\n" + strings.Repeat("V", 5000)
	field := func(name, v string) string {
		return `Content-Disposition: form-data; name="` + name + `"` + "\r\n\r\n" + v
	}
	tests := []struct {
		name    string
		query   string
		body    string
		want    string // credential, or "" for an error
		errCode int
	}{
		{name: "other credential after file", body: multipartBody("XYZ", field("advertiser_id", advMain), file, field("advertiser_id", advOther)), errCode: 90001},
		{name: "other credential after file named by query", query: "?advertiser_id=" + advMain,
			body: multipartBody("XYZ", file, field("advertiser_ids", `["`+advOther+`"]`)), errCode: 90001},
		{name: "encoded advertiser after file", body: multipartBody("XYZ", field("advertiser_id", advMain), file,
			"Content-Disposition: form-data; name=\"advertiser_id\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"+advMain), errCode: 90011},
		{name: "body broken after file", body: strings.TrimSuffix(multipartBody("XYZ", field("advertiser_id", advMain), file), "--XYZ--\r\n"), errCode: 90011},
		{name: "same credential after file", body: multipartBody("XYZ", field("advertiser_id", advOther), file, field("advertiser_id", advOther)), want: "other"},
		{name: "unknown advertiser after file", body: multipartBody("XYZ", field("advertiser_id", advOther), file, field("advertiser_id", advNone)), want: "other"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, nil)
			r := localRequest(http.MethodPost, "/open_api/v1.3/file/video/ad/upload/"+tc.query, strings.NewReader(tc.body))
			r.Header.Set("Content-Type", "multipart/form-data; boundary=XYZ")
			w := h.do(r)
			whole := 0
			for _, s := range h.up.requests() {
				if string(s.Body) == tc.body {
					whole++
				}
			}
			if tc.want == "" {
				checkProxyError(t, w, tc.errCode, http.StatusBadRequest)
				if whole != 0 {
					t.Errorf("TikTok received the whole refused upload")
				}
				return
			}
			if w.Code != http.StatusOK || whole != 1 {
				t.Fatalf("status %d, whole uploads at TikTok %d, want 200 and 1: %s", w.Code, whole, w.Body)
			}
			checkCredential(t, w, tc.want)
		})
	}
}
