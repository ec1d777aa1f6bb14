package tiktok

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// defaultHTTP is used when Client.HTTP is nil; the timeout bounds calls
// whose context has no deadline.
var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

// maxResponseBytes bounds how much of an OAuth response is read: TikTok's
// answers are a few hundred bytes, so anything near this is not TikTok.
const maxResponseBytes = 4 << 20

// DefaultScope is the scope a tiktok_account consent URL asks for when
// App.Scopes is empty.
const DefaultScope = "user.info.basic"

// Client calls TikTok's OAuth endpoints. The zero value uses a default
// HTTP client with a 30s timeout. Safe for concurrent use.
type Client struct {
	// HTTP is the client used for every call; nil means a client with a 30s
	// timeout. Its CheckRedirect is not used: every call carries the app
	// secret, so no call follows a redirect, whatever the client says.
	HTTP *http.Client
}

// httpClient is a copy of the configured client that never follows a
// redirect. A followed 307 would re-post the secret and refresh token to
// whatever host Location names, and a 302 would carry Access-Token (Go
// strips only Authorization and Cookie across hosts) and a Referer holding
// the secret; do turns the redirect into an error instead.
func (c *Client) httpClient() *http.Client {
	base := defaultHTTP
	if c != nil && c.HTTP != nil {
		base = c.HTTP
	}
	hc := *base
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}

// DefaultEndpoints derives kind's OAuth URLs from baseURL (scheme and host).
// The tiktok_account consent page lives on www.tiktok.com whatever the base,
// and that kind has no advertiser list URL.
func DefaultEndpoints(baseURL, kind string) Endpoints {
	base := strings.TrimRight(baseURL, "/")
	if kind == KindTikTokAccount {
		return Endpoints{
			AuthorizeURL: "https://www.tiktok.com/v2/auth/authorize/",
			TokenURL:     base + "/open_api/v1.3/tt_user/oauth2/token/",
			RefreshURL:   base + "/open_api/v1.3/tt_user/oauth2/refresh_token/",
		}
	}
	return Endpoints{
		AuthorizeURL:  base + "/portal/auth",
		TokenURL:      base + "/open_api/v1.3/oauth2/access_token/",
		RefreshURL:    base + "/open_api/v1.3/oauth2/refresh_token/",
		AdvertiserURL: base + "/open_api/v1.3/oauth2/advertiser/get/",
	}
}

// AuthCodeURL is the consent URL the user's browser is sent to. A query
// already present on app.Endpoints.AuthorizeURL is kept.
func (c *Client) AuthCodeURL(app App, state string) string {
	u, err := url.Parse(app.Endpoints.AuthorizeURL)
	if err != nil {
		// Config validation rejects unparsable URLs; appending keeps the
		// parameters visible rather than silently dropping them.
		u = &url.URL{Path: app.Endpoints.AuthorizeURL}
	}
	q := u.Query()
	if app.Kind == KindTikTokAccount {
		scope := strings.Join(app.Scopes, ",")
		if scope == "" {
			scope = DefaultScope
		}
		q.Set("client_key", app.AppID)
		q.Set("scope", scope)
		q.Set("response_type", "code")
		q.Set("redirect_uri", app.RedirectURL)
		q.Set("state", state)
	} else {
		q.Set("app_id", app.AppID)
		q.Set("state", state)
		q.Set("redirect_uri", app.RedirectURL)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Exchange trades an auth code for a Grant.
func (c *Client) Exchange(ctx context.Context, app App, code string) (*Grant, error) {
	var body any
	if app.Kind == KindTikTokAccount {
		body = struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
			GrantType    string `json:"grant_type"`
			AuthCode     string `json:"auth_code"`
			RedirectURI  string `json:"redirect_uri"`
		}{app.AppID, app.Secret, "authorization_code", code, app.RedirectURL}
	} else {
		body = struct {
			AppID    string `json:"app_id"`
			Secret   string `json:"secret"`
			AuthCode string `json:"auth_code"`
		}{app.AppID, app.Secret, code}
	}
	return c.tokenCall(ctx, app.Endpoints.TokenURL, "token", body)
}

// Refresh trades a refresh token for a new Grant. A Grant whose
// RefreshToken is "" means TikTok did not rotate it: keep the old one.
func (c *Client) Refresh(ctx context.Context, app App, refreshToken string) (*Grant, error) {
	var body any
	if app.Kind == KindTikTokAccount {
		body = struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
			GrantType    string `json:"grant_type"`
			RefreshToken string `json:"refresh_token"`
		}{app.AppID, app.Secret, "refresh_token", refreshToken}
	} else {
		body = struct {
			AppID        string `json:"app_id"`
			Secret       string `json:"secret"`
			RefreshToken string `json:"refresh_token"`
			GrantType    string `json:"grant_type"`
		}{app.AppID, app.Secret, refreshToken, "refresh_token"}
	}
	return c.tokenCall(ctx, app.Endpoints.RefreshURL, "refresh", body)
}

// Advertisers lists the advertisers the access token is authorized for.
func (c *Client) Advertisers(ctx context.Context, app App, accessToken string) ([]Advertiser, error) {
	if app.Endpoints.AdvertiserURL == "" {
		return nil, errors.New("tiktok: no advertiser list URL configured")
	}
	// Parse before the secret is added so a parse error cannot carry it.
	u, err := url.Parse(app.Endpoints.AdvertiserURL)
	if err != nil {
		return nil, fmt.Errorf("tiktok: advertiser list URL: %w", err)
	}
	q := u.Query()
	q.Set("app_id", app.AppID)
	q.Set("secret", app.Secret)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("tiktok: advertiser list request: %w", stripURL(err))
	}
	req.Header.Set("Access-Token", accessToken)
	env, err := c.do(req, "advertiser list")
	if err != nil {
		return nil, err
	}
	var data struct {
		List []struct {
			ID   flexString `json:"advertiser_id"`
			Name string     `json:"advertiser_name"`
		} `json:"list"`
	}
	if err := decodeData(env.Data, &data); err != nil {
		return nil, badResponsef("tiktok: decode advertiser list response: %w", err)
	}
	out := make([]Advertiser, 0, len(data.List))
	for _, a := range data.List {
		id, err := advertiserID(a.ID)
		if err != nil {
			return nil, badResponsef("tiktok: decode advertiser list response: advertiser_id: %w", err)
		}
		out = append(out, Advertiser{ID: id, Name: a.Name})
	}
	return out, nil
}

// tokenCall posts body as JSON to rawURL and decodes a Grant; what names
// the call in errors ("token", "refresh").
func (c *Client) tokenCall(ctx context.Context, rawURL, what string, body any) (*Grant, error) {
	if rawURL == "" {
		return nil, fmt.Errorf("tiktok: no %s URL configured", what)
	}
	buf, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("tiktok: encode %s request: %w", what, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(buf))
	if err != nil {
		return nil, fmt.Errorf("tiktok: %s request: %w", what, stripURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	env, err := c.do(req, what)
	if err != nil {
		return nil, err
	}
	g, err := decodeGrant(env.Data)
	if err != nil {
		return nil, badResponsef("tiktok: decode %s response: %w", what, err)
	}
	return g, nil
}

// do sends req and decodes the envelope. Transport errors are unwrapped
// from *url.Error because its message carries the URL, which for the
// advertiser list holds the app secret.
func (c *Client) do(req *http.Request, what string) (*Envelope, error) {
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("tiktok: %s request: %w", what, stripURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, badResponsef("tiktok: %s request: redirected (HTTP %d) to %s; calls that carry the app secret never follow redirects: check the configured URL",
			what, resp.StatusCode, redirectTarget(req.URL, resp.Header.Get("Location")))
	}
	body := io.LimitReader(resp.Body, maxResponseBytes)
	if resp.StatusCode >= 400 {
		env, derr := decodeEnvelope(body, what)
		var apiErr *APIError
		if derr != nil && errors.As(derr, &apiErr) {
			apiErr.HTTPStatus = resp.StatusCode
			return nil, apiErr
		}
		e := &APIError{HTTPStatus: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
		if env != nil {
			e.RequestID = env.RequestID
		}
		return nil, e
	}
	return decodeEnvelope(body, what)
}

// redirectTarget names where a redirect pointed, resolved against the
// request's URL, without query or fragment: a redirect can echo the request's
// query, which for the advertiser list holds the secret.
func redirectTarget(from *url.URL, location string) string {
	if location == "" {
		return "nowhere (no Location)"
	}
	to, err := from.Parse(location)
	if err != nil {
		return "an unparsable Location"
	}
	return (&url.URL{Scheme: to.Scheme, Host: to.Host, Path: to.Path}).String()
}

// stripURL drops the *url.Error wrapper (whose text includes the request
// URL) and keeps the cause, so errors.Is(err, context.DeadlineExceeded)
// still holds.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Envelope is TikTok's response envelope.
type Envelope struct {
	Code      int
	Message   string
	RequestID string
	Data      json.RawMessage
}

// DecodeEnvelope reads one envelope from r. It returns *APIError when the
// code is neither CodeOK nor CodePartialSuccess, an error wrapping
// ErrBadResponse when r does not hold a JSON object with an integer "code",
// and r's own error when reading r fails.
func DecodeEnvelope(r io.Reader) (*Envelope, error) {
	return decodeEnvelope(r, "")
}

func decodeEnvelope(r io.Reader, what string) (*Envelope, error) {
	name := "response"
	if what != "" {
		name = what + " response"
	}
	prefix := "tiktok: decode " + name + ": "
	// A map matches keys exactly; a struct would also accept "Code".
	var raw map[string]json.RawMessage
	rr := &recordingReader{r: r}
	dec := json.NewDecoder(rr)
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		if rr.err != nil {
			// The connection failed mid-answer: that is not TikTok
			// answering badly, and keeps errors.Is(err, context.DeadlineExceeded).
			return nil, fmt.Errorf("tiktok: read %s: %w", name, rr.err)
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, badResponsef("%s%w", prefix, err)
	}
	if raw == nil {
		return nil, badResponsef("%snot a JSON object", prefix)
	}
	codeRaw, ok := raw["code"]
	if !ok {
		return nil, badResponsef("%sno \"code\" field", prefix)
	}
	code, err := strconv.Atoi(string(codeRaw))
	if err != nil {
		return nil, badResponsef("%s\"code\" is not an integer", prefix)
	}
	env := &Envelope{Code: code, Data: raw["data"]}
	// Message and request_id are informative only: a wrong type must not
	// hide the code.
	_ = json.Unmarshal(raw["message"], &env.Message)
	_ = json.Unmarshal(raw["request_id"], &env.RequestID)
	if code != CodeOK && code != CodePartialSuccess {
		return env, &APIError{Code: code, Message: env.Message, RequestID: env.RequestID}
	}
	return env, nil
}

// recordingReader keeps the first read error other than io.EOF, so a
// decode failure can tell a broken connection from a malformed answer.
type recordingReader struct {
	r   io.Reader
	err error
}

func (rr *recordingReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && rr.err == nil {
		rr.err = err
	}
	return n, err
}

// badResponse is a decode failure: its text is the wrapped error's, and
// errors.Is matches ErrBadResponse as well as anything the text wraps.
type badResponse struct{ err error }

func badResponsef(format string, a ...any) error {
	return &badResponse{err: fmt.Errorf(format, a...)}
}

func (e *badResponse) Error() string { return e.err.Error() }

func (e *badResponse) Unwrap() error { return e.err }

func (e *badResponse) Is(target error) bool { return target == ErrBadResponse }

// flexString decodes a JSON string or number into its text, so 19-digit
// advertiser ids never pass through float64. It accepts any number form;
// each use checks the form it needs (seconds, advertiserID).
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	if string(b) == "null" {
		*f = ""
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want a string or a number, got %.20s", b)
	}
	*f = flexString(n)
	return nil
}

func decodeData(data json.RawMessage, v any) error {
	if len(data) == 0 || string(data) == "null" {
		return errors.New("no data")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

// PeekCode reads the envelope code from the first bytes of a JSON
// response body. ok is false when prefix holds no complete "code" field at
// the top level of an object. The first top-level "code" wins.
func PeekCode(prefix []byte) (code int, ok bool) {
	h := PeekEnvelope(prefix)
	return h.Code, h.CodeOK
}

// EnvelopeHead is what PeekEnvelope reads of an envelope's start.
type EnvelopeHead struct {
	Code   int
	CodeOK bool // Code was read (PeekCode's ok)
	// Message and RequestID (TikTok's id of the request, which its support
	// asks for) are "" when the prefix does not hold them whole.
	Message, RequestID string
}

// PeekEnvelope is PeekCode that also reads the envelope's top-level
// "message" and "request_id" when prefix holds them: before the code, or
// after it and before "data", which TikTok sends last and which is not
// scanned. It runs on every proxied response: the envelope as TikTok
// writes it is read by hand (peekFast), anything else by a json.Decoder.
func PeekEnvelope(prefix []byte) EnvelopeHead {
	if h, ok := peekFast(prefix); ok {
		return h
	}
	return peekDecoded(prefix)
}

// peekDecoded is PeekEnvelope by a json.Decoder, for any JSON.
func peekDecoded(prefix []byte) EnvelopeHead {
	var h EnvelopeHead
	dec := json.NewDecoder(bytes.NewReader(prefix))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return h
	}
	// Each iteration consumes at least one value of a finite prefix.
	for dec.More() && !(h.CodeOK && h.Message != "" && h.RequestID != "") {
		key, err := dec.Token()
		if err != nil {
			break
		}
		switch {
		case key == "code" && !h.CodeOK:
			if h.Code, h.CodeOK = peekNumber(dec, prefix); !h.CodeOK {
				h.Code = 0
				return h
			}
		case (key == "message" && h.Message == "") || (key == "request_id" && h.RequestID == ""):
			var v any
			if dec.Decode(&v) != nil {
				return h
			}
			str, _ := v.(string)
			if key == "message" {
				h.Message = str
			} else {
				h.RequestID = str
			}
		case key == "data" && h.CodeOK:
			return h
		case !skipValue(dec):
			return h
		}
	}
	return h
}

// peekNumber reads the value after "code". A number at the very end of a
// truncated prefix may itself be truncated (40100 cut to 401), so it
// counts only when a ',' or '}' follows it.
func peekNumber(dec *json.Decoder, prefix []byte) (int, bool) {
	t, err := dec.Token()
	if err != nil {
		return 0, false
	}
	n, isNum := t.(json.Number)
	if !isNum {
		return 0, false
	}
	rest := bytes.TrimLeft(prefix[dec.InputOffset():], " \t\r\n")
	if len(rest) == 0 || (rest[0] != ',' && rest[0] != '}') {
		return 0, false
	}
	code, err := strconv.Atoi(string(n))
	if err != nil {
		return 0, false
	}
	return code, true
}

// skipValue consumes one value, nested or not.
func skipValue(dec *json.Decoder) bool {
	depth := 0
	for {
		t, err := dec.Token()
		if err != nil {
			return false
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return true
		}
	}
}
