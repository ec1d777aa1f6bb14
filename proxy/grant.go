package proxy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

// advertiserGetPath is TikTok's advertiser listing: the one /oauth2/ path
// forwarded, signed by the proxy with the credential's app_id and secret so
// a script can list its advertisers without knowing the secret.
var advertiserGetPath = tiktok.DefaultEndpoints("", config.KindAdvertiser).AdvertiserURL

// appFields are the request fields that authenticate an app to TikTok
// besides the access token.
var appFields = []string{"app_id", "secret"}

// app is a credential's TikTok app, which signs its advertiser listing.
type app struct {
	id     string
	secret config.Secret
}

// signAdvertiserGet sets the credential's app_id and secret in u's query,
// replacing any the client sent. The query then holds a secret: it is
// never logged (the access log has the path only).
func (c *Core) signAdvertiserGet(u *url.URL, cred string) {
	a := c.apps[cred]
	q := u.Query()
	q.Set("app_id", a.id)
	q.Set("secret", a.secret.Value())
	u.RawQuery = q.Encode()
}

// tokenOnly reports whether the injected token is the request's only
// credential, which makes TikTok's 40105/40102 evidence against the token.
// A request signed with an app_id or secret (the advertiser listing, or
// fields a caller added) can be refused for those instead, and a body the
// proxy did not read whole may carry them.
func tokenOnly(r *http.Request, sel *selection) bool {
	// The query is looked at in place: a copy of it as []byte was an
	// allocation per request.
	q := r.URL.RawQuery
	if r.URL.Path == advertiserGetPath || bodyNamesApp(unsafe.Slice(unsafe.StringData(q), len(q))) {
		return false
	}
	if !sel.hasBody {
		return true
	}
	if sel.replay == nil {
		return false
	}
	return !bodyNamesApp(sel.replay)
}

// bodyNamesApp reports whether body (or a query), read as a form or as a
// JSON object (parsing both ways covers a body whatever its Content-Type
// says), has an app credential field. Most bodies cannot (mayNameApp) and
// are not parsed again.
func bodyNamesApp(body []byte) bool {
	return mayNameApp(body) && parsedNamesApp(body)
}

// parsedNamesApp is bodyNamesApp by parsing body both ways.
func parsedNamesApp(body []byte) bool {
	form, _ := url.ParseQuery(string(body))
	var obj map[string]json.RawMessage
	_ = json.Unmarshal(bytes.TrimLeft(body, jsonLead), &obj)
	fields := url.Values{}
	for k := range obj {
		fields[k] = nil
	}
	return namesApp(form) || namesApp(fields)
}

// mayNameApp is false only for a body in which no form or JSON key can be
// one of appFields: plain ASCII without an escape ('\\', '%', '+'; and
// EqualFold folds some non-ASCII letters to ASCII ones) that holds none of
// them in any case.
func mayNameApp(body []byte) bool {
	if bytes.IndexByte(body, '\\') >= 0 || bytes.IndexByte(body, '%') >= 0 || bytes.IndexByte(body, '+') >= 0 {
		return true
	}
	// Eight bytes at a time: is any of them not ASCII?
	b := body
	for ; len(b) >= 8; b = b[8:] {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return true
		}
	}
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	for _, f := range appFields {
		if containsFoldASCII(body, f) {
			return true
		}
	}
	return false
}

// containsFoldASCII reports whether the ASCII text b contains f (lower
// case, starting with a letter) in any case: strings.EqualFold at each
// offset where f's first letter is, found by bytes.IndexByte.
func containsFoldASCII(b []byte, f string) bool {
	lo, up := f[0], f[0]-('a'-'A')
	for len(b) >= len(f) {
		i := bytes.IndexByte(b, lo)
		end := len(b)
		if i >= 0 {
			end = i
		}
		if j := bytes.IndexByte(b[:end], up); j >= 0 {
			i = j
		}
		if i < 0 || len(b)-i < len(f) {
			return false
		}
		if strings.EqualFold(string(b[i:i+len(f)]), f) {
			return true
		}
		b = b[i+1:]
	}
	return false
}

// namesApp reports whether v has an app credential field, in any case.
func namesApp(v url.Values) bool {
	for k := range v {
		for _, f := range appFields {
			if strings.EqualFold(strings.TrimSpace(k), f) {
				return true
			}
		}
	}
	return false
}
