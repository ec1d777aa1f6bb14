package tiktoksim

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Envelope codes the simulator answers with.
const (
	codeOK              = 0
	codeParam           = 40002
	codeAuthParams      = 40101
	codeTokenExpired    = 40102
	codeRefreshExpired  = 40103
	codeTokenEmpty      = 40104
	codeTokenInvalid    = 40105
	codeTokenAdvertiser = 40106
	codeRefreshInvalid  = 40107
	codeInvalidAuthCode = 40110
	codeAppMissing      = 40113
)

// maxJSONBody bounds JSON request bodies the simulator parses.
const maxJSONBody = 1 << 20

// maxDrain bounds how much of an unread body is hashed after the answer.
const maxDrain = 64 << 20

const apiPrefix = "/open_api/v1.3/"

// Request is one recorded request to /open_api/.
type Request struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Query     string    `json:"query"`
	// AccessToken is the Access-Token header TikTok received.
	AccessToken string `json:"access_token"`
	// TokenKnown is true when AccessToken was issued by the simulator; a
	// non-empty unknown one is, for instance, a client's own token leaking.
	TokenKnown bool `json:"token_known"`
	// AppID is the app of the token, or of a token endpoint call.
	AppID         string   `json:"app_id"`
	AdvertiserIDs []string `json:"advertiser_ids"`
	// CredentialHeader is X-TikTok-Credential as received: a proxy must
	// strip it, so anything but "" is a leak.
	CredentialHeader string      `json:"credential_header"`
	Authorization    string      `json:"authorization"`
	Header           http.Header `json:"header"`
	BodyBytes        int64       `json:"body_bytes"`
	BodySHA256       string      `json:"body_sha256"`
	// Code is the envelope code answered (0 also when none was written).
	Code       int `json:"code"`
	HTTPStatus int `json:"http_status"`
	// Fault names the fault knob that answered: "code", "http_status",
	// "redirect", "body", "reset", or "latency" or "hold" (then the request
	// was also served; a held one shows in the in-flight list once served),
	// or "quota" when a Quota answered.
	Fault string `json:"fault,omitempty"`
	// ResponseBytes is how many bytes of response body were written, so a
	// test can tell a stream cut short from one served in full.
	ResponseBytes int64 `json:"response_bytes"`
	// ClientGone is true when the peer went away (its request context was
	// cancelled) before the answer was complete: during a stream or an
	// injected latency. It shows that a proxy cancelled its upstream call.
	ClientGone bool `json:"client_gone"`
	// Stray is true for a request that carried an Access-Token to a path
	// the API does not serve (outside /open_api/, or one the router would
	// redirect, like /open_api/../sim/): no API call, but a token that
	// reached TikTok's side all the same.
	Stray bool `json:"stray,omitempty"`
}

// call is one request to /open_api/ being served.
type call struct {
	s     *Server
	w     *countingWriter
	r     *http.Request
	rec   *Request
	tok   *token // the Access-Token's entry, nil when unknown
	wrote bool
}

type endpoint struct {
	method string
	token  bool // an OAuth token endpoint, for Fault.Scope
	serve  func(*call)
}

var endpoints = map[string]endpoint{
	apiPrefix + "oauth2/access_token/":          {http.MethodPost, true, func(c *call) { c.exchange(KindAdvertiser) }},
	apiPrefix + "oauth2/refresh_token/":         {http.MethodPost, true, func(c *call) { c.refresh(KindAdvertiser) }},
	apiPrefix + "tt_user/oauth2/token/":         {http.MethodPost, true, func(c *call) { c.exchange(KindTikTokAccount) }},
	apiPrefix + "tt_user/oauth2/refresh_token/": {http.MethodPost, true, func(c *call) { c.refresh(KindTikTokAccount) }},
	apiPrefix + "oauth2/revoke_token/":          {http.MethodPost, true, (*call).revokeToken},
	apiPrefix + "oauth2/advertiser/get/":        {http.MethodGet, false, (*call).advertiserGet},
	apiPrefix + "advertiser/info/":              {http.MethodGet, false, (*call).advertiserInfo},
	apiPrefix + "campaign/get/":                 {http.MethodGet, false, (*call).campaignGet},
	apiPrefix + "campaign/create/":              {http.MethodPost, false, (*call).campaignCreate},
	apiPrefix + "report/integrated/get/":        {http.MethodGet, false, (*call).reportGet},
	apiPrefix + "file/image/ad/upload/":         {http.MethodPost, false, (*call).imageUpload},
	apiPrefix + "sim/report/download/":          {http.MethodGet, false, (*call).download},
}

// countingWriter counts the response body bytes written through it.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (Flush, Hijack).
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// hashingBody hashes what the handler reads of the request body.
type hashingBody struct {
	io.ReadCloser
	h hash.Hash
	n int64
}

func (b *hashingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.h.Write(p[:n])
	b.n += int64(n)
	return n, err
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	rid := s.newRequestID()
	w.Header().Set("X-Tt-Logid", rid)
	body := &hashingBody{ReadCloser: r.Body, h: sha256.New()}
	r.Body = body
	rec := &Request{
		Time: s.clock(), RequestID: rid, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		AccessToken:      r.Header.Get("Access-Token"),
		CredentialHeader: r.Header.Get("X-TikTok-Credential"),
		Authorization:    r.Header.Get("Authorization"),
		Header:           r.Header.Clone(),
		HTTPStatus:       http.StatusOK,
	}
	cw := &countingWriter{ResponseWriter: w}
	w = cw
	c := &call{s: s, w: cw, r: r, rec: rec}
	ep, known := endpoints[r.URL.Path]
	s.mu.Lock()
	if t, ok := s.access[rec.AccessToken]; ok {
		c.tok = t
		rec.TokenKnown = true
		rec.AppID = t.g.appID
		if !ep.token {
			s.statsLocked(t.g.appID).APICalls++
			s.countSecondLocked(t.g.appID, rec.Time)
		}
	}
	s.inflight[rid] = *rec
	s.mu.Unlock()
	defer func() {
		rec.ResponseBytes = cw.n
		// Hash the whole body even when the handler stopped early, so
		// tests can compare it with what they sent.
		_, _ = io.CopyN(io.Discard, body, maxDrain)
		rec.BodyBytes = body.n
		rec.BodySHA256 = hex.EncodeToString(body.h.Sum(nil))
		s.record(*rec)
	}()

	switch {
	case known && r.Method != ep.method:
		rec.HTTPStatus = http.StatusMethodNotAllowed
		w.Header().Set("Allow", ep.method)
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	case !known && (!strings.HasPrefix(r.URL.Path, apiPrefix) || !strings.HasSuffix(r.URL.Path, "/")):
		rec.HTTPStatus = http.StatusNotFound
		http.NotFound(w, r)
		return
	}
	hold, ok := c.applyFault(ep.token)
	if !ok {
		return
	}
	if !c.applyQuota(ep.token) {
		return
	}
	var held *heldAnswer
	sent := cw.ResponseWriter
	if hold > 0 {
		held = &heldAnswer{header: http.Header{}}
		cw.ResponseWriter = held
	}
	if known {
		ep.serve(c)
	} else {
		c.generic()
	}
	if !c.wrote {
		c.fail(50000, "simulator: no answer")
	}
	if held != nil {
		cw.ResponseWriter, cw.n = sent, 0
		c.release(held, hold)
	}
}

// heldAnswer is an answer served but not yet sent (Fault.Hold).
type heldAnswer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldAnswer) Header() http.Header { return h.header }

func (h *heldAnswer) Write(p []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return h.body.Write(p)
}

func (h *heldAnswer) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

// release sends a held answer after hold, unless the client is gone by
// then: what the call did (a rotation) stands, and the client never hears.
func (c *call) release(h *heldAnswer, hold time.Duration) {
	c.s.updateInflight(*c.rec)
	t := time.NewTimer(hold)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.r.Context().Done():
		c.rec.ClientGone = true
		return
	case <-c.s.closeCtx.Done():
		return
	}
	for k, v := range h.header {
		c.w.Header()[k] = v
	}
	c.w.WriteHeader(cmp.Or(h.status, http.StatusOK))
	_, _ = c.w.Write(h.body.Bytes())
}

// reply writes an envelope.
func (c *call) reply(code int, msg string, data any) {
	if c.wrote {
		return
	}
	c.wrote = true
	c.rec.Code = code
	if data == nil {
		data = struct{}{}
	}
	env := struct {
		Code      int    `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
		Data      any    `json:"data"`
	}{code, msg, c.rec.RequestID, data}
	c.w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(c.w).Encode(env)
}

func (c *call) ok(data any) { c.reply(codeOK, "OK", data) }

func (c *call) fail(code int, msg string) { c.reply(code, msg, nil) }

// id writes an advertiser id as the Options ask.
func (s *Server) id(id string) any {
	if s.numeric && id != "" && strings.Trim(id, "0123456789") == "" {
		return json.Number(id)
	}
	return id
}

func (s *Server) ids(ids []string) []any {
	out := make([]any, 0, len(ids))
	for _, id := range ids {
		out = append(out, s.id(id))
	}
	return out
}

// auth checks the Access-Token against the advertisers the request names.
func (c *call) auth(advertiserIDs ...string) (*grant, bool) {
	c.rec.AdvertiserIDs = append(c.rec.AdvertiserIDs, advertiserIDs...)
	if c.rec.AccessToken == "" {
		c.fail(codeTokenEmpty, "Access token is null, you should set it in http header with key Access-Token.")
		return nil, false
	}
	if c.tok == nil {
		c.fail(codeTokenInvalid, "Access token is incorrect or has been revoked.")
		return nil, false
	}
	c.s.mu.Lock()
	g, revoked, expires := c.tok.g, c.tok.g.revoked, c.tok.expires
	now := c.s.nowLocked()
	c.s.mu.Unlock()
	switch {
	case revoked:
		c.fail(codeTokenInvalid, "Access token is incorrect or has been revoked.")
		return nil, false
	case !expires.IsZero() && !now.Before(expires):
		c.fail(codeTokenExpired, "Access token has expired.")
		return nil, false
	}
	for _, id := range advertiserIDs {
		if !slices.ContainsFunc(g.advertisers, func(a Advertiser) bool { return a.ID == id }) {
			c.fail(codeTokenAdvertiser, "Invalid core user: the access token is not authorized for advertiser "+id+".")
			return nil, false
		}
	}
	return g, true
}

// idList parses a JSON list of ids, strings or numbers.
func idList(s string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var raw []any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("advertiser_ids must be a JSON list: %w", err)
	}
	out := make([]string, 0, len(raw))
	for _, v := range raw {
		id, ok := idString(v)
		if !ok {
			return nil, errors.New("advertiser_ids must hold strings or numbers")
		}
		out = append(out, id)
	}
	return out, nil
}

func idString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, v != ""
	case json.Number:
		return v.String(), true
	}
	return "", false
}

// queryIDs reads advertiser_id or advertiser_ids from the query.
func (c *call) queryIDs() ([]string, bool) {
	q := c.r.URL.Query()
	if id := q.Get("advertiser_id"); id != "" {
		return []string{id}, true
	}
	if list := q.Get("advertiser_ids"); list != "" {
		ids, err := idList(list)
		if err != nil {
			c.fail(codeParam, err.Error())
			return nil, false
		}
		return ids, true
	}
	return nil, true
}

func (c *call) requireIDs(ids []string, name string) bool {
	if len(ids) == 0 {
		c.fail(codeParam, name+": field required")
		return false
	}
	return true
}

func (c *call) advertiserGet() {
	q := c.r.URL.Query()
	appID := q.Get("app_id")
	app, ok := c.s.app(appID)
	if !ok {
		c.fail(codeAppMissing, "app_id does not exist.")
		return
	}
	if !c.s.secretOK(app, q.Get("secret")) {
		c.fail(codeAuthParams, "app_id or secret is invalid.")
		return
	}
	g, ok := c.auth()
	if !ok {
		return
	}
	if g.appID != appID {
		c.fail(codeTokenInvalid, "Access token does not belong to this app.")
		return
	}
	list := make([]any, 0, len(g.advertisers))
	for _, a := range g.advertisers {
		list = append(list, map[string]any{"advertiser_id": c.s.id(a.ID), "advertiser_name": a.Name})
	}
	c.ok(map[string]any{"list": list})
}

func (c *call) advertiserInfo() {
	ids, ok := c.queryIDs()
	if !ok || !c.requireIDs(ids, "advertiser_ids") {
		return
	}
	g, ok := c.auth(ids...)
	if !ok {
		return
	}
	list := make([]any, 0, len(ids))
	for _, id := range ids {
		i := slices.IndexFunc(g.advertisers, func(a Advertiser) bool { return a.ID == id })
		list = append(list, map[string]any{
			"advertiser_id": c.s.id(id), "name": g.advertisers[i].Name,
			"status": "STATUS_ENABLE", "currency": "USD", "timezone": "Etc/GMT",
		})
	}
	c.ok(map[string]any{"list": list})
}

func (c *call) campaignGet() {
	ids, ok := c.queryIDs()
	if !ok || !c.requireIDs(ids, "advertiser_id") {
		return
	}
	if _, ok := c.auth(ids...); !ok {
		return
	}
	list := make([]any, 0, 2)
	for i := range 2 {
		list = append(list, map[string]any{
			"campaign_id":   fmt.Sprintf("18%017d", i+1),
			"campaign_name": fmt.Sprintf("Sim campaign %d", i+1),
			"advertiser_id": c.s.id(ids[0]),
		})
	}
	c.ok(map[string]any{
		"list":      list,
		"page_info": map[string]int{"page": 1, "page_size": 10, "total_number": len(list), "total_page": 1},
	})
}

// jsonBody decodes a JSON object body, keeping numbers exact.
func (c *call) jsonBody() (map[string]any, json.RawMessage, bool) {
	raw, err := io.ReadAll(io.LimitReader(c.r.Body, maxJSONBody))
	if err != nil {
		c.fail(codeParam, "cannot read body")
		return nil, nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		c.fail(codeParam, "body must be a JSON object")
		return nil, nil, false
	}
	return m, raw, true
}

// bodyIDs reads advertiser_id or advertiser_ids from a decoded body.
func bodyIDs(m map[string]any) []string {
	if id, ok := idString(m["advertiser_id"]); ok {
		return []string{id}
	}
	list, _ := m["advertiser_ids"].([]any)
	var out []string
	for _, v := range list {
		if id, ok := idString(v); ok {
			out = append(out, id)
		}
	}
	return out
}

func (c *call) campaignCreate() {
	m, raw, ok := c.jsonBody()
	if !ok {
		return
	}
	id, _ := idString(m["advertiser_id"])
	if !c.requireIDs(slices.DeleteFunc([]string{id}, func(s string) bool { return s == "" }), "advertiser_id") {
		return
	}
	if _, ok := c.auth(id); !ok {
		return
	}
	name, _ := m["campaign_name"].(string)
	c.ok(map[string]any{
		"campaign_id":   fmt.Sprintf("18%017d", 100+c.s.nextSeq()),
		"campaign_name": name,
		"advertiser_id": c.s.id(id),
		"received":      json.RawMessage(raw),
	})
}

func (c *call) reportGet() {
	ids, ok := c.queryIDs()
	if !ok || !c.requireIDs(ids, "advertiser_id") {
		return
	}
	if _, ok := c.auth(ids...); !ok {
		return
	}
	list := make([]any, 0, len(ids))
	for _, id := range ids {
		list = append(list, map[string]any{
			"dimensions": map[string]any{"advertiser_id": c.s.id(id), "stat_time_day": c.s.clock().UTC().Format("2006-01-02 00:00:00")},
			"metrics":    map[string]string{"spend": "12.34", "impressions": "1000", "clicks": "42"},
		})
	}
	c.ok(map[string]any{
		"list":           list,
		"advertiser_ids": c.s.ids(ids),
		"page_info":      map[string]int{"page": 1, "page_size": 10, "total_number": len(list), "total_page": 1},
	})
}

// imageUpload streams the multipart body: the file part is hashed, never
// held in memory.
func (c *call) imageUpload() {
	mr, err := c.r.MultipartReader()
	if err != nil {
		c.fail(codeParam, "body must be multipart/form-data")
		return
	}
	var (
		id, fileName string
		size         int64
		sum          = sha256.New()
		sawFile      bool
	)
	// Each part consumes body bytes, so the loop ends with the body.
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			c.fail(codeParam, "malformed multipart body")
			return
		}
		switch {
		case p.FileName() != "":
			sawFile = true
			fileName = p.FileName()
			n, err := io.Copy(sum, p)
			if err != nil {
				c.fail(codeParam, "malformed multipart body")
				return
			}
			size += n
		case p.FormName() == "advertiser_id":
			b, _ := io.ReadAll(io.LimitReader(p, 64))
			id = strings.TrimSpace(string(b))
		}
	}
	if id == "" {
		c.fail(codeParam, "advertiser_id: field required")
		return
	}
	if !sawFile {
		c.fail(codeParam, "image_file: field required")
		return
	}
	if _, ok := c.auth(id); !ok {
		return
	}
	c.ok(map[string]any{
		"image_id":      fmt.Sprintf("ad-site-i18n-sg/%d", c.s.nextSeq()),
		"advertiser_id": c.s.id(id),
		"file_name":     fileName,
		"size":          size,
		"sha256":        hex.EncodeToString(sum.Sum(nil)),
	})
}

// downloadChunk is how much is written between flushes.
const downloadChunk = 32 << 10

func (c *call) download() {
	ids, ok := c.queryIDs()
	if !ok || !c.requireIDs(ids, "advertiser_id") {
		return
	}
	size, err := strconv.ParseInt(c.r.URL.Query().Get("size"), 10, 64)
	if err != nil || size < 0 {
		c.fail(codeParam, "size: a number of bytes is required")
		return
	}
	if _, ok := c.auth(ids...); !ok {
		return
	}
	c.wrote = true
	c.w.Header().Set("Content-Type", "text/csv")
	c.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(c.w)
	// Flushing before the first byte commits to chunked encoding, so even
	// a small download has no Content-Length.
	_ = rc.Flush()
	src := NewReportReader(size)
	buf := make([]byte, downloadChunk)
	// Bounded: each round consumes up to downloadChunk of size bytes.
	for {
		if c.r.Context().Err() != nil {
			c.rec.ClientGone = true
			return
		}
		if c.s.closeCtx.Err() != nil {
			return
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			_, err := c.w.Write(buf[:n])
			if err == nil {
				err = rc.Flush()
			}
			if err != nil {
				// A write fails only once the connection is gone.
				c.rec.ClientGone = true
				return
			}
		}
		if rerr != nil {
			return
		}
	}
}

// generic serves any other API path: it checks the token against the
// advertisers named in the query or a JSON body and echoes them.
func (c *call) generic() {
	ids, ok := c.queryIDs()
	if !ok {
		return
	}
	var received json.RawMessage
	if mt, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type")); mt == "application/json" && c.r.ContentLength != 0 && c.r.Method != http.MethodGet {
		m, raw, ok := c.jsonBody()
		if !ok {
			return
		}
		ids = append(ids, bodyIDs(m)...)
		received = raw
	}
	if _, ok := c.auth(ids...); !ok {
		return
	}
	c.ok(map[string]any{
		"path":           c.r.URL.Path,
		"method":         c.r.Method,
		"advertiser_ids": c.s.ids(ids),
		"received":       received,
	})
}

func (s *Server) nextSeq() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.seq
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inflight, r.RequestID)
	if len(s.recorded) < maxRecorded {
		s.recorded = append(s.recorded, r)
		return
	}
	s.recorded[s.recNext] = r
	s.recNext = (s.recNext + 1) % maxRecorded
}

// Requests returns the recorded requests to /open_api/, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, 0, len(s.recorded))
	out = append(out, s.recorded[s.recNext:]...)
	return append(out, s.recorded[:s.recNext]...)
}

// updateInflight replaces the in-flight snapshot of a request still being
// served, so /sim/inflight shows, for instance, that it waits on a latency.
func (s *Server) updateInflight(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.inflight[r.RequestID]; ok {
		s.inflight[r.RequestID] = r
	}
}

// Inflight returns the requests to /open_api/ being served now, oldest
// first, as known so far (no body digest, no answer yet).
func (s *Server) Inflight() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, 0, len(s.inflight))
	for _, r := range s.inflight {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Request) int { return a.Time.Compare(b.Time) })
	return out
}

// ClearRequests forgets the recorded requests.
func (s *Server) ClearRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recorded = nil
	s.recNext = 0
}

// applyQuota counts an API call against the quotas and answers it with the
// limit's code when one is exceeded; it reports whether to go on. The
// advertisers of an advertiser quota are those the query names.
func (c *call) applyQuota(tokenEndpoint bool) bool {
	if tokenEndpoint || c.tok == nil {
		return true
	}
	var advertisers []string
	q := c.r.URL.Query()
	if id := q.Get("advertiser_id"); id != "" {
		advertisers = []string{id}
	} else if ids, err := idList(q.Get("advertiser_ids")); err == nil {
		advertisers = ids
	}
	c.s.mu.Lock()
	// The arrival time, as the per-second counter has it: both count the
	// call in the same second.
	code, msg := c.s.takeQuotaLocked(c.rec.Time, c.tok.g.appID, c.r.URL.Path, advertisers)
	c.s.mu.Unlock()
	if code == 0 {
		return true
	}
	c.rec.Fault = "quota"
	c.fail(code, msg)
	return false
}

// applyFault runs the first matching fault; serve false means it answered,
// and hold is how long to hold the answer once served (Fault.Hold).
func (c *call) applyFault(tokenEndpoint bool) (hold time.Duration, serve bool) {
	f, ok := c.s.takeFault(c.r.URL.Path, c.r.Header.Get("Access-Token"), tokenEndpoint)
	if !ok {
		return 0, true
	}
	if f.Latency > 0 {
		c.rec.Fault = "latency"
		c.s.updateInflight(*c.rec)
		t := time.NewTimer(f.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.r.Context().Done():
			c.rec.ClientGone = true
			c.rec.HTTPStatus = 0
			return 0, false
		case <-c.s.closeCtx.Done():
			return 0, false
		}
	}
	switch {
	case f.Reset:
		c.rec.Fault = "reset"
		c.rec.HTTPStatus = 0
		c.wrote = true
		resetConn(c.w)
		return 0, false
	case f.HTTPStatus != 0:
		c.rec.Fault = "http_status"
		c.rec.HTTPStatus = f.HTTPStatus
		c.wrote = true
		http.Error(c.w, fmt.Sprintf("%d simulated fault", f.HTTPStatus), f.HTTPStatus)
		return 0, false
	case f.Redirect != "":
		c.rec.Fault = "redirect"
		c.rec.HTTPStatus = http.StatusTemporaryRedirect
		c.wrote = true
		http.Redirect(c.w, c.r, f.Redirect, http.StatusTemporaryRedirect)
		return 0, false
	case f.Body != "":
		c.rec.Fault = "body"
		c.wrote = true
		_, _ = io.WriteString(c.w, f.Body)
		return 0, false
	case f.Code != 0:
		c.rec.Fault = "code"
		msg := f.Message
		if msg == "" {
			msg = fmt.Sprintf("simulated fault: code %d", f.Code)
		}
		c.fail(f.Code, msg)
		return 0, false
	}
	if f.Hold > 0 {
		c.rec.Fault = "hold"
	}
	return f.Hold, true
}

// resetConn drops the connection with a TCP RST, as a crashing TikTok
// front end would.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
