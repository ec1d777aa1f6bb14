package tiktoksim

import (
	"html/template"
	"net/http"
	"net/url"
	"slices"
)

var consentPage = template.Must(template.New("consent").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Authorize {{.App}} – TikTok for Business (simulator)</title>
<style>
body { font-family: system-ui, sans-serif; background: #f4f4f5; margin: 0; }
main { max-width: 28rem; margin: 4rem auto; background: #fff; padding: 2rem; border-radius: 8px; box-shadow: 0 1px 4px rgba(0,0,0,.1); }
h1 { font-size: 1.25rem; margin-top: 0; }
ul { list-style: none; padding: 0; }
li { padding: .4rem 0; border-bottom: 1px solid #eee; }
.id { color: #666; font-size: .85rem; }
.buttons { display: flex; gap: .75rem; margin-top: 1.5rem; }
button { flex: 1; padding: .6rem; border-radius: 4px; border: 1px solid #ccc; font-size: 1rem; cursor: pointer; }
#authorize { background: #fe2c55; color: #fff; border-color: #fe2c55; }
.note { color: #888; font-size: .8rem; margin-top: 1.5rem; }
</style>
</head>
<body>
<main>
<h1>Authorize {{.App}} to access your ad accounts</h1>
<p>{{.App}} will be able to manage these advertiser accounts:</p>
<form method="post">
<ul>
{{range .Advertisers}}<li><label><input type="checkbox" name="advertiser_id" value="{{.ID}}" checked> {{.Name}} <span class="id">{{.ID}}</span></label></li>
{{end}}</ul>
{{if .Scope}}<p>Scopes: {{.Scope}}</p>{{end}}
{{range $k, $v := .Hidden}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}<div class="buttons">
<button type="submit" id="cancel" name="action" value="cancel">Cancel</button>
<button type="submit" id="authorize" name="action" value="authorize">Authorize</button>
</div>
</form>
<p class="note">TikTok Business API simulator: no real account is involved.</p>
</main>
</body>
</html>
`))

// consent serves a consent page of kind: GET shows it, POST decides.
func (s *Server) consent(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tt-Logid", s.newRequestID())
		if err := r.ParseForm(); err != nil {
			http.Error(w, "malformed form", http.StatusBadRequest)
			return
		}
		idParam := "app_id"
		if kind == KindTikTokAccount {
			idParam = "client_key"
		}
		appID, state, redirect, scope := r.Form.Get(idParam), r.Form.Get("state"), r.Form.Get("redirect_uri"), r.Form.Get("scope")
		app, ok := s.app(appID)
		if !ok {
			http.Error(w, "unknown app: "+appID, http.StatusBadRequest)
			return
		}
		target, err := url.Parse(redirect)
		if err != nil || !target.IsAbs() {
			http.Error(w, "redirect_uri must be an absolute URL", http.StatusBadRequest)
			return
		}
		if kind == KindTikTokAccount && r.Form.Get("response_type") != "code" {
			http.Error(w, "response_type must be code", http.StatusBadRequest)
			return
		}
		if r.Method == http.MethodGet {
			hidden := map[string]string{idParam: appID, "state": state, "redirect_uri": redirect}
			if kind == KindTikTokAccount {
				hidden["scope"] = scope
				hidden["response_type"] = "code"
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_ = consentPage.Execute(w, map[string]any{
				"App": app.displayName(), "Advertisers": app.advertisers(), "Scope": scope, "Hidden": hidden,
			})
			return
		}
		q := target.Query()
		if r.PostForm.Get("action") != "authorize" {
			q.Set("error", "access_denied")
			q.Set("error_description", "The user denied the authorization request.")
		} else {
			var chosen []string
			for _, a := range app.advertisers() {
				if slices.Contains(r.PostForm["advertiser_id"], a.ID) {
					chosen = append(chosen, a.ID)
				}
			}
			tokenRedirect := ""
			if kind == KindTikTokAccount {
				tokenRedirect = redirect
			}
			code := s.issueCode(appID, kind, chosen, tokenRedirect, scope)
			q.Set("auth_code", code)
			q.Set("code", code)
		}
		q.Set("state", state)
		target.RawQuery = q.Encode()
		http.Redirect(w, r, target.String(), http.StatusFound)
	}
}
