package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReviewFindings holds the requests a black-box review of the built
// binary found read differently by the proxy and by a TikTok-like server
// (one that reads every multipart subtype, matches JSON keys the way
// Go's encoding/json does, parses ids as int64, trims path segments):
// each must be read the same way or refused.
func TestReviewFindings(t *testing.T) {
	const (
		create  = "/open_api/v1.3/campaign/create/"
		get     = "/open_api/v1.3/campaign/get/"
		upload  = "/open_api/v1.3/file/image/ad/upload/"
		claimed = "3333333333333333333" // granted to main and other, configured under neither
	)
	jsonCT := map[string]string{"Content-Type": "application/json"}
	mp := func(subtype string) map[string]string {
		return map[string]string{"Content-Type": subtype + "; boundary=XYZ"}
	}
	field := func(name, v string) string {
		return `Content-Disposition: form-data; name="` + name + `"` + "\r\n\r\n" + v
	}
	file := `Content-Disposition: form-data; name="image_file"; filename="a.png"` + "\r\nContent-Type: image/png\r\n\r\nPNG"
	tests := []selectionCase{
		// 1. Every multipart subtype is read like form-data.
		{name: "multipart/mixed advertiser part", method: "POST", target: upload, header: mp("multipart/mixed"),
			body: multipartBody("XYZ", field("advertiser_id", advOther), file), want: "other"},
		{name: "MULTIPART/MIXED upper case", method: "POST", target: upload, header: mp("MULTIPART/MIXED"),
			body: multipartBody("XYZ", field("advertiser_id", advOther), file), want: "other"},
		{name: "multipart/related two credentials", method: "POST", target: upload, header: mp("multipart/related"),
			body: multipartBody("XYZ", field("advertiser_id", advMain), field("advertiser_id", advOther)), errCode: 90001, status: 400},
		{name: "multipart/mixed advertiser against the query", method: "POST", target: upload + "?advertiser_id=" + advMain, header: mp("multipart/mixed"),
			body: multipartBody("XYZ", field("advertiser_id", advOther)), errCode: 90001, status: 400},
		{name: "multipart/mixed attachment named advertiser_id", method: "POST", target: upload, header: mp("multipart/mixed"),
			body: multipartBody("XYZ", `Content-Disposition: attachment; name="advertiser_id"`+"\r\n\r\n"+advOther), want: "other"},
		{name: "multipart/mixed without boundary", method: "POST", target: upload, header: map[string]string{"Content-Type": "multipart/mixed"},
			body: multipartBody("XYZ", field("advertiser_id", advOther)), errCode: 90011, status: 400, msg: "multipart/mixed Content-Type has no boundary"},
		{name: "multipart part with two Content-Disposition headers", method: "POST", target: upload, header: mp("multipart/form-data"),
			body:    multipartBody("XYZ", `Content-Disposition: form-data; name="note"`+"\r\n"+`Content-Disposition: form-data; name="advertiser_id"`+"\r\n\r\n"+advOther),
			errCode: 90011, status: 400, msg: "2 Content-Disposition headers"},
		{name: "multipart advertiser part with a broken Content-Disposition", method: "POST", target: upload, header: mp("multipart/form-data"),
			body: multipartBody("XYZ", `Content-Disposition: form-data; name="advertiser_id"; x`+"\r\n\r\n"+advOther), errCode: 90011, status: 400},

		// 2. JSON keys as encoding/json matches them; every duplicate counts.
		{name: "JSON ADVERTISER_ID beside advertiser_id", method: "POST", target: create, header: jsonCT,
			body: `{"advertiser_id":"` + advMain + `","ADVERTISER_ID":"` + advOther + `"}`, errCode: 90001, status: 400},
		{name: "JSON Advertiser_Id alone", method: "POST", target: create, header: jsonCT,
			body: `{"Advertiser_Id":"` + advOther + `"}`, want: "other"},
		{name: "JSON key with U+017F long s", method: "POST", target: create, header: jsonCT,
			body: `{"advertiſer_id":"` + advOther + `"}`, want: "other"},
		{name: "JSON key with U+017F long s as text/plain", method: "POST", target: create, header: map[string]string{"Content-Type": "text/plain"},
			body: `{"advertiſer_id":"` + advOther + `"}`, want: "other"},
		{name: "JSON duplicate key, two credentials", method: "POST", target: create, header: jsonCT,
			body: `{"advertiser_id":"` + advOther + `","advertiser_id":"` + advMain + `"}`, errCode: 90001, status: 400},
		{name: "JSON duplicate key, same advertiser", method: "POST", target: create, header: jsonCT,
			body: `{"advertiser_id":"` + advOther + `","advertiser_id":"` + advOther + `"}`, want: "other"},
		{name: "JSON ADVERTISER_IDS alone", method: "POST", target: "/open_api/v1.3/report/task/create/", header: jsonCT,
			body: `{"ADVERTISER_IDS":["` + advOther + `"]}`, want: "other"},
		{name: "JSON advertiser_ids and Advertiser_IDs, two credentials", method: "POST", target: "/open_api/v1.3/report/task/create/", header: jsonCT,
			body: `{"advertiser_ids":[` + advMain + `],"Advertiser_IDs":[` + advOther + `]}`, errCode: 90001, status: 400},
		{name: "JSON under an unparsable Content-Type against the query", method: "POST", target: create + "?advertiser_id=" + advMain,
			header: map[string]string{"Content-Type": `"`}, body: `{"Advertiſer_id":"` + advOther + `"}`, errCode: 90001, status: 400},
		{name: "JSON nested advertiser_id is not TikTok's to read", method: "POST", target: create, header: jsonCT,
			body: `{"data":{"advertiser_id":"` + advOther + `"}}`, want: "main"},

		// 3. An advertiser two credentials claim and none owns.
		{name: "query advertiser claimed by two credentials", target: get + "?advertiser_id=" + claimed,
			errCode: 90001, status: 400, msg: "granted to credentials main and other and in none's advertiser_ids"},
		{name: "JSON advertiser claimed by two credentials", method: "POST", target: create, header: jsonCT,
			body: `{"advertiser_id":"` + claimed + `"}`, errCode: 90001, status: 400, msg: "add it to one credential's advertiser_ids"},

		// 4. Advertiser ids only as TikTok writes them.
		{name: "query id with a leading zero", target: get + "?advertiser_id=0" + advOther, errCode: 90011, status: 400, msg: "not written as TikTok writes ids"},
		{name: "query id with a plus sign", target: get + "?advertiser_id=%2B" + advOther, errCode: 90011, status: 400},
		{name: "query id with a space", target: get + "?advertiser_id=%20" + advOther, errCode: 90011, status: 400},
		{name: "query id with a trailing newline", target: get + "?advertiser_id=" + advOther + "%0A", errCode: 90011, status: 400},
		{name: "query id of 21 digits", target: get + "?advertiser_id=1" + advOther + "0", errCode: 90011, status: 400},
		{name: "query advertiser_ids with a leading zero", target: `/open_api/v1.3/advertiser/info/?advertiser_ids=["0` + advOther + `"]`, errCode: 90011, status: 400},
		{name: "query empty advertiser_id names none", target: get + "?advertiser_id=", want: "main"},
		{name: "JSON id with a leading zero", method: "POST", target: create, header: jsonCT, body: `{"advertiser_id":"0` + advOther + `"}`, errCode: 90011, status: 400},
		{name: "JSON id with a plus sign", method: "POST", target: create, header: jsonCT, body: `{"advertiser_id":"+` + advOther + `"}`, errCode: 90011, status: 400},
		{name: "JSON id with spaces", method: "POST", target: create, header: jsonCT, body: `{"advertiser_id":" ` + advOther + ` "}`, errCode: 90011, status: 400},
		{name: "JSON number zero", method: "POST", target: create, header: jsonCT, body: `{"advertiser_id":0}`, errCode: 90011, status: 400},
		{name: "JSON negative number", method: "POST", target: create, header: jsonCT, body: `{"advertiser_id":-` + advOther + `}`, errCode: 90011, status: 400},
		{name: "JSON list id with a leading zero", method: "POST", target: "/open_api/v1.3/report/task/create/", header: jsonCT,
			body: `{"advertiser_ids":["0` + advOther + `"]}`, errCode: 90011, status: 400},
		{name: "form id with a leading zero", method: "POST", target: create, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			body: "advertiser_id=0" + advOther, errCode: 90011, status: 400},
		{name: "multipart id with a leading zero", method: "POST", target: upload, header: mp("multipart/form-data"),
			body: multipartBody("XYZ", field("advertiser_id", "0"+advOther), file), errCode: 90011, status: 400},

		// 6. Queries Go cannot read whole, paths servers normalise.
		{name: "query over 10,000 parameters", target: get + "?" + strings.Repeat("a=1&", 10000) + "advertiser_id=" + advOther,
			errCode: 90011, status: 400, msg: "the query cannot be read whole"},
		{name: "query with a semicolon", target: get + "?a=1;advertiser_id=" + advOther, errCode: 90011, status: 400},
		{name: "query with a bad escape", target: get + "?advertiser_id=" + advOther + "&x=%zz", errCode: 90011, status: 400},
		{name: "query over 10,000 parameters with the header", target: get + "?" + strings.Repeat("a=1&", 10001),
			header: map[string]string{"X-TikTok-Credential": "other"}, errCode: 90011, status: 400},
		{name: "oauth2 segment with an encoded space", target: "/open_api/v1.3/oauth2%20/advertiser/get/", errCode: 90009, status: 404},
		{name: "oauth2 segment with an encoded tab", target: "/open_api/v1.3/oauth2%09/revoke_token/", errCode: 90009, status: 404},
		{name: "oauth2 segment with an encoded NUL", target: "/open_api/v1.3/oauth2%00/revoke_token/", errCode: 90009, status: 404},
		{name: "oauth2 segment with a trailing dot", target: "/open_api/v1.3/oauth2./revoke_token/", errCode: 90009, status: 404, msg: "/oauth2/ paths are not forwarded"},
		{name: "oauth2 segment with a trailing dot on the listing", target: "/open_api/v1.3/oauth2./advertiser/get/", errCode: 90009, status: 404},
		{name: "path with an overlong slash", target: "/open_api/v1.3/campaign%C0%AFget/", errCode: 90009, status: 404, msg: "not UTF-8"},
		{name: "path with invalid UTF-8", target: "/open_api/v1.3/campaign/get%FF/", errCode: 90009, status: 404},
		{name: "path with an encoded no-break space", target: "/open_api/v1.3/campaign/get%C2%A0/", errCode: 90009, status: 404},
		{name: "path with an encoded DEL", target: "/open_api/v1.3/campaign/get%7F/", errCode: 90009, status: 404},
		{name: "path with encoded UTF-8 letters still forwarded", target: "/open_api/v1.3/campaign/get%C3%A9/", want: "main"},

		// 5. A selection header the proxy does not read is refused, not
		// stripped while another credential spends.
		{name: "X_TikTok_Credential header", target: get, header: map[string]string{"X_TikTok_Credential": "other"},
			errCode: 90011, status: 400, msg: `the header "X_tiktok_credential" is not read as X-TikTok-Credential`},

		// 7. A 90002 names what the client sent, not the configured names.
		{name: "unknown credential", target: get, header: map[string]string{"X-TikTok-Credential": "nope"},
			errCode: 90002, status: 400, msg: `unknown credential "nope" in X-TikTok-Credential`},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

// TestUnknownCredentialListsNoNames: a client learns nothing of the
// configured credentials from a 90002.
func TestUnknownCredentialListsNoNames(t *testing.T) {
	h := newHarness(t, nil, nil)
	r := httptest.NewRequest(http.MethodGet, "/open_api/v1.3/campaign/get/", nil)
	r.Header.Set("X-TikTok-Credential", "nope")
	e := checkProxyError(t, h.do(r), 90002, 400)
	for _, name := range []string{"main", "other"} {
		if strings.Contains(e.Message, name) {
			t.Errorf("the 90002 message names configured credential %q: %s", name, e.Message)
		}
	}
}

// TestClientCredentialHeadersStripped: every header a client could carry a
// token or a selection in, in any case and with '_' for '-', is gone from
// what TikTok receives; only the proxy's Access-Token remains.
func TestClientCredentialHeadersStripped(t *testing.T) {
	h := newHarness(t, nil, nil)
	r := httptest.NewRequest(http.MethodGet, "/open_api/v1.3/campaign/get/?advertiser_id="+advMain, nil)
	// Raw keys, as a front end that does not canonicalise may pass them.
	for _, k := range []string{"Access_Token", "ACCESS_TOKEN", "access-token", "Proxy_Authorization", "Access_token", "PROXY-AUTHORIZATION"} {
		r.Header[k] = []string{"client-" + k}
	}
	r.Header.Set("X-Keep", "kept")
	w := h.do(r)
	seen := h.up.requests()
	if w.Code != http.StatusOK || len(seen) != 1 {
		t.Fatalf("status %d, upstream requests %d; body %s", w.Code, len(seen), w.Body)
	}
	for k, v := range seen[0].Header {
		n := strings.ReplaceAll(k, "_", "-")
		switch {
		case strings.EqualFold(n, "Access-Token"):
			if k != "Access-Token" || len(v) != 1 || v[0] != "tok-main" {
				t.Errorf("TikTok received %s: %q, want only Access-Token: tok-main", k, v)
			}
		case strings.EqualFold(n, "X-TikTok-Credential"), strings.EqualFold(n, "Proxy-Authorization"):
			t.Errorf("TikTok received the client's %s header", k)
		}
	}
	if seen[0].Header.Get("X-Keep") != "kept" {
		t.Error("an unrelated header was dropped")
	}
}
