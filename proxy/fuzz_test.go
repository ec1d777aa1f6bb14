package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// fuzzSelect runs selection on one request and checks what must hold for
// any input: no panic; a refusal is one of the proxy's errors; the body
// sent on is the client's byte for byte (or cut off by the proxy's own
// error); and every known advertiser the request names, in the query or in
// the body as a reference reading sees it, belongs to the credential
// picked, so no request ever carries two credentials' advertisers.
func fuzzSelect(t *testing.T, p *Core, query, contentType string, body []byte, oneByte bool) {
	var rd io.Reader = bytes.NewReader(body)
	if oneByte {
		rd = iotest.OneByteReader(rd)
	}
	r := &http.Request{
		Method: http.MethodPost, URL: &url.URL{Path: "/open_api/v1.3/campaign/create/", RawQuery: query},
		Header: http.Header{}, Body: io.NopCloser(rd), ContentLength: int64(len(body)), Host: "127.0.0.1:8080",
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	sel, perr := p.selectCredential(r)
	if perr != nil {
		if perr.Code < CodeNoCredential || perr.Code > CodeRateLimited || perr.Message == "" {
			t.Fatalf("refusal %+v is not a proxy error", perr)
		}
		return
	}
	var sent []byte
	var err error
	switch {
	case sel.replay != nil:
		sent = sel.replay
	case sel.body != nil:
		sent, err = io.ReadAll(sel.body)
	default:
		sent, err = io.ReadAll(r.Body)
	}
	if errors.As(err, &perr) {
		return // the check of an upload's later parts refused it
	}
	if err != nil || !bytes.Equal(sent, body) {
		t.Fatalf("body sent on differs (err %v):\n got %q\nwant %q", err, sent, body)
	}
	ids, _ := fieldAdvertisers(r.URL.Query())
	ids = append(ids, referenceAdvertisers(contentType, body)...)
	ids = append(ids, backendAdvertisers(query, contentType, body)...)
	for _, id := range append(ids, sel.advertisers...) {
		if c, ok := p.tokens.CredentialFor(id); ok && c != sel.credential {
			t.Fatalf("picked %q for a request naming advertiser %s of %q (query %q, body %q)", sel.credential, id, c, query, body)
		}
		if claimants := p.tokens.Claimants(id); len(claimants) > 1 {
			t.Fatalf("picked %q for a request naming advertiser %s, which %v all claim (query %q, body %q)", sel.credential, id, claimants, query, body)
		}
	}
}

// backendAdvertisers reads a request as a lenient Go backend might, with
// none of the proxy's code: the query and a form body by url.ParseQuery,
// a JSON object into a struct (encoding/json: keys matched in any case or
// Unicode folding, the last of repeated keys winning), the advertiser_id
// parts of any multipart type by their Content-Disposition name; every id
// parsed as an int64 after trimming spaces (so "07…", "+7…" and " 7…" are
// read) and written back as TikTok writes it.
func backendAdvertisers(query, contentType string, body []byte) []string {
	var ids []string
	add := func(v string) {
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			ids = append(ids, strconv.FormatInt(n, 10))
		}
	}
	addRaw := func(raw json.RawMessage) {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			add(s)
			return
		}
		add(string(raw))
	}
	fields := func(q url.Values) {
		for _, v := range q["advertiser_id"] {
			add(v)
		}
	}
	if q, err := url.ParseQuery(query); err == nil {
		fields(q)
	}
	mt, params, _ := mime.ParseMediaType(contentType)
	var obj struct {
		AdvertiserID  json.RawMessage   `json:"advertiser_id"`
		AdvertiserIDs []json.RawMessage `json:"advertiser_ids"`
	}
	switch {
	case mt == "application/x-www-form-urlencoded":
		if q, err := url.ParseQuery(string(body)); err == nil {
			fields(q)
		}
	case strings.HasPrefix(mt, "multipart/") && params["boundary"] != "":
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			part, err := mr.NextRawPart()
			if err != nil {
				break
			}
			_, cd, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
			v, _ := io.ReadAll(io.LimitReader(part, 1024))
			if cd["name"] == "advertiser_id" {
				add(string(v))
			}
		}
	case json.Unmarshal(body, &obj) == nil:
		if obj.AdvertiserID != nil {
			addRaw(obj.AdvertiserID)
		}
		for _, raw := range obj.AdvertiserIDs {
			addRaw(raw)
		}
	}
	return ids
}

// fuzzProxy is the proxy the fuzz targets select with: credentials main
// (the default) and other, each owning one advertiser, max_inspect_bytes 1024.
func fuzzProxy(f *testing.F) *Core {
	p, err := NewCore(Options{Config: testConfig("http://tiktok.test"), Tokens: newFakeTokens()})
	if err != nil {
		f.Fatal(err)
	}
	return p
}

// referenceAdvertisers reads every advertiser a body names, whole, in each
// way TikTok could read it.
func referenceAdvertisers(contentType string, body []byte) []string {
	var ids []string
	if trimmed := bytes.TrimLeft(body, jsonLead); len(trimmed) > 0 && trimmed[0] == '{' {
		got, _ := jsonAdvertisers(body)
		ids = append(ids, got...)
	}
	if form, err := url.ParseQuery(string(body)); err == nil && contentType == "application/x-www-form-urlencoded" {
		got, _ := fieldAdvertisers(form)
		ids = append(ids, got...)
	}
	if strings.HasPrefix(contentType, "multipart/form-data; boundary=") {
		sel := &selection{}
		_, _ = scanMultipart(multipart.NewReader(bytes.NewReader(body), strings.TrimPrefix(contentType, "multipart/form-data; boundary=")), sel, false)
		ids = append(ids, sel.advertisers...)
	}
	return ids
}

func FuzzSelectQuery(f *testing.F) {
	for _, q := range []string{
		"advertiser_id=" + advMain,
		"advertiser_id=" + advMain + "&advertiser_id=" + advOther,
		`advertiser_ids=["` + advOther + `",` + advMain + `]`,
		"advertiser_ids=%5B" + advOther + "%5D&advertiser_id=%20" + advOther,
		"advertiser_id=" + advNone + "&advertiser_ids=null",
		"advertiser_ids=[1,",
		"advertiser_id=" + advMain + ";advertiser_id=" + advOther,
		"advertiser_id=0" + advOther,
		"advertiser_id=%2B" + advOther + "&advertiser_id=" + advMain,
		"advertiser_id=3333333333333333333",
		"",
	} {
		f.Add(q)
	}
	p := fuzzProxy(f)
	f.Fuzz(func(t *testing.T, query string) {
		fuzzSelect(t, p, query, "", nil, false)
	})
}

func FuzzSelectJSON(f *testing.F) {
	for _, s := range []struct{ ct, body, query string }{
		{"application/json", `{"advertiser_id":"` + advOther + `"}`, ""},
		{"application/json; charset=utf-8", `{"advertiser_id":` + advOther + `,"advertiser_ids":["` + advMain + `"]}`, ""},
		{"text/plain", " \r\n{\"advertiser_ids\":[" + advOther + "]}", "advertiser_id=" + advOther},
		{"", "\ufeff{\"advertiser_id\":\"" + advMain + "\"}", ""},
		{"application/merge-patch+json", `{"advertiser_id":"` + advMain + `","advertiser_id":"` + advOther + `"}`, ""},
		{"application/json", `{"advertiser_id":2.2e18}`, ""},
		{"application/json", `[{"advertiser_id":"` + advOther + `"}]`, ""},
		{"application/octet-stream", `x{"advertiser_id":"` + advOther + `"}`, ""},
		{"application/json", `{"advertiser_id":"` + advOther + `"`, "advertiser_id=" + advMain},
		{"application/json", `{"advertiser_id":"` + advMain + `","ADVERTISER_ID":"` + advOther + `"}`, ""},
		{"text/plain", `{"advertiſer_id":"` + advOther + `"}`, "advertiser_id=" + advMain},
		{"application/json", `{"Advertiser_IDs":["0` + advOther + `"]}`, ""},
		{"application/json", `{"advertiser_id":" +` + advOther + `"}`, ""},
	} {
		f.Add(s.ct, []byte(s.body), s.query, false)
		f.Add(s.ct, []byte(s.body), s.query, true)
	}
	p := fuzzProxy(f)
	f.Fuzz(func(t *testing.T, contentType string, body []byte, query string, oneByte bool) {
		fuzzSelect(t, p, query, contentType, body, oneByte)
	})
}

func FuzzSelectMultipart(f *testing.F) {
	const formData = "multipart/form-data; boundary=XYZ"
	field := func(name, v string) string {
		return `Content-Disposition: form-data; name="` + name + `"` + "\r\n\r\n" + v
	}
	file := `Content-Disposition: form-data; name="image_file"; filename="a.png"` + "\r\nContent-Type: image/png\r\n\r\n" + strings.Repeat("P", 300)
	for _, s := range []struct{ body, query string }{
		{multipartBody("XYZ", field("advertiser_id", advOther), file), ""},
		{multipartBody("XYZ", field("advertiser_id", advMain), field("advertiser_id", advOther)), ""},
		{multipartBody("XYZ", field("advertiser_id", advMain), file, field("advertiser_id", advOther)), ""},
		{multipartBody("XYZ", file, field("advertiser_ids", `["`+advOther+`"]`)), "advertiser_id=" + advOther},
		{multipartBody("XYZ", "Content-Disposition: form-data; name=\"advertiser_id\"\r\nContent-Transfer-Encoding: base64\r\n\r\nMjIy", file), ""},
		{multipartBody("XYZ", field("note", strings.Repeat("n", 1500)), field("advertiser_id", advOther)), "advertiser_id=" + advMain},
		{"--XYZ\r\n" + field("advertiser_id", advMain) + "\r\n--XYZ\r\n" + file, ""},
		{"not multipart", ""},
	} {
		f.Add(formData, []byte(s.body), s.query, false)
		f.Add(formData, []byte(s.body), s.query, true)
	}
	f.Add("multipart/mixed; boundary=XYZ", []byte(multipartBody("XYZ", field("advertiser_id", advOther), file)), "", false)
	f.Add("MULTIPART/RELATED; boundary=XYZ", []byte(multipartBody("XYZ", `Content-Disposition: attachment; name="advertiser_id"`+"\r\n\r\n"+advOther)), "advertiser_id="+advMain, true)
	f.Add(formData, []byte(multipartBody("XYZ", field("advertiser_id", "0"+advOther))), "", false)
	p := fuzzProxy(f)
	f.Fuzz(func(t *testing.T, contentType string, body []byte, query string, oneByte bool) {
		fuzzSelect(t, p, query, contentType, body, oneByte)
	})
}

func FuzzSelectForm(f *testing.F) {
	for _, s := range []struct{ body, query string }{
		{"advertiser_id=" + advOther, ""},
		{"name=c&advertiser_id=" + advOther + "&advertiser_id=" + advMain, ""},
		{"advertiser_ids=%5B%22" + advOther + "%22%5D", "advertiser_id=" + advOther},
		{"advertiser_id=%zz", ""},
		{`{"advertiser_id":"` + advOther + `"}`, ""},
		{"advertiser_id=" + advOther + "&pad=" + strings.Repeat("x", 1100), "advertiser_id=" + advOther},
	} {
		f.Add(s.body, s.query)
	}
	p := fuzzProxy(f)
	f.Fuzz(func(t *testing.T, body, query string) {
		fuzzSelect(t, p, query, "application/x-www-form-urlencoded", []byte(body), false)
	})
}
