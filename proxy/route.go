package proxy

import (
	"net/http"
	"net/url"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Route is where a request goes.
type Route struct {
	Credential  string   // the configured credential name
	Advertisers []string // advertiser ids the request names (may be empty)
	Client      string   // the authenticated client's name ("" without clients)
	sel         *selection
	// tokenOnly is set when the injected token is the request's only
	// credential, so a 40105/40102 speaks of the token (see tokenOnly).
	tokenOnly bool
}

// route checks that r is for TikTok's /open_api/ and that no browser sent
// it cross-site, that t's client authenticated, picks the credential and
// checks the client may use it. It may consume a bounded
// prefix of r.Body; send forwards the body on unchanged. A route comes back
// with the error when the credential was known before the refusal.
func (c *Core) route(r *http.Request, t *transport) (*Route, *Error) {
	if perr := checkTarget(r); perr != nil {
		return nil, perr
	}
	if crossSite(r) {
		return nil, newError(CodeClientAuth, http.StatusForbidden,
			"a browser marked this request as sent by a page of another site (Origin, Sec-Fetch-Site): the proxy spends with its credentials only for scripts, never for web pages")
	}
	if t.authErr != nil {
		return nil, t.authErr
	}
	cl := t.client
	sel, perr := c.selectCredential(r)
	if perr != nil {
		return nil, perr
	}
	rt := &Route{Credential: sel.credential, Advertisers: sel.advertisers, sel: sel, tokenOnly: tokenOnly(r, sel)}
	if cl != nil {
		rt.Client = cl.name
		if !cl.creds[sel.credential] {
			return rt, newError(CodeClientAuth, http.StatusForbidden,
				"client %q may not use credential %q: add it to the client's credentials in config", cl.name, sel.credential)
		}
	}
	return rt, nil
}

// checkTarget allows only GET and POST on /open_api/ paths that every
// server reads alike, and none of the OAuth paths but the advertiser
// listing. Where the request goes is not the client's to say: send always
// rewrites it to upstream.base_url.
func checkTarget(r *http.Request) *Error {
	if !strings.HasPrefix(r.URL.Path, "/open_api/") || !strings.HasPrefix(path.Clean(r.URL.Path), "/open_api/") {
		return newError(CodeNotFound, http.StatusNotFound,
			"only /open_api/ paths are forwarded to TikTok; call http://<proxy>/open_api/v1.3/...")
	}
	if unreadablePath(r.URL.Path) {
		return newError(CodeNotFound, http.StatusNotFound,
			"paths with control characters, whitespace or bytes that are not UTF-8 (encoded or not) are not forwarded: TikTok's API has none, and servers normalise them differently")
	}
	if r.URL.Path != advertiserGetPath && hasSegment(r.URL.Path, "oauth2") {
		return newError(CodeNotFound, http.StatusNotFound,
			"the proxy owns the OAuth grants, so /oauth2/ paths are not forwarded; the one exception, %s, lists the credential's advertisers (the proxy adds app_id and secret)",
			advertiserGetPath)
	}
	if ambiguousPath(r.URL) {
		return newError(CodeNotFound, http.StatusNotFound,
			"paths with a backslash, a ';' or an encoded '/', '\\' or '.' are not forwarded: TikTok's API has none, and servers disagree on what they mean")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return newError(CodeNotFound, http.StatusMethodNotAllowed,
			"method %s is not forwarded: TikTok's API takes only GET and POST", r.Method)
	}
	return nil
}

// ambiguousPath reports a path that servers may read differently from the
// proxy's check above: a backslash or ';' (a separator for some), or an
// encoded '/', '\' or '.' (decoded by some before routing).
func ambiguousPath(u *url.URL) bool {
	if strings.ContainsAny(u.Path, "\\;") {
		return true
	}
	raw := strings.ToLower(u.EscapedPath())
	return strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") || strings.Contains(raw, "%2e")
}

// unreadablePath reports a (decoded) path with a control character,
// whitespace or invalid UTF-8 (an overlong "%C0%AF" among them): servers
// trim, truncate or normalise such segments each in their own way, so
// "oauth2%20" or "oauth2%00" may reach an OAuth endpoint there.
func unreadablePath(p string) bool {
	if !utf8.ValidString(p) {
		return true
	}
	return strings.IndexFunc(p, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0
}

// hasSegment reports whether the path has the segment seg, in any case and
// with any dots or whitespace around it ("oauth2.", " oauth2"), which some
// servers strip.
func hasSegment(p, seg string) bool {
	for s := range strings.SplitSeq(p, "/") {
		s = strings.TrimFunc(s, func(r rune) bool { return r == '.' || unicode.IsSpace(r) })
		if strings.EqualFold(s, seg) {
			return true
		}
	}
	return false
}

// stripClientCredentials removes every header a client may have sent to
// carry a credential or pick one: Access-Token, the selection header and
// Proxy-Authorization, in any case and with '_' for '-' ("Access_Token"),
// which some servers and gateways read as the same header.
func stripClientCredentials(h http.Header, credentialHeader string) {
	for name := range h {
		if sameHeaderName(name, headerAccessToken) || sameHeaderName(name, credentialHeader) || sameHeaderName(name, headerProxyAuth) {
			delete(h, name)
		}
	}
}

// sameHeaderName reports whether two header names are the same in any case
// with '_' read as '-', as some servers and gateways read them.
func sameHeaderName(a, b string) bool {
	return strings.EqualFold(strings.ReplaceAll(a, "_", "-"), strings.ReplaceAll(b, "_", "-"))
}

// crossSite reports a request a browser marks as sent by a page of another
// origin: Sec-Fetch-Site other than same-origin or none (typed by the
// user), or an Origin other than the request's own. Scripts send neither.
func crossSite(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return true
	}
	origins := r.Header.Values("Origin")
	if len(origins) == 0 {
		return false
	}
	own := r.URL.Scheme + "://" + r.URL.Host
	if r.URL.Host == "" {
		own = "http://" + r.Host
		if r.TLS != nil {
			own = "https://" + r.Host
		}
	}
	return len(origins) > 1 || !strings.EqualFold(origins[0], own)
}
