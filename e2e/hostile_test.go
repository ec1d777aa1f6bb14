package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hostileCase is one request an attacker (a web page, another process, a
// careless script) sends to the proxy, written byte for byte on the wire,
// and what must come of it: either a refusal with an exact proxy error and
// nothing at all reaching TikTok, or a forward that carries only the token
// of the credential SPEC picks.
type hostileCase struct {
	name    string
	method  string      // "" is GET
	target  string      // request-target as written on the request line
	host    string      // Host header; "" is the listener's address
	header  [][2]string // in order; a name may repeat
	body    []byte
	clients bool // sent to the proxy that has clients configured
	// streamed marks a refusal that can come only as the body streams
	// past (an advertiser_id after the file): TikTok may have begun to
	// receive the request, but never its whole body.
	streamed bool

	// A refusal: HTTP status and proxy error code (SPEC's error table).
	status, code int
	// A forward: the credential the answer names and the app of every
	// token TikTok saw; query holds values TikTok must have received.
	cred, app string
	query     map[string]string
	// envelopeOK also wants TikTok's answer to be code 0.
	envelopeOK bool
	// notInMessage are words the refusal's message must not contain.
	notInMessage []string
}

// Advertisers whose owner the grants alone do not settle (review finding
// 3): contested is in other's advertiser_ids and granted to main, earlier
// in config; shared is granted to both and configured under neither.
const (
	advContested = "7300000000000000001"
	advShared    = "7300000000000000002"
)

// hostileCredentials are main (the default) and other, other owning
// advContested by config.
var hostileCredentials = twoCredentials + "    advertiser_ids: [\"" + advContested + "\"]\n"

// credentialHeaderLike reports a header name that, with '_' read as '-',
// is in any case one a client may carry a token or a selection in.
func credentialHeaderLike(name string) bool {
	n := strings.ReplaceAll(name, "_", "-")
	return strings.EqualFold(n, "Access-Token") || strings.EqualFold(n, "X-TikTok-Credential") || strings.EqualFold(n, "Proxy-Authorization")
}

// hostileRecord is what the simulator recorded of one request, with the
// fields the suite checks.
type hostileRecord struct {
	Method      string      `json:"method"`
	Path        string      `json:"path"`
	Query       string      `json:"query"`
	AccessToken string      `json:"access_token"`
	TokenKnown  bool        `json:"token_known"`
	AppID       string      `json:"app_id"`
	Header      http.Header `json:"header"`
	Stray       bool        `json:"stray"`
	BodyBytes   int64       `json:"body_bytes"`
}

// received is every request the simulator has recorded or is serving now:
// a proxy cannot answer a forwarded request before the simulator has taken
// it in, so a request the proxy forwarded is in one of the two by the time
// the proxy's answer arrives.
func (s *sim) received(t *testing.T) []hostileRecord {
	t.Helper()
	var all []hostileRecord
	for _, path := range []string{"/sim/requests", "/sim/inflight"} {
		status, _, b := httpDo(t, "GET", s.URL+path, nil, nil)
		var out struct{ Requests []hostileRecord }
		if err := json.Unmarshal(b, &out); status != 200 || err != nil {
			t.Fatalf("sim %s: HTTP %d %v", path, status, err)
		}
		all = append(all, out.Requests...)
	}
	return all
}

const hostileBoundary = "hostile-boundary-1f2e"

// multipartBody joins raw parts ("headers\r\n\r\nbody") with hostileBoundary.
func multipartBody(parts ...string) []byte {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--" + hostileBoundary + "\r\n" + p + "\r\n")
	}
	b.WriteString("--" + hostileBoundary + "--\r\n")
	return []byte(b.String())
}

func formField(name, value string) string {
	return `Content-Disposition: form-data; name="` + name + `"` + "\r\n\r\n" + value
}

const filePart = `Content-Disposition: form-data; name="image_file"; filename="banner.png"` + "\r\nContent-Type: image/png\r\n\r\n\x89PNG fake image bytes"

// bigFilePart is a file larger than the suite's routing.max_inspect_bytes
// (2048), so a field after it cannot be read before the upload is sent on.
var bigFilePart = `Content-Disposition: form-data; name="image_file"; filename="big.png"` + "\r\nContent-Type: image/png\r\n\r\n" + strings.Repeat("\x89PNG", 2048)

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rawDo writes one request to addr exactly as c describes it, with ua as
// its User-Agent, and reads the answer.
func rawDo(t *testing.T, addr string, c hostileCase, ua string) (int, http.Header, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	method := c.method
	if method == "" {
		method = http.MethodGet
	}
	host := c.host
	if host == "" {
		host = addr
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nConnection: close\r\n", method, c.target, host, ua)
	for _, h := range c.header {
		fmt.Fprintf(&req, "%s: %s\r\n", h[0], h[1])
	}
	if c.body != nil || method == http.MethodPost {
		fmt.Fprintf(&req, "Content-Length: %d\r\n", len(c.body))
	}
	req.WriteString("\r\n")
	req.Write(c.body)
	// Written apart from the read: a proxy may answer a refused request
	// before it has read the body.
	go func() { _, _ = conn.Write(req.Bytes()) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: no HTTP answer: %v", method, c.target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, c.target, err)
	}
	return resp.StatusCode, resp.Header, b
}

// TestHostileRequests sends the requests of issue 9's findings (and SPEC's
// rules they broke) to the built binary with two authorized credentials,
// one proxy without clients and one with, and checks each answer against
// SPEC's error table and, at the simulator, that nothing reached TikTok
// with a token it should not carry.
func TestHostileRequests(t *testing.T) {
	const clientToken = "e2e-client-token-hostile-6d1c"
	s := startSim(t)
	open := startProxy(t, s, proxyConfig{Credentials: hostileCredentials, Extra: "routing:\n  max_inspect_bytes: 2048\n"})
	open.authorize(t, s, "main", appMain, advMain1, advMain2, advContested, advShared)
	open.authorize(t, s, "other", appOther, advOther, advShared)
	guarded := startProxy(t, s, proxyConfig{Credentials: hostileCredentials, Extra: `clients:
  - name: etl
    token: ` + clientToken + `
    credentials: [main]
`})
	guarded.authorize(t, s, "main", appMain, advMain1, advMain2, advContested, advShared)
	guarded.authorize(t, s, "other", appOther, advOther, advShared)

	// A real token of the other credential, as a script holding one would send it.
	var otherToken string
	for _, g := range s.grants(t) {
		if g.AppID == appOther && !g.Revoked {
			otherToken = g.AccessToken
		}
	}
	if otherToken == "" {
		t.Fatal("the simulator has no grant of the other app")
	}

	openAddr := strings.TrimPrefix(open.URL, "http://")
	port := openAddr[strings.LastIndex(openAddr, ":")+1:]
	const v13 = "/open_api/v1.3"
	get := v13 + "/campaign/get/?advertiser_id=" + advMain1
	create := v13 + "/campaign/create/"
	upload := v13 + "/file/image/ad/upload/"
	advGet := v13 + "/oauth2/advertiser/get/"
	bodyOther := []byte(`{"advertiser_id":"` + advOther + `","campaign_name":"c"}`)
	ct := func(v string) [2]string { return [2]string{"Content-Type", v} }
	mpCT := ct("multipart/form-data; boundary=" + hostileBoundary)
	bearer := [2]string{"Proxy-Authorization", "Bearer " + clientToken}
	big := []byte(`{"campaign_name":"` + strings.Repeat("x", 4096) + `","advertiser_id":"` + advOther + `"}`)

	cases := []hostileCase{
		// Finding 2: a web page spending through the proxy.
		{name: "foreign Host with port", target: get, host: "attacker.example:" + port, status: 421, code: 90009},
		{name: "foreign Host without port", target: get, host: "attacker.example", status: 421, code: 90009},
		{name: "Host that merely starts with a loopback address", target: get, host: "127.0.0.1.attacker.example:" + port, status: 421, code: 90009},
		{name: "DNS rebinding: same-origin fetch under the attacker's name", target: get, host: "rebind.attacker.example:" + port,
			header: [][2]string{{"Sec-Fetch-Site", "same-origin"}, {"Sec-Fetch-Mode", "cors"}}, status: 421, code: 90009},
		{name: "cross-site Origin on a GET", target: get, header: [][2]string{{"Origin", "http://attacker.example"}}, status: 403, code: 90010},
		{name: "opaque Origin null (sandboxed page)", target: get, header: [][2]string{{"Origin", "null"}}, status: 403, code: 90010},
		{name: "Sec-Fetch-Site cross-site without Origin", target: get, header: [][2]string{{"Sec-Fetch-Site", "cross-site"}}, status: 403, code: 90010},
		{name: "cross-site navigation", target: get, header: [][2]string{{"Sec-Fetch-Site", "cross-site"}, {"Sec-Fetch-Mode", "navigate"}}, status: 403, code: 90010},
		{name: "cross-site text/plain POST creating a campaign", method: "POST", target: create,
			header: [][2]string{{"Origin", "http://attacker.example"}, ct("text/plain"), {"Sec-Fetch-Site", "cross-site"}}, body: bodyOther, status: 403, code: 90010},
		{name: "text/plain POST with only Origin", method: "POST", target: create,
			header: [][2]string{{"Origin", "http://attacker.example:" + port}, ct("text/plain;charset=UTF-8")}, body: bodyOther, status: 403, code: 90010},
		{name: "form POST from another site", method: "POST", target: create,
			header: [][2]string{{"Origin", "https://attacker.example"}, ct("application/x-www-form-urlencoded")}, body: []byte("advertiser_id=" + advOther), status: 403, code: 90010},

		// Finding 1: the OAuth grant belongs to the proxy.
		{name: "revoke_token", method: "POST", target: v13 + "/oauth2/revoke_token/", header: [][2]string{ct("application/json")},
			body: []byte(`{"app_id":"` + appMain + `","secret":"x","access_token":"made-up"}`), status: 404, code: 90009},
		{name: "revoke_token again", method: "POST", target: v13 + "/oauth2/revoke_token/", header: [][2]string{ct("application/json")},
			body: []byte(`{"app_id":"` + appMain + `","secret":"x","access_token":"made-up"}`), status: 404, code: 90009},
		{name: "refresh_token", method: "POST", target: v13 + "/oauth2/refresh_token/", header: [][2]string{ct("application/json")},
			body: []byte(`{"app_id":"` + appMain + `","secret":"x","refresh_token":"r","grant_type":"refresh_token"}`), status: 404, code: 90009},
		{name: "access_token", method: "POST", target: v13 + "/oauth2/access_token/", header: [][2]string{ct("application/json")},
			body: []byte(`{"app_id":"` + appMain + `","secret":"x","auth_code":"c"}`), status: 404, code: 90009},
		{name: "tt_user token", method: "POST", target: v13 + "/tt_user/oauth2/token/", header: [][2]string{ct("application/json")},
			body: []byte(`{}`), status: 404, code: 90009},
		{name: "tt_user refresh_token by GET", target: v13 + "/tt_user/oauth2/refresh_token/", status: 404, code: 90009},
		{name: "advertiser/get of another API version", target: "/open_api/v1.2/oauth2/advertiser/get/", status: 404, code: 90009},
		{name: "advertiser/get naming another app", target: advGet + "?app_id=" + appOther + "&secret=x",
			cred: "main", app: appMain, query: map[string]string{"app_id": appMain, "secret": secretMain}, envelopeOK: true},
		{name: "advertiser/get naming another app again", target: advGet + "?app_id=" + appOther + "&secret=x",
			cred: "main", app: appMain, query: map[string]string{"app_id": appMain, "secret": secretMain}, envelopeOK: true},
		{name: "advertiser/get without app_id or secret", target: advGet,
			cred: "main", app: appMain, query: map[string]string{"app_id": appMain, "secret": secretMain}, envelopeOK: true},
		{name: "advertiser/get for the other credential with main's app_id", target: advGet + "?app_id=" + appMain + "&secret=x&app_id=" + appMain,
			header: [][2]string{{"X-TikTok-Credential", "other"}},
			cred:   "other", app: appOther, query: map[string]string{"app_id": appOther, "secret": secretOther}, envelopeOK: true},

		// Finding 7: methods and paths.
		{name: "TRACE", method: "TRACE", target: get, status: 405, code: 90009},
		{name: "PUT", method: "PUT", target: get, body: bodyOther, status: 405, code: 90009},
		{name: "DELETE", method: "DELETE", target: get, status: 405, code: 90009},
		{name: "OPTIONS", method: "OPTIONS", target: get, status: 405, code: 90009},
		{name: "PATCH", method: "PATCH", target: create, body: bodyOther, status: 405, code: 90009},
		{name: "HEAD", method: "HEAD", target: get, status: 405, code: 90009},
		{name: "backslash", target: v13 + `/campaign\get/?advertiser_id=` + advMain1, status: 404, code: 90009},
		{name: "semicolon", target: v13 + "/campaign/get/;x=1?advertiser_id=" + advMain1, status: 404, code: 90009},
		{name: "encoded slash", target: v13 + "/campaign%2fget/?advertiser_id=" + advMain1, status: 404, code: 90009},
		{name: "encoded backslash", target: v13 + "/campaign%5cget/?advertiser_id=" + advMain1, status: 404, code: 90009},
		{name: "encoded dot segments", target: v13 + "/%2e%2e/%2e%2e/sim/requests", status: 404, code: 90009},
		{name: "encoded dot, upper case", target: v13 + "/campaign/%2E/get/?advertiser_id=" + advMain1, status: 404, code: 90009},
		{name: "path traversal out of /open_api/", target: v13 + "/../../sim/requests", status: 404, code: 90009},
		{name: "path outside /open_api/", target: "/sim/grants", status: 404, code: 90009},
		{name: "consent page path", target: "/portal/auth?app_id=" + appMain, status: 404, code: 90009},
		{name: "absolute form for another host", target: "http://attacker.example" + get, status: 421, code: 90009},

		// Finding 6: every form in which TikTok could read an advertiser.
		{name: "multipart advertiser_id twice, two credentials", method: "POST", target: upload, header: [][2]string{mpCT},
			body: multipartBody(formField("advertiser_id", advMain1), formField("advertiser_id", advOther), filePart), status: 400, code: 90001},
		{name: "multipart advertiser_id again after the file", method: "POST", target: upload, header: [][2]string{mpCT},
			body: multipartBody(formField("advertiser_id", advMain1), filePart, formField("advertiser_id", advOther)), streamed: true, status: 400, code: 90001},
		{name: "multipart advertiser_id only after a file past max_inspect_bytes", method: "POST", target: upload, header: [][2]string{mpCT},
			body: multipartBody(bigFilePart, formField("advertiser_id", advOther)), status: 413, code: 90008},
		{name: "multipart advertiser_id with Content-Transfer-Encoding", method: "POST", target: upload, header: [][2]string{mpCT},
			body: multipartBody(`Content-Disposition: form-data; name="advertiser_id"`+"\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
				base64.StdEncoding.EncodeToString([]byte(advOther)), filePart), status: 400, code: 90011},
		{name: "JSON as text/plain naming the other credential", method: "POST", target: create,
			header: [][2]string{ct("text/plain")}, body: bodyOther, cred: "other", app: appOther},
		{name: "JSON with no Content-Type", method: "POST", target: create, body: bodyOther, cred: "other", app: appOther},
		{name: "JSON as application/vnd.api+json", method: "POST", target: create,
			header: [][2]string{ct("application/vnd.api+json")}, body: bodyOther, cred: "other", app: appOther},
		{name: "text/plain JSON against the query's advertiser", method: "POST", target: create + "?advertiser_id=" + advMain1,
			header: [][2]string{ct("text/plain")}, body: bodyOther, status: 400, code: 90001},
		{name: "unparsable JSON as text/plain", method: "POST", target: create,
			header: [][2]string{ct("text/plain")}, body: []byte(`{"advertiser_id":"` + advOther + `",`), status: 400, code: 90011},
		{name: "two Content-Type headers", method: "POST", target: create,
			header: [][2]string{ct("text/plain"), ct("application/json")}, body: bodyOther, status: 400, code: 90011},
		{name: "form-urlencoded advertiser_id", method: "POST", target: create,
			header: [][2]string{ct("application/x-www-form-urlencoded")}, body: []byte("advertiser_id=" + advOther + "&campaign_name=c"), cred: "other", app: appOther},
		{name: "form-urlencoded advertiser_id of two credentials", method: "POST", target: create,
			header: [][2]string{ct("application/x-www-form-urlencoded")}, body: []byte("advertiser_id=" + advMain1 + "&advertiser_id=" + advOther), status: 400, code: 90001},
		{name: "form-urlencoded body against the query's advertiser", method: "POST", target: create + "?advertiser_id=" + advMain1,
			header: [][2]string{ct("application/x-www-form-urlencoded")}, body: []byte("advertiser_id=" + advOther), status: 400, code: 90001},
		{name: "gzip JSON body", method: "POST", target: create,
			header: [][2]string{ct("application/json"), {"Content-Encoding", "gzip"}}, body: gzipped(t, string(bodyOther)), status: 400, code: 90011},
		{name: "escaped key advertiser\\u005fid against the query", method: "POST", target: create + "?advertiser_id=" + advMain1,
			header: [][2]string{ct("application/json")}, body: []byte(`{"advertiser\u005fid":"` + advOther + `"}`), status: 400, code: 90001},
		{name: "advertiser_ids of two credentials in a JSON body", method: "POST", target: v13 + "/report/task/create/",
			header: [][2]string{ct("application/json")}, body: []byte(`{"advertiser_ids":["` + advMain1 + `","` + advOther + `"]}`), status: 400, code: 90001},
		{name: "numeric advertiser_id of the other credential", method: "POST", target: create,
			header: [][2]string{ct("application/json")}, body: []byte(`{"advertiser_id":` + advOther + `}`), cred: "other", app: appOther},
		{name: "advertiser_id twice in the query", target: v13 + "/campaign/get/?advertiser_id=" + advMain1 + "&advertiser_id=" + advOther, status: 400, code: 90001},
		{name: "advertiser_ids of two credentials in the query", target: v13 + "/advertiser/info/?advertiser_ids=" +
			url.QueryEscape(`["`+advMain1+`","`+advOther+`"]`), status: 400, code: 90001},
		{name: "JSON body over max_inspect_bytes", method: "POST", target: create, header: [][2]string{ct("application/json")}, body: big, status: 413, code: 90008},
		{name: "text/plain JSON over max_inspect_bytes", method: "POST", target: create, header: [][2]string{ct("text/plain")}, body: big, status: 413, code: 90008},
		{name: "unknown credential header", target: get, header: [][2]string{{"X-TikTok-Credential", "nobody"}}, status: 400, code: 90002},

		// Tokens a client sends never reach TikTok.
		{name: "another credential's real Access-Token", target: get, header: [][2]string{{"Access-Token", otherToken}}, cred: "main", app: appMain},
		{name: "loopback Host by name", target: get, host: "localhost:" + port, cred: "main", app: appMain},

		// Client authentication (SPEC Security: clients).
		{name: "no client token", clients: true, target: get, status: 401, code: 90010},
		{name: "wrong client token", clients: true, target: get, header: [][2]string{{"Proxy-Authorization", "Bearer not-the-token"}}, status: 401, code: 90010},
		{name: "wrong Basic password", clients: true, target: get,
			header: [][2]string{{"Proxy-Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("etl:not-the-token"))}}, status: 401, code: 90010},
		{name: "client token in Authorization instead", clients: true, target: get,
			header: [][2]string{{"Authorization", "Bearer " + clientToken}}, status: 401, code: 90010},
		{name: "client not allowed the credential it names", clients: true, target: get, header: [][2]string{bearer, {"X-TikTok-Credential", "other"}}, status: 403, code: 90010},
		{name: "client not allowed the advertiser it names", clients: true, target: v13 + "/campaign/get/?advertiser_id=" + advOther,
			header: [][2]string{bearer}, status: 403, code: 90010},
		{name: "client not allowed the advertiser of a text/plain body", clients: true, method: "POST", target: create,
			header: [][2]string{bearer, ct("text/plain")}, body: bodyOther, status: 403, code: 90010},
		{name: "client with its token", clients: true, target: get, header: [][2]string{bearer}, cred: "main", app: appMain},
		{name: "client with its token as Basic password", clients: true, target: get,
			header: [][2]string{{"Proxy-Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("etl:"+clientToken))}}, cred: "main", app: appMain},

		// Review finding 1: every multipart subtype is read.
		{name: "multipart/mixed naming the other credential's advertiser, client limited to main", clients: true, method: "POST", target: upload,
			header: [][2]string{bearer, ct("multipart/mixed; boundary=" + hostileBoundary)},
			body:   multipartBody(formField("advertiser_id", advOther), filePart), status: 403, code: 90010},
		{name: "MULTIPART/MIXED naming the other credential's advertiser", method: "POST", target: upload,
			header: [][2]string{ct("MULTIPART/MIXED; boundary=" + hostileBoundary)},
			body:   multipartBody(formField("advertiser_id", advOther), filePart), cred: "other", app: appOther},
		{name: "multipart/related against the query's advertiser", method: "POST", target: upload + "?advertiser_id=" + advMain1,
			header: [][2]string{ct("multipart/related; boundary=" + hostileBoundary)},
			body:   multipartBody(formField("advertiser_id", advOther), filePart), status: 400, code: 90001},
		{name: "multipart/mixed without boundary", method: "POST", target: upload,
			header: [][2]string{ct("multipart/mixed")}, body: multipartBody(formField("advertiser_id", advOther)), status: 400, code: 90011},

		// Review finding 2: JSON keys as Go's encoding/json matches them.
		{name: "JSON ADVERTISER_ID beside advertiser_id", method: "POST", target: create, header: [][2]string{ct("application/json")},
			body: []byte(`{"advertiser_id":"` + advMain1 + `","ADVERTISER_ID":"` + advOther + `"}`), status: 400, code: 90001},
		{name: "JSON Advertiser_Id of the other credential, client limited to main", clients: true, method: "POST", target: create,
			header: [][2]string{bearer, ct("application/json")}, body: []byte(`{"Advertiser_Id":"` + advOther + `"}`), status: 403, code: 90010},
		{name: "JSON key with U+017F long s, client limited to main", clients: true, method: "POST", target: create,
			header: [][2]string{bearer, ct("application/json")}, body: []byte(`{"advertiſer_id":"` + advOther + `"}`), status: 403, code: 90010},
		{name: "JSON duplicate advertiser_id of two credentials", method: "POST", target: create, header: [][2]string{ct("application/json")},
			body: []byte(`{"advertiser_id":"` + advOther + `","advertiser_id":"` + advMain1 + `"}`), status: 400, code: 90001},
		{name: "JSON ADVERTISER_IDS of the other credential", method: "POST", target: v13 + "/report/task/create/", header: [][2]string{ct("application/json")},
			body: []byte(`{"ADVERTISER_IDS":["` + advOther + `"]}`), cred: "other", app: appOther},

		// Review finding 3: config owns an advertiser; one two grants claim is ambiguous.
		{name: "advertiser in other's advertiser_ids, granted to main too", target: v13 + "/campaign/get/?advertiser_id=" + advContested,
			cred: "other", app: appOther},
		{name: "advertiser in other's advertiser_ids, client limited to main", clients: true, target: v13 + "/campaign/get/?advertiser_id=" + advContested,
			header: [][2]string{bearer}, status: 403, code: 90010},
		{name: "advertiser granted to both and configured under neither", target: v13 + "/campaign/get/?advertiser_id=" + advShared, status: 400, code: 90001},
		{name: "JSON advertiser granted to both and configured under neither", method: "POST", target: create, header: [][2]string{ct("application/json")},
			body: []byte(`{"advertiser_id":"` + advShared + `"}`), status: 400, code: 90001},

		// Review finding 4: advertiser ids only as TikTok writes them.
		{name: "query id with a leading zero", target: v13 + "/campaign/get/?advertiser_id=0" + advOther, status: 400, code: 90011},
		{name: "query id with a plus sign, client limited to main", clients: true, target: v13 + "/campaign/get/?advertiser_id=%2B" + advOther,
			header: [][2]string{bearer}, status: 400, code: 90011},
		{name: "query id with a space", target: v13 + "/campaign/get/?advertiser_id=%20" + advOther, status: 400, code: 90011},
		{name: "JSON id with a leading zero", method: "POST", target: create, header: [][2]string{ct("application/json")},
			body: []byte(`{"advertiser_id":"0` + advOther + `"}`), status: 400, code: 90011},
		{name: "JSON id with a plus sign", method: "POST", target: create, header: [][2]string{ct("application/json")},
			body: []byte(`{"advertiser_id":"+` + advOther + `"}`), status: 400, code: 90011},

		// Review finding 5: credential headers in underscore forms.
		{name: "Access_Token and Proxy_Authorization headers", target: get,
			header: [][2]string{{"Access_Token", otherToken}, {"ACCESS_TOKEN", otherToken}, {"proxy_authorization", "Bearer x"}},
			cred:   "main", app: appMain},
		{name: "Access_Token header through a client", clients: true, target: get,
			header: [][2]string{bearer, {"Access_Token", otherToken}}, cred: "main", app: appMain},
		{name: "X_TikTok_Credential header", target: get, header: [][2]string{{"X_TikTok_Credential", "other"}}, status: 400, code: 90011},
		{name: "x_tiktok_credential header through a client", clients: true, target: get,
			header: [][2]string{bearer, {"x_tiktok_credential", "main"}}, status: 400, code: 90011},

		// Review finding 6: queries Go cannot read whole, paths servers normalise.
		{name: "query over 10,000 parameters", target: get + strings.Repeat("&a=1", 10000), status: 400, code: 90011},
		{name: "query with a semicolon", target: get + ";advertiser_id=" + advOther, status: 400, code: 90011},
		{name: "oauth2 segment with an encoded space", target: v13 + "/oauth2%20/revoke_token/", status: 404, code: 90009},
		{name: "oauth2 segment with an encoded tab", target: v13 + "/oauth2%09/revoke_token/", status: 404, code: 90009},
		{name: "oauth2 segment with an encoded NUL", target: v13 + "/oauth2%00/revoke_token/", status: 404, code: 90009},
		{name: "oauth2 segment with a trailing dot", target: v13 + "/oauth2./revoke_token/", status: 404, code: 90009},
		{name: "overlong UTF-8 slash", target: v13 + "/oauth2%C0%AFrevoke_token/", status: 404, code: 90009},

		// Review finding 7: a 90002 lists no configured name.
		{name: "unknown credential header lists no credential", target: get, header: [][2]string{{"X-TikTok-Credential", "nobody"}},
			status: 400, code: 90002, notInMessage: []string{"main", "other"}},
	}

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			httpDo(t, "DELETE", s.URL+"/sim/requests", nil, nil)
			addr := openAddr
			if c.clients {
				addr = strings.TrimPrefix(guarded.URL, "http://")
			}
			ua := "hostile-suite/" + strconv.Itoa(i)
			status, h, b := rawDo(t, addr, c, ua)
			var mine []hostileRecord
			for _, r := range s.received(t) {
				// The proxies' own advertiser listing is theirs to make.
				if r.Header.Get("User-Agent") == ua || r.Path != advGet || r.Stray {
					mine = append(mine, r)
				}
			}
			if c.code != 0 {
				if c.method == http.MethodHead {
					if status != c.status || h.Get("X-TikTok-Auth-Proxy-Error") != strconv.Itoa(c.code) {
						t.Errorf("HTTP %d, error header %q; want %d and %d", status, h.Get("X-TikTok-Auth-Proxy-Error"), c.status, c.code)
					}
				} else {
					wantProxyError(t, status, h, b, c.status, c.code, false)
					for _, word := range c.notInMessage {
						if msg := decodeEnvelope(t, b).Message; strings.Contains(msg, word) {
							t.Errorf("the message names %q: %s", word, msg)
						}
					}
				}
				for _, r := range mine {
					if c.streamed && r.BodyBytes < int64(len(c.body)) {
						continue
					}
					t.Errorf("refused, yet TikTok received %s %s?%s (%d body bytes of %d) with token of app %q (known %v)",
						r.Method, r.Path, redactSecrets(r.Query), r.BodyBytes, len(c.body), r.AppID, r.TokenKnown)
				}
				return
			}
			if status != 200 || h.Get("X-TikTok-Auth-Proxy-Credential") != c.cred {
				t.Errorf("HTTP %d, credential %q; want 200 through %q: %.300s", status, h.Get("X-TikTok-Auth-Proxy-Credential"), c.cred, b)
			}
			if c.envelopeOK {
				if env := decodeEnvelope(t, b); env.Code != 0 {
					t.Errorf("TikTok answered code %d (%s), want 0", env.Code, env.Message)
				}
			}
			if len(mine) == 0 {
				t.Fatal("forwarded, yet the simulator received nothing")
			}
			for _, r := range mine {
				if !r.TokenKnown || r.AppID != c.app || r.Stray {
					t.Errorf("TikTok received %s %s with a token of app %q (known %v, stray %v), want app %s", r.Method, r.Path, r.AppID, r.TokenKnown, r.Stray, c.app)
				}
				if v := r.Header.Get("Origin"); v != "" {
					t.Error("TikTok received the client's Origin header")
				}
				for name, v := range r.Header {
					if credentialHeaderLike(name) && (name != "Access-Token" || len(v) != 1) {
						t.Errorf("TikTok received the client's %s header (%d values)", name, len(v))
					}
				}
				if r.AccessToken == otherToken && c.app != appOther {
					t.Error("TikTok received the token the client sent")
				}
				q, _ := url.ParseQuery(r.Query)
				for k, v := range c.query {
					if got := q[k]; len(got) != 1 || got[0] != v {
						t.Errorf("TikTok received %d %s value(s), want exactly the credential's own", len(got), k)
					}
				}
			}
		})
	}
	summarize("hostile: %d cases tried", len(cases))

	// Review finding 3: each conflict is logged once and shown at /api/credentials.
	for _, want := range []struct{ id, msg string }{
		{advContested, "granted to another credential too"},
		{advShared, "granted to several credentials"},
	} {
		n := 0
		for line := range strings.SplitSeq(open.p.out.String(), "\n") {
			if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, want.msg) && strings.Contains(line, want.id) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("advertiser %s: %d WARN lines %q, want 1", want.id, n, want.msg)
		}
	}
	_, _, js := httpDo(t, "GET", open.AdminURL+"/api/credentials", nil, nil)
	var states []struct {
		Name      string `json:"name"`
		Conflicts []struct {
			AdvertiserID string   `json:"advertiser_id"`
			Owner        string   `json:"owner"`
			Credentials  []string `json:"credentials"`
		} `json:"advertiser_conflicts"`
	}
	if err := json.Unmarshal(js, &states); err != nil {
		t.Fatalf("/api/credentials: %v", err)
	}
	for _, st := range states {
		got := fmt.Sprint(st.Conflicts)
		if want := "[{" + advContested + " other [main other]} {" + advShared + "  [main other]}]"; got != want {
			t.Errorf("/api/credentials: %s's advertiser_conflicts %s, want %s", st.Name, got, want)
		}
	}

	// Finding 1: none of the above knocked a credential out.
	for _, px := range []*proxy{open, guarded} {
		for _, name := range []string{"main", "other"} {
			if authorized, reauth := credentialHealth(t, px, name); !authorized || reauth {
				t.Errorf("%s: credential %s after the hostile requests: authorized %v, re-authorization required %v", px.URL, name, authorized, reauth)
			}
		}
	}
}

// redactSecrets hides the app secrets in a query shown in a failure.
func redactSecrets(q string) string {
	return strings.NewReplacer(secretMain, "[secret]", secretOther, "[secret]").Replace(q)
}
