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
	"os"
	"strings"
	"sync"
	"time"
)

// maxAdvertiserField bounds a multipart advertiser_id value; a 19-digit id
// with whitespace fits many times over.
const maxAdvertiserField = 256

// selection is what credential selection learned about a request.
type selection struct {
	credential  string
	advertisers []string // every advertiser id the request names, in order seen
	// replay is the whole buffered body when it was read completely (nil
	// with hasBody false means there was no body); the request can then be
	// sent a second time.
	replay  []byte
	hasBody bool
	// body replaces the request body when selection consumed part of it:
	// the consumed prefix followed by the rest of the stream, unchanged.
	body io.ReadCloser
}

// replayable reports whether the request can be sent again (40105 retry).
func (s *selection) replayable() bool { return !s.hasBody || s.replay != nil }

// selectCredential applies SPEC's three rules: header, advertisers named by
// the request, default. It may read (a bounded prefix of) r.Body; the body to
// forward is then in the returned selection.
func (p *Proxy) selectCredential(r *http.Request) (*selection, *Error) {
	sel := &selection{hasBody: r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0}

	if names := r.Header.Values(p.credentialHeader); len(names) > 0 {
		if len(names) > 1 {
			return nil, newError(CodeMalformed, http.StatusBadRequest,
				"%s is sent %d times: send it once, naming one credential", p.credentialHeader, len(names))
		}
		name := strings.TrimSpace(names[0])
		if !p.known(name) {
			return nil, newError(CodeUnknownCredential, http.StatusBadRequest,
				"%s %q names no configured credential; configured: %s",
				p.credentialHeader, name, strings.Join(p.names, ", "))
		}
		sel.credential = name
		if err := p.bufferJSON(r, sel, false, false); err != nil {
			return nil, err
		}
		return sel, nil
	}

	ids, perr := queryAdvertisers(r.URL.Query())
	if perr != nil {
		return nil, perr
	}
	queryCred, perr := p.credentialOf(ids)
	if perr != nil {
		return nil, perr
	}
	if perr := p.inspectBody(r, sel, queryCred != ""); perr != nil {
		return nil, perr
	}
	ids = append(ids, sel.advertisers...)
	sel.advertisers = ids
	cred, perr := p.credentialOf(ids)
	if perr != nil {
		return nil, perr
	}
	if cred == "" {
		cred = p.defaultCred
	}
	if cred == "" {
		if len(ids) > 0 {
			return nil, newError(CodeNoCredential, http.StatusBadRequest,
				"no credential for advertiser %s and no default credential: add it to a credential's advertiser_ids, authorize it, or set %s",
				strings.Join(ids, ", "), p.credentialHeader)
		}
		return nil, newError(CodeNoCredential, http.StatusBadRequest,
			"the request names no advertiser and there is no default credential: set %s or mark a credential default: true",
			p.credentialHeader)
	}
	sel.credential = cred
	return sel, nil
}

// credentialOf maps advertiser ids to their one credential; "" when none of
// them is known (unknown ones fall through to the default).
func (p *Proxy) credentialOf(ids []string) (string, *Error) {
	cred, first := "", ""
	for _, id := range ids {
		c, ok := p.tokens.CredentialFor(id)
		if !ok {
			continue
		}
		if cred != "" && c != cred {
			return "", newError(CodeNoCredential, http.StatusBadRequest,
				"advertisers %s and %s belong to different credentials (%q, %q): split the request",
				first, id, cred, c)
		}
		cred, first = c, id
	}
	return cred, nil
}

// queryAdvertisers reads advertiser_id and advertiser_ids (a JSON list) from
// the query.
func queryAdvertisers(q url.Values) ([]string, *Error) {
	var ids []string
	for _, v := range q["advertiser_id"] {
		if v = strings.TrimSpace(v); v != "" {
			ids = append(ids, v)
		}
	}
	for _, v := range q["advertiser_ids"] {
		if strings.TrimSpace(v) == "" {
			continue
		}
		list, err := idList(json.RawMessage(v))
		if err != nil {
			return nil, newError(CodeMalformed, http.StatusBadRequest,
				"query advertiser_ids must be a JSON list of ids, like [\"7012345678901234567\"]: %v", err)
		}
		ids = append(ids, list...)
	}
	return ids, nil
}

// inspectBody reads advertisers from a JSON or multipart body. named says
// whether the query already names a credential: the body is then only
// checked against it, and a body that cannot be read is left to TikTok.
func (p *Proxy) inspectBody(r *http.Request, sel *selection, named bool) *Error {
	if !sel.hasBody {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	// A bad parameter still yields the media type; only multipart needs
	// one (its boundary), and its absence is caught below.
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		if named {
			return nil
		}
		return newError(CodeMalformed, http.StatusBadRequest,
			"the Content-Type header %q does not parse, so the body cannot be read to find advertiser_id: fix it, or name the credential with %s",
			ct, p.credentialHeader)
	}
	switch mt {
	case "application/json":
		return p.bufferJSON(r, sel, true, !named)
	case "multipart/form-data":
		if params["boundary"] == "" {
			if named {
				return nil
			}
			return newError(CodeMalformed, http.StatusBadRequest,
				"the multipart/form-data Content-Type has no boundary, so the body cannot be read to find advertiser_id: fix it, or name the credential with %s",
				p.credentialHeader)
		}
		return p.inspectMultipart(r, sel, params["boundary"], named)
	}
	return nil
}

// bufferJSON reads an application/json body of at most max_inspect_bytes so
// that it can be replayed, and with parse set reads its advertisers. A body
// over the limit is 90008 when strict is set; otherwise it streams on
// unbuffered (and cannot be replayed).
func (p *Proxy) bufferJSON(r *http.Request, sel *selection, parse, strict bool) *Error {
	if !sel.hasBody {
		return nil
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return nil
	}
	if r.ContentLength > p.maxInspect {
		if strict {
			return p.tooLarge()
		}
		return nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, p.maxInspect+1))
	if err != nil {
		return p.bodyError(err)
	}
	if int64(len(buf)) > p.maxInspect {
		if strict {
			return p.tooLarge()
		}
		sel.body = readCloser{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		return nil
	}
	sel.replay = buf
	if !parse {
		return nil
	}
	ids, err := jsonAdvertisers(buf)
	if err != nil {
		return newError(CodeMalformed, http.StatusBadRequest,
			"the JSON body could not be read to find advertiser_id: %v", err)
	}
	sel.advertisers = ids
	return nil
}

func (p *Proxy) tooLarge() *Error {
	return newError(CodeBodyTooLarge, http.StatusRequestEntityTooLarge,
		"the JSON body is larger than routing.max_inspect_bytes (%d) so its advertiser_id cannot be read: name the credential with %s or put advertiser_id in the query",
		p.maxInspect, p.credentialHeader)
}

// bodyError is a failure reading the client's body. Past the connection's
// read deadline (ServeHTTP sets it at upstream.timeout) it is a 408.
func (p *Proxy) bodyError(err error) *Error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return p.bodyTimeout()
	}
	return newError(CodeMalformed, http.StatusBadRequest, "reading the request body failed: %v", err)
}

func (p *Proxy) bodyTimeout() *Error {
	return newError(CodeMalformed, http.StatusRequestTimeout,
		"the request body did not finish arriving within upstream.timeout (%s); send it faster or raise upstream.timeout for large uploads", p.timeout)
}

// jsonAdvertisers reads advertiser_id and advertiser_ids from a JSON body.
// Ids are kept as the digits written, never converted to floats.
func jsonAdvertisers(body []byte) ([]string, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	if !json.Valid(body) {
		return nil, errors.New("invalid JSON")
	}
	var obj map[string]json.RawMessage
	if bytes.TrimSpace(body)[0] != '{' || json.Unmarshal(body, &obj) != nil {
		return nil, nil
	}
	var ids []string
	if raw, ok := obj["advertiser_id"]; ok {
		id, err := oneID(raw)
		if err != nil {
			return nil, err
		}
		if id != "" {
			ids = append(ids, id)
		}
	}
	if raw, ok := obj["advertiser_ids"]; ok {
		list, err := idList(raw)
		if err != nil {
			return nil, err
		}
		ids = append(ids, list...)
	}
	return ids, nil
}

// idList reads a JSON list of ids (numbers or strings); null is empty.
func idList(raw json.RawMessage) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var items []any
	if err := dec.Decode(&items); err != nil {
		return nil, errors.New("advertiser_ids is not a JSON list")
	}
	if dec.More() {
		return nil, errors.New("advertiser_ids has data after the list")
	}
	var ids []string
	for _, it := range items {
		id, err := idValue(it)
		if err != nil {
			return nil, err
		}
		if id != "" {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func oneID(raw json.RawMessage) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", errors.New("advertiser_id is not valid JSON")
	}
	return idValue(v)
}

// idValue accepts an integer number or a string; null is no id.
func idValue(v any) (string, error) {
	switch t := v.(type) {
	case nil:
		return "", nil
	case string:
		return strings.TrimSpace(t), nil
	case json.Number:
		if s := t.String(); isDigits(s) {
			return s, nil
		}
		return "", errors.New("advertiser id " + t.String() + " is not an integer")
	default:
		return "", errors.New("an advertiser id must be a string or an integer")
	}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// inspectMultipart looks for the advertiser_id form field in the first
// max_inspect_bytes of a multipart body, stopping at the first file part so
// an upload is never held in memory. Whatever it read is replayed in front
// of the rest of the stream, so the body is forwarded unchanged.
//
// When the field is not found before a file part or within the limit, the
// upload may still name another credential's advertiser further on, so it
// is refused (90008) like an oversized JSON body, unless the query names
// the credential or only one is configured. A body that is not multipart
// at all is 90011 unless the query names the credential.
func (p *Proxy) inspectMultipart(r *http.Request, sel *selection, boundary string, named bool) *Error {
	var prefix bytes.Buffer
	src := &watchedBody{ReadCloser: r.Body}
	limited := &io.LimitedReader{R: src, N: p.maxInspect}
	scan, err := scanMultipart(multipart.NewReader(io.TeeReader(limited, &prefix), boundary), sel)
	sel.body = readCloser{io.MultiReader(&prefix, r.Body), r.Body}
	if _, rerr := src.state(); rerr != nil {
		return p.bodyError(rerr)
	}
	if scan == scanBroken && limited.N == 0 {
		scan = scanUndecided
	}
	switch {
	case scan == scanDecided || named:
		return nil
	case scan == scanBroken:
		return newError(CodeMalformed, http.StatusBadRequest,
			"the multipart/form-data body could not be read to find advertiser_id: %v", err)
	case len(p.names) == 1:
		return nil
	}
	return newError(CodeBodyTooLarge, http.StatusRequestEntityTooLarge,
		"the upload's advertiser_id field was not found before its file or within routing.max_inspect_bytes (%d): put the advertiser_id field before the file, or name the credential with %s",
		p.maxInspect, p.credentialHeader)
}

// Outcomes of scanMultipart.
const (
	scanDecided   = iota // advertiser_id read, or the whole body seen without one
	scanUndecided        // a file part came first: the field may follow it
	scanBroken           // the body is not valid multipart (or was cut by the limit)
)

// scanMultipart reads parts up to the first file part or advertiser_id
// field, adding the id to sel.advertisers. Every iteration consumes a part
// of a prefix bounded by max_inspect_bytes.
func scanMultipart(mr *multipart.Reader, sel *selection) (int, error) {
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			return scanDecided, nil
		}
		if err != nil {
			return scanBroken, err
		}
		if part.FileName() != "" {
			return scanUndecided, nil
		}
		if part.FormName() == "advertiser_id" {
			v, err := io.ReadAll(io.LimitReader(part, maxAdvertiserField))
			if err != nil {
				return scanBroken, err
			}
			if id := strings.TrimSpace(string(v)); id != "" {
				sel.advertisers = append(sel.advertisers, id)
			}
			return scanDecided, nil
		}
		if _, err := io.Copy(io.Discard, part); err != nil {
			return scanBroken, err
		}
	}
}

// watchedBody remembers how reading a body goes: whether a Read is waiting
// for data right now, and the first error other than EOF with the time the
// Read that returned it began. The transport reads a request body on its
// own goroutine, hence the lock.
type watchedBody struct {
	io.ReadCloser

	mu      sync.Mutex
	reading bool
	err     error
	errRead time.Time // when the Read that failed with err began
}

func (b *watchedBody) Read(p []byte) (int, error) {
	began := time.Now()
	b.mu.Lock()
	b.reading = true
	b.mu.Unlock()
	n, err := b.ReadCloser.Read(p)
	b.mu.Lock()
	b.reading = false
	if err != nil && err != io.EOF && b.err == nil {
		b.err, b.errRead = err, began
	}
	b.mu.Unlock()
	return n, err
}

// state reports whether a Read is waiting for data and the first read
// error; a nil body is neither.
func (b *watchedBody) state() (reading bool, err error) {
	if b == nil {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reading, b.err
}

// failedReadBegan is when the Read that returned the first error began
// (zero without an error).
func (b *watchedBody) failedReadBegan() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.errRead
}

// readCloser reads from Reader and closes Closer (the original body).
type readCloser struct {
	io.Reader
	io.Closer
}
