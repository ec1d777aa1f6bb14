package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	// Line is the 1-based YAML line, 0 when unknown (a Config built in code,
	// or a key that is missing altogether).
	Line int
	// Path is the key path, e.g. "credentials[1].name"; "" for the file as
	// a whole.
	Path string
	// Message says what is wrong and what to do about it.
	Message string
}

// String renders the problem without its file: "12: credentials[1].name: ...".
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError lists every problem found in a config file. Load, Parse
// and Validate return it; use errors.As to print Problems one by one.
type ValidationError struct {
	// File is the config file's path as given to Load ("" when unknown).
	File     string
	Problems []Problem
}

// Error gives one problem per line, each as FILE:LINE: PATH: MESSAGE, e.g.
// `config.yaml:12: credentials[1].name: duplicate name "main"`; the line is
// left out when unknown, and FILE is "config" for a Config built in code.
func (e *ValidationError) Error() string {
	file := e.File
	if file == "" {
		file = "config"
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		sep := ": "
		if p.Line > 0 {
			sep = ":"
		}
		lines[i] = file + sep + p.String()
	}
	return strings.Join(lines, "\n")
}

var (
	credentialNameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)
	digitsRE         = regexp.MustCompile(`^[0-9]+$`)
	headerNameRE     = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// validator collects problems, giving each the line of its path.
type validator struct {
	c        *Config
	problems []Problem
}

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Line: v.c.line(path), Path: path, Message: fmt.Sprintf(format, args...)})
}

// show renders the value at path for a message: quoted when it is written
// in the file, named by its ${VAR} reference when it came from the
// environment, whose content may be a secret.
func (v *validator) show(path, value string) string {
	if raw, ok := v.c.refs[path]; ok {
		return refText(raw)
	}
	return fmt.Sprintf("%q", value)
}

// missing reports the empty value at path: as "VAR is set but empty" when
// a variable emptied it, since "missing" would send the operator to a file
// that is right; hint says what to write.
func (v *validator) missing(path, hint string) {
	if name, ok := v.c.empties[path]; ok {
		v.add(path, "%s is set but empty; %s", name, hint)
		return
	}
	v.add(path, "missing; %s", hint)
}

// minTokenLength is the shortest client or admin token accepted: a token
// guards a listener other machines reach, so it must not be guessable.
const minTokenLength = 16

// tokenLength refuses a set token at path shorter than minTokenLength.
func (v *validator) tokenLength(path string, token Secret) {
	if token != "" && len(token.Value()) < minTokenLength {
		v.add(path, "shorter than %d characters; use a long random token, e.g. from: openssl rand -hex 32", minTokenLength)
	}
}

// showAddr is show for a listen address, which messages give unquoted.
func (v *validator) showAddr(path, addr string) string {
	if _, ok := v.c.refs[path]; ok {
		return v.show(path, addr)
	}
	return addr
}

// line gives the YAML line of path, or of its nearest ancestor written in
// the file (a defaulted key has no line of its own).
func (c *Config) line(path string) int {
	for path != "" {
		if l, ok := c.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// Validate checks the whole config and reports every problem at once as a
// *ValidationError. It expects the defaults Load fills in; a Config built in
// code should set them itself.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.listeners()
	v.urls()
	v.durations()
	v.store()
	v.credentials()
	v.rateLimits()
	v.clients()
	v.forwardProxy()
	v.log()
	if len(v.problems) == 0 {
		return nil
	}
	return &ValidationError{File: c.Path, Problems: v.problems}
}

func (v *validator) listeners() {
	c := v.c
	v.hostPort("listen", c.Listen)
	v.hostPort("admin_listen", c.AdminListen)
	if c.Listen != "" && c.Listen == c.AdminListen {
		v.add("admin_listen", "same address as listen (%s); give the admin listener its own port", v.showAddr("listen", c.Listen))
	}
	if validHostPort(c.Listen) && !IsLoopback(c.Listen) && len(c.Clients) == 0 {
		v.add("listen", "%s is reachable from other machines but no clients are configured; add clients with tokens, or listen on 127.0.0.1", v.showAddr("listen", c.Listen))
	}
	if validHostPort(c.AdminListen) && !IsLoopback(c.AdminListen) && c.AdminToken == "" {
		if name, ok := c.empties["admin_token"]; ok {
			v.add("admin_token", "%s is set but empty; %s is reachable from other machines, so it needs a token", name, v.showAddr("admin_listen", c.AdminListen))
		} else {
			v.add("admin_listen", "%s is reachable from other machines but admin_token is empty; set admin_token (e.g. ${ADMIN_TOKEN}), or listen on 127.0.0.1", v.showAddr("admin_listen", c.AdminListen))
		}
	}
	for i, h := range c.AllowedHosts {
		if !validHost(h) {
			path := fmt.Sprintf("allowed_hosts[%d]", i)
			v.add(path, "%s is not a host name; write the name a Host header carries, e.g. proxy.internal or proxy.internal:8080", v.show(path, h))
		}
	}
	v.tokenLength("admin_token", c.AdminToken)
	if !headerNameRE.MatchString(c.Routing.CredentialHeader) {
		v.add("routing.credential_header", "%s is not a valid HTTP header name; use letters, digits and -, e.g. X-TikTok-Credential", v.show("routing.credential_header", c.Routing.CredentialHeader))
	}
}

// validHost reports whether h is a host name or host:port as a Host header
// carries it, with no scheme, path or space.
func validHost(h string) bool {
	if h == "" || strings.ContainsAny(h, "/\\@?# \t") {
		return false
	}
	u, err := url.Parse("http://" + h)
	return err == nil && u.Host == h && u.Hostname() != ""
}

func validHostPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

func (v *validator) hostPort(path, addr string) {
	if !validHostPort(addr) {
		v.add(path, "%s is not a host:port address; write e.g. 127.0.0.1:8080", v.show(path, addr))
	}
}

func (v *validator) urls() {
	c := v.c
	if u, ok := v.absoluteURL("upstream.base_url", c.Upstream.BaseURL, "https://business-api.tiktok.com"); ok {
		if u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
			v.add("upstream.base_url", "%s has a path; give only scheme and host, e.g. https://business-api.tiktok.com", v.show("upstream.base_url", c.Upstream.BaseURL))
		}
	}
	// With no redirect_url and a broken admin_listen there is no default;
	// the admin_listen problem says what to fix.
	if c.OAuth.RedirectURL != "" || validHostPort(c.AdminListen) {
		v.absoluteURL("oauth.redirect_url", c.OAuth.RedirectURL, "http://localhost:8081/oauth/callback")
	}
	v.endpoints("oauth", Endpoints{c.OAuth.AuthorizeURL, c.OAuth.TokenURL, c.OAuth.RefreshURL})
	for i, cr := range c.Credentials {
		v.endpoints(fmt.Sprintf("credentials[%d].oauth", i), cr.OAuth)
	}
}

// endpoints checks the OAuth URL overrides under path.
func (v *validator) endpoints(path string, e Endpoints) {
	for _, f := range []struct{ key, value string }{
		{"authorize_url", e.AuthorizeURL},
		{"token_url", e.TokenURL},
		{"refresh_url", e.RefreshURL},
	} {
		if f.value != "" {
			v.absoluteURL(path+"."+f.key, f.value, "https://business-api.tiktok.com/...")
		}
	}
}

func (v *validator) absoluteURL(path, raw, example string) (*url.URL, bool) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(path, "%s is not an absolute http(s) URL; write scheme and host, e.g. %s", v.show(path, raw), example)
		return nil, false
	}
	return u, true
}

func (v *validator) durations() {
	c := v.c
	for _, d := range []struct {
		path string
		neg  bool
	}{
		{"upstream.timeout", c.Upstream.Timeout < 0},
		{"tokens.refresh_before", c.Tokens.RefreshBefore < 0},
		{"breaker.open_timeout", c.Breaker.OpenTimeout < 0},
		{"rate_limits.max_wait", c.RateLimits.MaxWait < 0},
		{"retry.max_wait", c.Retry.MaxWait < 0},
	} {
		if d.neg {
			v.add(d.path, "must not be negative; write a positive duration such as 30s, or remove the key for the default")
		}
	}
	if c.Routing.MaxInspectBytes < 0 {
		v.add("routing.max_inspect_bytes", "must not be negative; write a size in bytes such as 1048576, or remove the key for the default")
	}
}

func (v *validator) store() {
	s := v.c.Store
	switch s.Backend {
	case "file", "redis":
	default:
		v.add("store.backend", "unknown backend %s; use file or redis", v.show("store.backend", s.Backend))
	}
	if name, ok := v.c.empties["store.encryption_key"]; ok {
		// An empty key means plaintext; a variable that should have held
		// the key must not switch encryption off unnoticed.
		v.add("store.encryption_key", "%s is set but empty, which would store tokens unencrypted; set it (openssl rand -base64 32), or remove encryption_key to store them in plaintext", name)
	} else if _, err := s.Key(); err != nil {
		v.add("store.encryption_key", "%s; generate a key with: openssl rand -base64 32", strings.TrimPrefix(err.Error(), "config: "))
	}
	if s.Backend == "redis" {
		v.hostPort("store.redis.address", s.Redis.Address)
	}
	if s.Redis.DB < 0 {
		v.add("store.redis.db", "must not be negative; redis databases are numbered from 0")
	}
}

func (v *validator) credentials() {
	c := v.c
	if len(c.Credentials) == 0 {
		v.add("credentials", "no credentials configured; add at least one (name, app_id, app_secret), see config.example.yaml")
		return
	}
	names := map[string]int{}
	advertisers := map[string]int{}
	firstDefault := -1
	for i, cr := range c.Credentials {
		p := fmt.Sprintf("credentials[%d]", i)
		switch {
		case cr.Name == "":
			v.add(p+".name", "missing; give the credential a name such as main")
		case !credentialNameRE.MatchString(cr.Name):
			v.add(p+".name", "%s is not a valid name; use only lowercase letters, digits, _ and -", v.show(p+".name", cr.Name))
		}
		if j, dup := names[cr.Name]; dup && cr.Name != "" {
			v.add(p+".name", "duplicate name %s (already used by credentials[%d]); give each credential its own name", v.show(p+".name", cr.Name), j)
		} else {
			names[cr.Name] = i
		}
		if cr.Kind != KindAdvertiser && cr.Kind != KindTikTokAccount {
			v.add(p+".kind", "unknown kind %s; use %s or %s", v.show(p+".kind", cr.Kind), KindAdvertiser, KindTikTokAccount)
		}
		if cr.AppID == "" {
			v.missing(p+".app_id", "copy the app's App ID from the TikTok developer portal")
		}
		if cr.AppSecret == "" {
			v.missing(p+".app_secret", "set it from the environment, e.g. app_secret: ${TIKTOK_APP_SECRET}")
		}
		if cr.Default {
			if firstDefault >= 0 {
				v.add(p+".default", "credentials[%d] is already the default; mark only one credential with default: true", firstDefault)
			} else {
				firstDefault = i
			}
		}
		for k, id := range cr.AdvertiserIDs {
			ap := fmt.Sprintf("%s.advertiser_ids[%d]", p, k)
			if !digitsRE.MatchString(id) {
				v.add(ap, "%s is not an advertiser id; advertiser ids are digits only", v.show(ap, id))
				continue
			}
			if j, dup := advertisers[id]; dup && j != i {
				v.add(ap, "advertiser %s is already listed under credentials[%d] (%s); an advertiser can belong to only one credential", v.showAddr(ap, id), j, v.show(fmt.Sprintf("credentials[%d].name", j), c.Credentials[j].Name))
				continue
			}
			advertisers[id] = i
		}
		if cr.RateLimit.QPS < 0 {
			v.add(p+".rate_limit.qps", "must not be negative; use 0 to turn the limit off")
		}
		if cr.RateLimit.Burst < 0 {
			v.add(p+".rate_limit.burst", "must not be negative; use 0 for the default (qps rounded up)")
		}
	}
}

func (v *validator) rateLimits() {
	rl := v.c.RateLimits
	if _, ok := TierQPS[rl.Tier]; rl.Tier != "" && !ok {
		v.add("rate_limits.tier", "unknown tier %s; use basic, advanced, premium or ultimate (TikTok's 10, 20, 30 or 50 QPS), or remove the key", v.show("rate_limits.tier", rl.Tier))
	}
	paths := slices.Sorted(maps.Keys(rl.Endpoints))
	for _, path := range paths {
		p := "rate_limits.endpoints." + path
		switch {
		case !strings.HasPrefix(path, "/open_api/") || !strings.HasSuffix(path, "/"):
			v.add(p, "%q is not an API path; write the whole path as TikTok spells it, e.g. /open_api/v1.3/report/task/create/", path)
		case rl.Endpoints[path] <= 0:
			v.add(p, "must be a positive number of requests per second, e.g. 2")
		}
	}
	if v.c.Retry.Attempts < 0 {
		v.add("retry.attempts", "must not be negative; 1 means no retry, 0 the default (3)")
	}
}

func (v *validator) clients() {
	c := v.c
	names := map[string]int{}
	tokens := map[Secret]int{}
	for i, cl := range c.Clients {
		p := fmt.Sprintf("clients[%d]", i)
		if cl.Name == "" {
			v.add(p+".name", "missing; name the client (it appears in logs)")
		} else if j, dup := names[cl.Name]; dup {
			v.add(p+".name", "duplicate name %s (already used by clients[%d]); give each client its own name", v.show(p+".name", cl.Name), j)
		} else {
			names[cl.Name] = i
		}
		if cl.Token == "" {
			v.missing(p+".token", "set a long random token, e.g. token: ${CLIENT_TOKEN}")
		} else if j, dup := tokens[cl.Token]; dup {
			v.add(p+".token", "same token as clients[%d]; give each client its own token", j)
		} else {
			tokens[cl.Token] = i
			v.tokenLength(p+".token", cl.Token)
		}
		if len(cl.Credentials) == 0 {
			v.add(p+".credentials", "empty; list the credentials this client may use")
		}
		for k, name := range cl.Credentials {
			if _, ok := c.Credential(name); !ok {
				cp := fmt.Sprintf("%s.credentials[%d]", p, k)
				v.add(cp, "unknown credential %s; use one of: %s", v.show(cp, name), strings.Join(v.credentialNames(), ", "))
			}
		}
	}
}

func (v *validator) credentialNames() []string {
	names := make([]string, 0, len(v.c.Credentials))
	for i, cr := range v.c.Credentials {
		names = append(names, v.showAddr(fmt.Sprintf("credentials[%d].name", i), cr.Name))
	}
	return names
}

func (v *validator) forwardProxy() {
	fp := v.c.ForwardProxy
	if fp.Listen == "" {
		return
	}
	v.hostPort("forward_proxy.listen", fp.Listen)
	if validHostPort(fp.Listen) && !IsLoopback(fp.Listen) && len(v.c.Clients) == 0 {
		v.add("forward_proxy.listen", "%s is reachable from other machines but no clients are configured; add clients with tokens, or listen on 127.0.0.1", v.showAddr("forward_proxy.listen", fp.Listen))
	}
	for _, l := range []struct{ key, addr string }{{"listen", v.c.Listen}, {"admin_listen", v.c.AdminListen}} {
		// Port 0 picks a free port per listener, so it never collides.
		if fp.Listen == l.addr && !strings.HasSuffix(l.addr, ":0") {
			v.add("forward_proxy.listen", "%s is already %s's address; give the forward proxy its own port, e.g. 127.0.0.1:3128", v.showAddr("forward_proxy.listen", fp.Listen), l.key)
		}
	}
	if fp.CACert == "" {
		v.add("forward_proxy.ca_cert", "missing; the forward proxy needs a CA certificate and key (PEM files): tiktok-auth-proxy ca --out DIR creates them")
	}
	if fp.CAKey == "" {
		v.add("forward_proxy.ca_key", "missing; the forward proxy needs a CA certificate and key (PEM files): tiktok-auth-proxy ca --out DIR creates them")
	}
	var ca *tls.Certificate
	if fp.CACert != "" && fp.CAKey != "" {
		c, err := fp.loadCA()
		var p *caProblem
		switch {
		case errors.As(err, &p):
			v.add("forward_proxy."+p.key, "%s", p.msg)
		case err == nil:
			ca = &c
		}
	}
	for i, h := range fp.Hosts {
		hp := fmt.Sprintf("forward_proxy.hosts[%d]", i)
		switch {
		case h == "" || strings.ContainsAny(h, "/: "):
			v.add(hp, "%s is not a host name; write e.g. business-api.tiktok.com", v.show(hp, h))
		case ca != nil && !permits(ca.Leaf, h):
			v.add(hp, "%s is outside the name constraints of the CA in %s (%s), so clients would refuse it; create a CA for it with tiktok-auth-proxy ca --out DIR --host %s", v.show(hp, h), fp.CACert, strings.Join(ca.Leaf.PermittedDNSDomains, ", "), h)
		}
	}
}

func (v *validator) log() {
	l := v.c.Log
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", "unknown level %s; use debug, info, warn or error", v.show("log.level", l.Level))
	}
	switch l.Format {
	case "json", "text":
	default:
		v.add("log.format", "unknown format %s; use json or text", v.show("log.format", l.Format))
	}
}
