package setup

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
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

// pageCSP allows nothing but the one inlined stylesheet (by hash): no
// script, no external asset, no framing, forms only to this origin.
var pageCSP = func() string {
	h := sha256.Sum256([]byte(styleSheet))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(h[:]) +
		"'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}()

var pages = func() map[string]*template.Template {
	funcs := template.FuncMap{"join": strings.Join}
	out := make(map[string]*template.Template)
	for _, name := range []string{"authorize", "success", "error"} {
		out[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/base.html", "templates/"+name+".html"))
	}
	return out
}()

// bindingCookie holds the random value a browser state is bound to. It
// never holds the state or the auth code.
const bindingCookie = "tiktok_auth_proxy_binding"

type pageBase struct {
	Title string
	CSS   template.CSS
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
	NothingStored bool
}

func (a *Admin) renderError(w http.ResponseWriter, err error, flow bool) {
	var fe *FlowError
	if !errors.As(err, &fe) {
		fe = &FlowError{HTTPStatus: http.StatusInternalServerError, Message: "Something went wrong; see the proxy's log."}
	}
	heading := "Authorization failed"
	switch {
	case fe.HTTPStatus == http.StatusNotFound:
		heading = "Unknown credential"
	case fe.HTTPStatus >= 500:
		heading = "TikTok or the proxy failed"
	}
	a.render(w, fe.HTTPStatus, "error", errorPage{
		pageBase:      pageBase{Title: heading, CSS: template.CSS(styleSheet)},
		Heading:       heading,
		Message:       fe.Message,
		NothingStored: flow,
	})
}

// credView is one credential's card; every field is display-ready.
type credView struct {
	Name, Description, Kind string
	Authorized              bool
	Advertisers             []tokens.Advertiser
	Scopes                  []string
	AccessExpires           string
	RefreshExpires          string
	LastRefresh             string
	LastRefreshFailed       bool
	AuthorizedAt            string
	ReauthRequired          bool
	ReauthReason            string
	Breaker                 string
	BreakerClass            string
}

type authorizePage struct {
	pageBase
	ProxyURL    string
	Credentials []credView
}

func (a *Admin) handlePage(w http.ResponseWriter, r *http.Request) {
	now := a.now()
	views := make([]credView, 0, len(a.order))
	for _, st := range a.credentialStates() {
		v := credView{
			Name: st.Name, Description: st.Description, Kind: st.Kind,
			Authorized:     st.Authorized,
			Advertisers:    st.Advertisers,
			Scopes:         st.Scopes,
			AccessExpires:  accessExpiry(now, st.Status),
			RefreshExpires: refreshExpiry(now, st.Status),
			ReauthRequired: st.ReauthRequired,
			ReauthReason:   st.ReauthReason,
			Breaker:        st.BreakerState,
			BreakerClass:   breakerClass(st.BreakerState),
		}
		v.LastRefresh, v.LastRefreshFailed = lastRefresh(now, st.LastRefresh)
		if !st.AuthorizedAt.IsZero() {
			v.AuthorizedAt = ago(now, st.AuthorizedAt)
		}
		views = append(views, v)
	}
	a.render(w, http.StatusOK, "authorize", authorizePage{
		pageBase:    pageBase{Title: "Credentials", CSS: template.CSS(styleSheet)},
		ProxyURL:    a.opts.ProxyURL,
		Credentials: views,
	})
}

func (a *Admin) handleBegin(w http.ResponseWriter, r *http.Request) {
	binding := ""
	if c, err := r.Cookie(bindingCookie); err == nil && validToken(c.Value) {
		// Reusing the browser's binding lets several tabs run flows at once.
		binding = c.Value
	} else {
		v, err := randomToken()
		if err != nil {
			a.renderError(w, err, false)
			return
		}
		binding = v
	}
	authURL, _, err := a.Begin(r.PathValue("name"), binding)
	if err != nil {
		a.renderError(w, err, false)
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
		Secure:   r.TLS != nil || httpsURL(a.creds[r.PathValue("name")].App.RedirectURL),
		SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, authURL, http.StatusFound)
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
	// Again is set when a reload of the callback shows the outcome of the
	// flow it already completed.
	Again         bool
	Credential    string
	Advertisers   []tokens.Advertiser
	Scopes        []string
	AccessExpires string
	ProxyURL      string
	Curl          string
}

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
	res, err := a.complete(r.Context(), q.Get("state"), binding, codeParam(q), denied)
	again := false
	if errors.Is(err, errUsedState) && denied == nil {
		if prev, ok := a.previousOutcome(r, q.Get("state"), binding); ok {
			res, err, again = prev, nil, true
		}
	}
	if err != nil {
		a.renderError(w, err, true)
		return
	}
	c := a.creds[res.Credential]
	title := "Authorized"
	if again {
		title = "Already authorized"
	}
	a.render(w, http.StatusOK, "success", successPage{
		pageBase:      pageBase{Title: title, CSS: template.CSS(styleSheet)},
		Again:         again,
		Credential:    res.Credential,
		Advertisers:   res.Status.Advertisers,
		Scopes:        res.Status.Scopes,
		AccessExpires: accessExpiry(a.now(), res.Status),
		ProxyURL:      a.opts.ProxyURL,
		Curl:          a.curlExample(c, res.Status),
	})
}

// previousOutcome is the result of the flow that already claimed state,
// for a reload of its callback (the browser's back button, a refresh): the
// success it had, shown again, rather than "already used" that reads as a
// failure. It waits for a flow still exchanging, bounded by the request;
// false when that flow failed or the state is not this browser's.
func (a *Admin) previousOutcome(r *http.Request, state, binding string) (Result, bool) {
	st, ok := a.states.claimed(state, binding)
	if !ok {
		return Result{}, false
	}
	select {
	case <-st.done:
	case <-r.Context().Done():
		return Result{}, false
	}
	res, err := a.states.outcome(st)
	return res, err == nil
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

func accessExpiry(now time.Time, s tokens.Status) string {
	switch {
	case !s.Authorized:
		return "—"
	case s.AccessExpiresAt.IsZero():
		return "never (long-lived)"
	}
	return until(now, s.AccessExpiresAt)
}

func refreshExpiry(now time.Time, s tokens.Status) string {
	switch {
	case !s.Authorized:
		return "—"
	case !s.Refreshable:
		return "none (not refreshable)"
	case s.RefreshExpiresAt.IsZero():
		return "unknown (TikTok gave no expiry)"
	}
	return until(now, s.RefreshExpiresAt)
}

func lastRefresh(now time.Time, r tokens.RefreshResult) (text string, failed bool) {
	switch {
	case r.At.IsZero():
		return "never", false
	case r.OK:
		return "succeeded " + ago(now, r.At), false
	}
	msg := ago(now, r.At)
	if r.Error != "" {
		msg += ": " + r.Error
	}
	return msg, true
}

func breakerClass(state string) string {
	switch state {
	case "closed":
		return "ok"
	case "half-open":
		return "warn"
	case "open":
		return "bad"
	}
	return ""
}

// until says when t comes: "in 23h 59m", or "expired 5m ago".
func until(now, t time.Time) string {
	d := t.Sub(now)
	if d <= 0 {
		return "expired " + ago(now, t)
	}
	if d < time.Minute {
		return "in less than a minute"
	}
	return "in " + span(d)
}

// ago says how long ago t was: "5m ago".
func ago(now, t time.Time) string {
	d := now.Sub(t)
	if d < time.Minute {
		return "just now"
	}
	return span(d) + " ago"
}

// span renders d (at least a minute) to the minute: "364d 23h", "47h 59m",
// "5m". Days start at 48h so a daily token reads "24h 0m".
func span(d time.Duration) string {
	const day = 24 * time.Hour
	days, rest := d/day, d%day
	hours, mins := rest/time.Hour, rest%time.Hour/time.Minute
	if days < 2 {
		days, hours = 0, d/time.Hour
	}
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	}
	return fmt.Sprintf("%dm", mins)
}
