package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// How a request's credential was picked (selection.by, the log's
// selected_by): SPEC's three rules.
const (
	selectedByHeader     = "header"
	selectedByAdvertiser = "advertiser"
	selectedByDefault    = "default"
)

// selection is what credential selection learned about a request.
type selection struct {
	credential  string
	by          string   // selectedByHeader, selectedByAdvertiser or selectedByDefault
	advertisers []string // every advertiser id the request names, in order seen
	// picked are the advertisers that picked the credential (rule 2):
	// those of advertisers known to belong to it.
	picked []string
	// replay is the whole buffered body when it was read completely (nil
	// with hasBody false means there was no body); the request can then be
	// sent a second time.
	replay  []byte
	hasBody bool
	// body replaces the request body when selection consumed part of it:
	// the consumed prefix followed by the rest of the stream, unchanged.
	body io.ReadCloser
	// verify is the boundary of a multipart body whose parts beyond the
	// inspected prefix are checked as they stream on (verifiedBody).
	verify string
}

// replayable reports whether the request can be sent again (40105 retry).
func (s *selection) replayable() bool { return !s.hasBody || s.replay != nil }

// selectCredential applies SPEC's three rules: header, advertisers named by
// the request, default. It may read (a bounded prefix of) r.Body; the body to
// forward is then in the returned selection.
func (c *Core) selectCredential(r *http.Request) (*selection, *Error) {
	sel := &selection{hasBody: r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0}
	// A query Go cannot parse whole (over 10,000 parameters, a ';', a bad
	// escape) would be read in part here and rewritten or dropped on the
	// way out, while TikTok reads it whole: refused before anything else.
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, newError(CodeMalformed, http.StatusBadRequest,
			"the query cannot be read whole (%v), so it would not reach TikTok as sent: fix the query (escape ';' and '%%' as %%3B and %%25)", err)
	}

	for name := range r.Header {
		// "X_TikTok_Credential" is not read (and is stripped), so a script
		// meaning to pick a credential with it would silently spend
		// through another.
		if name != c.credentialKey && sameHeaderName(name, c.credentialHeader) {
			return nil, newError(CodeMalformed, http.StatusBadRequest,
				"the header %q is not read as %s: send the credential's name as %s", name, c.credentialHeader, c.credentialHeader)
		}
	}
	if names := r.Header[c.credentialKey]; len(names) > 0 {
		if len(names) > 1 {
			return nil, newError(CodeMalformed, http.StatusBadRequest,
				"%s is sent %d times: send it once, naming one credential", c.credentialHeader, len(names))
		}
		name := strings.TrimSpace(names[0])
		if !c.known(name) {
			// The configured names are the operator's to list, not a
			// client's: the message names only what the client sent.
			return nil, newError(CodeUnknownCredential, http.StatusBadRequest,
				"unknown credential %q in %s", name, c.credentialHeader)
		}
		sel.credential, sel.by = name, selectedByHeader
		if err := c.bufferReplay(r, sel); err != nil {
			return nil, err
		}
		return sel, nil
	}

	ids, err := fieldAdvertisers(query)
	if err != nil {
		return nil, newError(CodeMalformed, http.StatusBadRequest, "query %v", err)
	}
	queryCred, perr := c.credentialOf(ids)
	if perr != nil {
		return nil, perr
	}
	if perr := c.inspectBody(r, sel, queryCred != ""); perr != nil {
		return nil, perr
	}
	ids = append(ids, sel.advertisers...)
	sel.advertisers = ids
	cred, perr := c.credentialOf(ids)
	if perr != nil {
		return nil, perr
	}
	sel.by = selectedByAdvertiser
	if cred == "" {
		cred, sel.by = c.defaultCred, selectedByDefault
	} else {
		sel.picked = c.pickedBy(ids, cred)
	}
	if cred == "" {
		if len(ids) > 0 {
			return nil, newError(CodeNoCredential, http.StatusBadRequest,
				"no credential for advertiser %s and no default credential: add it to a credential's advertiser_ids, authorize it, or set %s",
				strings.Join(ids, ", "), c.credentialHeader)
		}
		return nil, newError(CodeNoCredential, http.StatusBadRequest,
			"the request names no advertiser and there is no default credential: set %s or mark a credential default: true",
			c.credentialHeader)
	}
	sel.credential = cred
	if sel.verify != "" {
		sel.body = c.verifiedBody(sel.body, sel.verify, cred)
	}
	return sel, nil
}

// credentialOf maps advertiser ids to their one credential; "" when none of
// them is known (unknown ones fall through to the default). An advertiser
// several credentials claim and none owns is 90001: the default is no
// likelier to be meant than any of them.
func (c *Core) credentialOf(ids []string) (string, *Error) {
	cred, first := "", ""
	for _, id := range ids {
		owner, ok := c.tokens.CredentialFor(id)
		if !ok {
			if claimants := c.tokens.Claimants(id); len(claimants) > 1 {
				return "", newError(CodeNoCredential, http.StatusBadRequest,
					"advertiser %s is granted to credentials %s and in none's advertiser_ids, so the proxy cannot tell which one is meant: add it to one credential's advertiser_ids in config, or name the credential with %s",
					id, strings.Join(claimants, " and "), c.credentialHeader)
			}
			continue
		}
		if cred != "" && owner != cred {
			return "", newError(CodeNoCredential, http.StatusBadRequest,
				"advertisers %s and %s belong to different credentials (%q, %q): split the request",
				first, id, cred, owner)
		}
		cred, first = owner, id
	}
	return cred, nil
}

// pickedBy returns the ids that belong to cred: ids itself, uncopied,
// when all of them do (the usual request), else the known ones.
func (c *Core) pickedBy(ids []string, cred string) []string {
	var picked []string
	for i, id := range ids {
		if owner, ok := c.tokens.CredentialFor(id); ok && owner == cred {
			if picked != nil {
				picked = append(picked, id)
			}
			continue
		}
		if picked == nil {
			picked = append(make([]string, 0, len(ids)-1), ids[:i]...)
		}
	}
	if picked == nil {
		return ids
	}
	return picked
}

// fieldAdvertisers reads advertiser_id and advertiser_ids (a JSON list)
// from a query or form. An empty value names no advertiser; any other must
// be a canonical id (canonicalID).
func fieldAdvertisers(q url.Values) ([]string, error) {
	var ids []string
	for _, v := range q["advertiser_id"] {
		if v == "" {
			continue
		}
		if err := canonicalID(v); err != nil {
			return nil, err
		}
		ids = append(ids, v)
	}
	for _, v := range q["advertiser_ids"] {
		if v == "" {
			continue
		}
		list, err := idList(json.RawMessage(v))
		if err != nil {
			return nil, fmt.Errorf("advertiser_ids must be a JSON list of ids, like [\"7012345678901234567\"]: %w", err)
		}
		ids = append(ids, list...)
	}
	return ids, nil
}

// inspectBody reads the advertisers a body names, in every form TikTok
// could read one: multipart fields, form fields, and JSON (an
// application/json body, or any other that starts with '{', whatever its
// Content-Type says). A body that cannot be read the way TikTok would is
// 90011. named says whether the query already names a credential: the
// body is then only checked against it, and one that does not parse is
// left to TikTok, which sees the named credential's token.
func (c *Core) inspectBody(r *http.Request, sel *selection, named bool) *Error {
	if !sel.hasBody {
		return nil
	}
	unreadable := func(format string, args ...any) *Error {
		if named {
			return nil
		}
		return newError(CodeMalformed, http.StatusBadRequest, format, args...)
	}
	cts := r.Header.Values("Content-Type")
	if len(cts) > 1 {
		// Unlike a body that does not parse, which TikTok cannot read
		// either, each reading of this one may find other advertisers.
		return newError(CodeMalformed, http.StatusBadRequest, "the Content-Type header is sent %d times, so the body cannot be read to find advertiser_id the way TikTok would: send it once, or name the credential with %s",
			len(cts), c.credentialHeader)
	}
	if ce := r.Header.Values("Content-Encoding"); len(ce) > 1 || (len(ce) == 1 && !strings.EqualFold(strings.TrimSpace(ce[0]), "identity")) {
		return unreadable("compressed bodies cannot be inspected; name the credential with %s or advertiser_id in the query", c.credentialHeader)
	}
	var mt string
	var params map[string]string
	switch {
	case len(cts) == 1 && isPlainJSON(cts[0]):
		// TikTok's own forms, known without mime.ParseMediaType, which
		// allocates its parameters' map.
		mt = jsonType
	case len(cts) == 1 && strings.TrimSpace(cts[0]) != "":
		// A bad parameter still yields the media type; only multipart
		// needs one (its boundary), and its absence is caught below.
		var err error
		mt, params, err = mime.ParseMediaType(cts[0])
		if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
			if perr := unreadable("the Content-Type header %q does not parse, so the body cannot be read to find advertiser_id: fix it, or name the credential with %s",
				cts[0], c.credentialHeader); perr != nil {
				return perr
			}
			// Named by the query: read like a body without Content-Type,
			// as JSON when it starts with '{', since TikTok may.
			mt = ""
		}
	}
	// Every multipart subtype (mixed, related, ...; ParseMediaType
	// lowercases) is read like form-data: servers find an advertiser_id
	// part in any of them.
	if strings.HasPrefix(mt, "multipart/") {
		if params["boundary"] == "" {
			return unreadable("the %s Content-Type has no boundary, so the body cannot be read to find advertiser_id: fix it, or name the credential with %s",
				mt, c.credentialHeader)
		}
		return c.inspectMultipart(r, sel, params["boundary"], named)
	}
	return c.inspectFields(r, sel, mt == "application/json", mt == "application/x-www-form-urlencoded", !named)
}

// inspectFields reads the advertisers of a body that is not multipart: as
// JSON when isJSON or when it starts with '{', as form fields when isForm.
// Such a body is held whole (up to max_inspect_bytes) and can be replayed;
// a larger one is 90008 when strict, else it streams on unread. A body that
// is neither streams on after its first bytes.
func (c *Core) inspectFields(r *http.Request, sel *selection, isJSON, isForm, strict bool) *Error {
	prefix, first, err := leadingByte(r.Body, c.maxInspect)
	if err != nil {
		return c.bodyError(err)
	}
	if first == 0 && int64(len(prefix)) >= c.maxInspect && strict {
		// Nothing but whitespace within the limit: JSON may follow.
		return c.tooLarge()
	}
	if !isJSON && !isForm && first != '{' {
		sel.body = readCloser{io.MultiReader(bytes.NewReader(prefix), r.Body), r.Body}
		return nil
	}
	buf, perr := c.buffer(r, sel, prefix, strict)
	if perr != nil || buf == nil {
		return perr
	}
	if isJSON || first == '{' {
		ids, err := jsonAdvertisers(buf)
		if err != nil {
			return newError(CodeMalformed, http.StatusBadRequest,
				"the JSON body could not be read to find advertiser_id: %v", err)
		}
		sel.advertisers = append(sel.advertisers, ids...)
	}
	if isForm {
		form, err := url.ParseQuery(string(buf))
		if err == nil {
			var ids []string
			ids, err = fieldAdvertisers(form)
			sel.advertisers = append(sel.advertisers, ids...)
		}
		if err != nil {
			return newError(CodeMalformed, http.StatusBadRequest,
				"the form body could not be read to find advertiser_id: %v", err)
		}
	}
	return nil
}

const bom = "\ufeff"

// jsonLead is what may come before a JSON body's first value: whitespace,
// and a byte order mark, which lenient parsers skip.
const jsonLead = " \t\r\n" + bom

// leadingByte reads body up to its first byte that is not JSON whitespace
// or a byte order mark, reading at most limit bytes. It returns what it
// read (to be sent on in front of the rest) and that byte, 0 when the body
// ended or the limit came first.
func leadingByte(body io.Reader, limit int64) ([]byte, byte, error) {
	var prefix []byte
	buf := make([]byte, 512)
	for int64(len(prefix)) < limit {
		n, err := body.Read(buf[:min(int64(len(buf)), limit-int64(len(prefix)))])
		prefix = append(prefix, buf[:n]...)
		// A byte order mark cut by a read is waited out like whitespace.
		if t := bytes.TrimLeft(prefix, jsonLead); len(t) > 0 && !(len(t) < len(bom) && strings.HasPrefix(bom, string(t))) {
			return prefix, t[0], nil
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return prefix, 0, err
		}
	}
	return prefix, 0, nil
}

// bufferReplay holds an application/json body of at most max_inspect_bytes
// whose advertisers are not needed (the header named the credential), so
// that it can be replayed after a 40105; a larger one streams on.
func (c *Core) bufferReplay(r *http.Request, sel *selection) *Error {
	if !sel.hasBody || !isJSON(r.Header.Get("Content-Type")) {
		return nil
	}
	_, perr := c.buffer(r, sel, nil, false)
	return perr
}

// buffer reads the rest of r.Body after prefix, holding at most
// max_inspect_bytes in sel.replay. A larger body is 90008 when strict;
// otherwise it streams on unbuffered (and cannot be replayed), and buffer
// returns nil.
func (c *Core) buffer(r *http.Request, sel *selection, prefix []byte, strict bool) ([]byte, *Error) {
	if r.ContentLength > c.maxInspect {
		if strict {
			return nil, c.tooLarge()
		}
		sel.body = readCloser{io.MultiReader(bytes.NewReader(prefix), r.Body), r.Body}
		return nil, nil
	}
	buf, err := readRest(r.Body, prefix, r.ContentLength, c.maxInspect+1)
	if err != nil {
		return nil, c.bodyError(err)
	}
	if int64(len(buf)) > c.maxInspect {
		if strict {
			return nil, c.tooLarge()
		}
		sel.body = readCloser{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		return nil, nil
	}
	sel.replay = buf
	return buf, nil
}

// readRest appends what is left of body to prefix, reading at most limit
// bytes in all. A body whose length is declared is read into one buffer
// of that size (io.ReadAll would grow one by doubling from 512 bytes,
// copying as it goes); its end is then checked with one more read.
func readRest(body io.Reader, prefix []byte, length, limit int64) ([]byte, error) {
	if length <= 0 || length >= limit {
		rest, err := io.ReadAll(io.LimitReader(body, limit-int64(len(prefix))))
		return append(prefix, rest...), err
	}
	buf := make([]byte, max(length, int64(len(prefix)))+1)
	n := copy(buf, prefix)
	for n < len(buf) {
		m, err := body.Read(buf[n:])
		n += m
		if err == io.EOF {
			return buf[:n], nil
		}
		if err != nil {
			return buf[:n], err
		}
	}
	// Longer than declared (net/http's server never lets that happen):
	// read on as io.ReadAll would.
	rest, err := io.ReadAll(io.LimitReader(body, limit-int64(n)))
	return append(buf, rest...), err
}

func (c *Core) tooLarge() *Error {
	return newError(CodeBodyTooLarge, http.StatusRequestEntityTooLarge,
		"the body is larger than routing.max_inspect_bytes (%d) so its advertiser_id cannot be read: name the credential with %s or put advertiser_id in the query",
		c.maxInspect, c.credentialHeader)
}

// bodyError is a failure reading the client's body. Past the connection's
// read deadline (ServeHTTP sets it at upstream.timeout) it is a 408.
func (c *Core) bodyError(err error) *Error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return c.bodyTimeout()
	}
	return newError(CodeMalformed, http.StatusBadRequest, "reading the request body failed: %v", err)
}

func (c *Core) bodyTimeout() *Error {
	return newError(CodeMalformed, http.StatusRequestTimeout,
		"the request body did not finish arriving within upstream.timeout (%s); send it faster or raise upstream.timeout for large uploads", c.timeout)
}

// jsonAdvertisers reads advertiser_id and advertiser_ids from a JSON body.
// Ids are kept as the digits written, never converted to floats.
func jsonAdvertisers(body []byte) ([]string, error) {
	body = bytes.TrimLeft(body, jsonLead)
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	members, byHand, valid := scanIDMembers(body)
	if !valid {
		return nil, errors.New("invalid JSON")
	}
	if body[0] != '{' {
		return nil, nil
	}
	if !byHand {
		var err error
		if members, err = decodedIDMembers(body); err != nil {
			return nil, err
		}
	}
	var ids []string
	for _, m := range members {
		if m.list {
			list, err := idList(m.raw)
			if err != nil {
				return nil, err
			}
			ids = append(ids, list...)
			continue
		}
		id, err := oneID(m.raw)
		if err != nil {
			return nil, err
		}
		if id != "" {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// idMember is a top-level member of a JSON body that names advertisers:
// advertiser_id, or advertiser_ids when list is true.
type idMember struct {
	list bool
	raw  json.RawMessage
}

// decodedIDMembers reads the idMembers of the JSON object body with a
// json.Decoder. Every top-level key is read, in order: a key repeated
// (which Go's encoding/json reads last-wins, others first-wins) names each
// of its advertisers, and a key that differs from advertiser_id only in
// case or Unicode folding ("ADVERTISER_ID", "advertiſer_id") counts, since
// encoding/json matches struct fields that way.
func decodedIDMembers(body []byte) ([]idMember, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, errors.New("invalid JSON")
	}
	var members []idMember
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("invalid JSON")
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errors.New("invalid JSON")
		}
		switch {
		case strings.EqualFold(key, "advertiser_id"):
			members = append(members, idMember{raw: raw})
		case strings.EqualFold(key, "advertiser_ids"):
			members = append(members, idMember{list: true, raw: raw})
		}
	}
	return members, nil
}

// scanIDMembers validates the JSON body as validJSON does and, when it
// is an object, reads its idMembers by hand in the same pass, without
// copying any member's value; byHand is false when a member's name has an
// escape, which only the decoder reads right (decodedIDMembers).
// FuzzIDMembers checks it against json.Valid and the decoder.
func scanIDMembers(b []byte) (members []idMember, byHand, valid bool) {
	i := skipJSONSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, true, validJSON(b)
	}
	byHand = true
	if i = skipJSONSpace(b, i+1); i < len(b) && b[i] == '}' {
		return nil, true, skipJSONSpace(b, i+1) == len(b)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, false, false
		}
		end, ok := jsonString(b, i)
		if !ok {
			return nil, false, false
		}
		name := b[i+1 : end-1]
		if i = skipJSONSpace(b, end); i >= len(b) || b[i] != ':' {
			return nil, false, false
		}
		start := skipJSONSpace(b, i+1)
		if i, ok = jsonValue(b, start, 1); !ok {
			return nil, false, false
		}
		switch {
		case bytes.IndexByte(name, '\\') >= 0:
			byHand = false
		case bytes.EqualFold(name, advertiserIDName):
			members = append(members, idMember{raw: b[start:i]})
		case bytes.EqualFold(name, advertiserIDsName):
			members = append(members, idMember{list: true, raw: b[start:i]})
		}
		if i = skipJSONSpace(b, i); i >= len(b) {
			return nil, false, false
		}
		switch b[i] {
		case ',':
			i = skipJSONSpace(b, i+1)
		case '}':
			return members, byHand, skipJSONSpace(b, i+1) == len(b)
		default:
			return nil, false, false
		}
	}
}

var advertiserIDName, advertiserIDsName = []byte("advertiser_id"), []byte("advertiser_ids")

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

// oneID reads one id (a number or a string, canonicalID) from valid JSON.
// An id written as TikTok writes it, digits or quoted digits, is read
// without a decoder.
func oneID(raw json.RawMessage) (string, error) {
	if d := bytes.Trim(raw, `"`); len(d) > 0 && len(raw)-len(d) != 1 && allDigits(d) {
		// Both quotes or neither: "123" or 123 (valid JSON, so not "123 or 123").
		id := string(d)
		if err := canonicalID(id); err != nil {
			return "", err
		}
		return id, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", errors.New("advertiser_id is not valid JSON")
	}
	return idValue(v)
}

// idValue accepts a canonical id (canonicalID) as a number or a string;
// null and "" are no id.
func idValue(v any) (string, error) {
	var id string
	switch t := v.(type) {
	case nil:
		return "", nil
	case string:
		if t == "" {
			return "", nil
		}
		id = t
	case json.Number:
		id = t.String()
	default:
		return "", errors.New("an advertiser id must be a string or an integer")
	}
	if err := canonicalID(id); err != nil {
		return "", err
	}
	return id, nil
}

// allDigits reports whether b is all decimal digits.
func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// maxIDDigits is the longest advertiser id accepted: every uint64 fits.
const maxIDDigits = 20

// canonicalID refuses an advertiser id that is not plain decimal digits
// without a leading zero: a server that parses ids as numbers reads
// "07…", "+7…", " 7…" or "7.0e18" as an advertiser the proxy, comparing
// the text, would not recognise, and would pick another credential for.
func canonicalID(id string) error {
	ok := id != "" && len(id) <= maxIDDigits && id[0] != '0'
	for i := 0; ok && i < len(id); i++ {
		ok = id[i] >= '0' && id[i] <= '9'
	}
	if !ok {
		return fmt.Errorf("advertiser id %.40q is not written as TikTok writes ids (digits only, no leading zero, sign, space or exponent): send it as TikTok listed it", id)
	}
	return nil
}

// watchedBody remembers how reading a body goes: whether a Read is waiting
// for data right now, the first error other than EOF with the time the
// Read that returned it began, and how much was read and whether to the
// end (delivered). The transport reads a request body on its own
// goroutine, hence the lock.
type watchedBody struct {
	io.ReadCloser

	mu      sync.Mutex
	reading bool
	err     error
	errRead time.Time // when the Read that failed with err began
	n       int64
	eof     bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	began := time.Now()
	b.mu.Lock()
	b.reading = true
	b.mu.Unlock()
	n, err := b.ReadCloser.Read(p)
	b.mu.Lock()
	b.reading = false
	b.n += int64(n)
	b.eof = b.eof || err == io.EOF
	if err != nil && err != io.EOF && b.err == nil {
		b.err, b.errRead = err, began
	}
	b.mu.Unlock()
	return n, err
}

// delivered reports how many bytes were read and whether to the end.
func (b *watchedBody) delivered() (eof bool, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof, b.n
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
