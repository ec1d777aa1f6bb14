package setup

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/style.css
var styleSheet string

// refreshScript re-renders the setup page's cards in place every few
// seconds from a fresh copy of the page, so a page left open stays true
// without a full reload's flicker.
//
//go:embed static/refresh.js
var refreshScript string

// pageCSP allows nothing but the inlined stylesheet and refresh script (by
// hash) and fetches of this origin: no other script, no external asset, no
// framing, forms only to this origin.
var pageCSP = "default-src 'none'; style-src " + cspHash(styleSheet) + "; script-src " + cspHash(refreshScript) +
	"; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func cspHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(h[:]) + "'"
}

var pages = func() map[string]*template.Template {
	out := make(map[string]*template.Template)
	for _, name := range []string{"authorize", "success", "error"} {
		out[name] = template.Must(template.New(name).ParseFS(templateFS, "templates/base.html", "templates/"+name+".html"))
	}
	return out
}()

// bindingCookie holds the random value a browser state is bound to. It
// never holds the state or the auth code.
const bindingCookie = "tiktok_auth_proxy_binding"

type pageBase struct {
	Title  string
	CSS    template.CSS
	Script template.JS // set on pages that refresh themselves
}

// render writes a page; a template failure is a bug, answered with a plain 500.
func (a *Admin) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages[name].ExecuteTemplate(&buf, "base", data); err != nil {
		a.log.Error("setup: rendering page", "page", name, "err", err)
		http.Error(w, "setup: internal error rendering the page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorPage struct {
	pageBase
	Heading       string
	Message       string
	Hint          string
	NothingStored bool
	// Credential names the credential the flow was for; "" when unknown.
	Credential string
	// Retry is where "Try again" leads.
	Retry string
}

// renderError shows a failed flow. credential is the flow's credential ("" when
// unknown), hint an extra line of advice.
func (a *Admin) renderError(w http.ResponseWriter, err error, flow bool, credential, hint string) {
	var fe *FlowError
	if !errors.As(err, &fe) {
		fe = &FlowError{HTTPStatus: http.StatusInternalServerError, Message: "Something went wrong; see the proxy's log."}
	}
	heading := "Authorization failed"
	switch {
	case fe.HTTPStatus == http.StatusNotFound:
		heading = "Unknown credential"
		credential = ""
	case fe.HTTPStatus >= 500:
		heading = "TikTok or the proxy failed"
	}
	retry := "/authorize"
	if credential != "" {
		heading += ": " + credential
		retry = "/authorize/" + credential
	}
	a.render(w, fe.HTTPStatus, "error", errorPage{
		pageBase:      pageBase{Title: heading, CSS: template.CSS(styleSheet)},
		Heading:       heading,
		Message:       sentence(fe.Message),
		Hint:          hint,
		NothingStored: flow,
		Credential:    credential,
		Retry:         retry,
	})
}

type authorizePage struct {
	pageBase
	ProxyURL    string
	Summary     string
	Attention   bool
	Pauses      []string
	Credentials []credView
}

func (a *Admin) handlePage(w http.ResponseWriter, r *http.Request) {
	now := a.now()
	states := a.credentialStates()
	views := make([]credView, 0, len(states))
	for _, cs := range states {
		views = append(views, newCredView(now, cs))
	}
	sortViews(views)
	var pauses []string
	if a.opts.Pauses != nil {
		pauses = a.opts.Pauses()
	}
	a.render(w, http.StatusOK, "authorize", authorizePage{
		pageBase:    pageBase{Title: "Credentials", CSS: template.CSS(styleSheet), Script: template.JS(refreshScript)},
		ProxyURL:    a.opts.ProxyURL,
		Summary:     summary(views),
		Attention:   len(views) > 0 && views[0].Attention,
		Pauses:      pauses,
		Credentials: views,
	})
}

// movedParam marks a /authorize/{name} request already sent to the
// redirect URL's origin, so a proxy in front that rewrites Host cannot
// make it bounce forever.
const movedParam = "moved"

func (a *Admin) handleBegin(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if to, ok := a.otherOrigin(r, name); ok {
		// The binding cookie is kept per host name: set on 127.0.0.1, it is
		// not sent back to the callback on localhost. Start where the
		// callback will arrive.
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, to+"/authorize/"+name+"?"+movedParam+"=1", http.StatusFound)
		return
	}
	binding := ""
	if c, err := r.Cookie(bindingCookie); err == nil && validToken(c.Value) {
		// Reusing the browser's binding lets several tabs run flows at once.
		binding = c.Value
	} else {
		v, err := randomToken()
		if err != nil {
			a.renderError(w, err, false, name, "")
			return
		}
		binding = v
	}
	authURL, _, err := a.Begin(name, binding)
	if err != nil {
		a.renderError(w, err, false, name, "")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     bindingCookie,
		Value:    binding,
		Path:     "/",
		MaxAge:   int(StateTTL / time.Second),
		HttpOnly: true,
		// Behind a TLS-terminating ingress r.TLS is nil, but an https
		// redirect URL says the browser reaches this listener over https.
		Secure:   r.TLS != nil || httpsURL(a.creds[name].App.RedirectURL),
		SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, authURL, http.StatusFound)
}

// otherOrigin returns the origin of credential name's redirect URL when
// that URL is this listener's callback and r arrived under another host
// name or port: the flow must start there, where its callback will land.
func (a *Admin) otherOrigin(r *http.Request, name string) (string, bool) {
	c, ok := a.creds[name]
	if !ok || r.URL.Query().Has(movedParam) {
		return "", false
	}
	origin, ok := callbackOrigin(c.App.RedirectURL)
	if !ok {
		return "", false
	}
	u, _ := url.Parse(origin)
	if sameHost(r.Host, u) {
		return "", false
	}
	return origin, true
}

// callbackOrigin is the scheme://host[:port] of redirect when it is this
// listener's own /oauth/callback.
func callbackOrigin(redirect string) (string, bool) {
	u, err := url.Parse(redirect)
	if err != nil || u.Host == "" || u.Path != "/oauth/callback" {
		return "", false
	}
	return u.Scheme + "://" + u.Host, true
}

// sameHost reports whether a Host header names u's host and port, the
// scheme's default port standing for an absent one.
func sameHost(host string, u *url.URL) bool {
	port := func(p string) string {
		if p != "" {
			return p
		}
		if strings.EqualFold(u.Scheme, "https") {
			return "443"
		}
		return "80"
	}
	h, p, err := net.SplitHostPort(host)
	if err != nil {
		h, p = host, ""
	}
	return strings.EqualFold(strings.Trim(h, "[]"), u.Hostname()) && port(p) == port(u.Port())
}

// SetupURL is where an operator opens the setup page: the origin of the
// redirect URL when it is this listener's callback, since only there does
// the browser's binding cookie come back with TikTok's redirect; else
// listenerURL (the admin listener's own address).
func (a *Admin) SetupURL(listenerURL string) string {
	for _, name := range a.order {
		if origin, ok := callbackOrigin(a.creds[name].App.RedirectURL); ok {
			return origin + "/authorize"
		}
	}
	return strings.TrimSuffix(listenerURL, "/") + "/authorize"
}

// httpsURL reports whether raw is an https URL; an unparsable one is not.
func httpsURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && strings.EqualFold(u.Scheme, "https")
}

// validToken reports whether v looks like randomToken's output.
func validToken(v string) bool {
	b, err := base64.RawURLEncoding.DecodeString(v)
	return err == nil && len(b) == 32
}

type successPage struct {
	pageBase
	Credential    string
	Advertisers   []tokens.Advertiser
	Scopes        []Scope
	AccessExpires string
	ProxyURL      string
	Curl          string
}

// handleCallback completes the flow TikTok's redirect belongs to. A
// browser's flow then answers 303 to /authorize/{name}/done, so the auth
// code leaves the address bar and the history at once; that page reads the
// outcome bound to the browser's cookie. A CLI state (no cookie to bind
// the outcome to) and a refused state are answered here.
func (a *Admin) handleCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var denied *FlowError
	if e := q.Get("error"); e != "" {
		denied = deniedError(clip(e, 64), clip(q.Get("error_description"), 300))
	}
	binding := ""
	if c, err := r.Cookie(bindingCookie); err == nil {
		binding = c.Value
	}
	state := q.Get("state")
	res, err := a.complete(r.Context(), state, binding, codeParam(q), denied)
	if st, ok := a.states.claimed(state, binding); ok {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, "/authorize/"+st.credential+"/done", http.StatusSeeOther)
		return
	}
	if err != nil {
		credential, hint := a.states.credentialOf(state), ""
		if errors.Is(err, errNoBinding) {
			hint = a.cookieHint(r, credential)
		}
		a.renderError(w, err, true, credential, hint)
		return
	}
	a.renderSuccess(w, res)
}

// cookieHint explains the usual cause of a missing binding cookie: the
// setup page was opened under another host name than the redirect URL's.
func (a *Admin) cookieHint(r *http.Request, credential string) string {
	scheme := "http"
	if c, ok := a.creds[credential]; ok && httpsURL(c.App.RedirectURL) || r.TLS != nil {
		scheme = "https"
	}
	start := scheme + "://" + r.Host + "/authorize"
	if credential != "" {
		start += "/" + credential
	}
	return fmt.Sprintf("Browsers keep this cookie per host name: if the setup page was opened as 127.0.0.1 while the "+
		"redirect URL says localhost (or the other way round), the cookie stayed with the other name. Start again from %s, "+
		"the address TikTok sends the browser back to.", start)
}

// handleDone shows the outcome of the browser's latest flow for the
// credential, after the callback's redirect. Reloading it shows the same
// outcome again; it repeats nothing.
func (a *Admin) handleDone(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	binding := ""
	if c, err := r.Cookie(bindingCookie); err == nil {
		binding = c.Value
	}
	st, ok := a.states.latest(binding, name)
	if !ok {
		// Nothing of this browser's to show (expired, or another browser):
		// the setup page shows the credential's state.
		http.Redirect(w, r, "/authorize", http.StatusSeeOther)
		return
	}
	select {
	case <-st.done:
	case <-r.Context().Done():
		return
	}
	res, err := a.states.outcome(st)
	if err != nil {
		a.renderError(w, err, true, name, "")
		return
	}
	a.renderSuccess(w, res)
}

func (a *Admin) renderSuccess(w http.ResponseWriter, res Result) {
	c := a.creds[res.Credential]
	a.render(w, http.StatusOK, "success", successPage{
		pageBase:      pageBase{Title: "Authorized: " + res.Credential, CSS: template.CSS(styleSheet)},
		Credential:    res.Credential,
		Advertisers:   res.Status.Advertisers,
		Scopes:        namedScopes(res.Status.Scopes),
		AccessExpires: accessLine(a.now(), res.Status).Text,
		ProxyURL:      a.opts.ProxyURL,
		Curl:          a.curlExample(c, res.Status),
	})
}

// codeParam reads TikTok's code: auth_code (advertiser flow), else code.
func codeParam(q url.Values) string {
	if c := q.Get("auth_code"); c != "" {
		return c
	}
	return q.Get("code")
}

// clip bounds text reflected from the query string onto a page.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// curlExample is a ready request through the proxy with the new grant.
func (a *Admin) curlExample(c Credential, st tokens.Status) string {
	base := strings.TrimSuffix(a.opts.ProxyURL, "/")
	if base == "" {
		base = "http://127.0.0.1:8080"
	}
	if len(st.Advertisers) > 0 {
		return fmt.Sprintf("curl -sS '%s/open_api/v1.3/advertiser/info/?advertiser_ids=%s'",
			base, url.QueryEscape(`["`+st.Advertisers[0].ID+`"]`))
	}
	path := "/open_api/v1.3/oauth2/advertiser/get/"
	if c.Kind == config.KindTikTokAccount {
		path = "/open_api/v1.3/business/get/"
	}
	return fmt.Sprintf("curl -sS -H 'X-TikTok-Credential: %s' '%s%s'", c.Name, base, path)
}
