package proxy

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// maxAdvertiserField bounds a multipart advertiser_id value; a 19-digit id
// with whitespace fits many times over, and a longer one is refused rather
// than read in part.
const maxAdvertiserField = 256

// inspectMultipart reads the advertiser fields in the first
// max_inspect_bytes of a multipart body, stopping at the first file part so
// an upload is never held in memory. Whatever it read is replayed in front
// of the rest of the stream, so the body is forwarded unchanged.
//
// Parts the scan did not reach (after a file, or past the limit) may name
// advertisers too. When the scan found one, or the query names the
// credential, the rest is checked as it streams to TikTok (verifiedBody).
// When it found none, the upload could belong to any credential, so it is
// refused (90008) like an oversized JSON body, unless only one credential
// is configured. A body that is not multipart is 90011 unless the query
// names the credential; an encoded advertiser field is 90011 regardless.
func (c *Core) inspectMultipart(r *http.Request, sel *selection, boundary string, named bool) *Error {
	var prefix bytes.Buffer
	src := &watchedBody{ReadCloser: r.Body}
	limited := &io.LimitedReader{R: src, N: c.maxInspect}
	scan, err := scanMultipart(multipart.NewReader(io.TeeReader(limited, &prefix), boundary), sel, true)
	sel.body = readCloser{io.MultiReader(&prefix, r.Body), r.Body}
	if _, rerr := src.state(); rerr != nil {
		return c.bodyError(rerr)
	}
	if scan == scanBroken && limited.N == 0 {
		scan = scanUndecided
	}
	perr, refused := err.(*Error)
	switch {
	case refused:
		return perr
	case scan == scanDecided || (scan == scanBroken && named):
		return nil
	case scan == scanBroken:
		return newError(CodeMalformed, http.StatusBadRequest,
			"the multipart body could not be read to find advertiser_id: %v", err)
	case len(c.names) == 1:
		return nil
	case named || len(sel.advertisers) > 0:
		sel.verify = boundary
		return nil
	}
	return newError(CodeBodyTooLarge, http.StatusRequestEntityTooLarge,
		"the upload's advertiser_id field was not found before its file or within routing.max_inspect_bytes (%d): put the advertiser_id field before the file, or name the credential with %s",
		c.maxInspect, c.credentialHeader)
}

// Outcomes of scanMultipart.
const (
	scanDecided   = iota // the whole body seen
	scanUndecided        // a file part came first: fields may follow it
	scanBroken           // the body is not valid multipart (or was cut by the limit)
)

// scanMultipart reads parts, adding every advertiser_id and advertiser_ids
// field to sel.advertisers, up to the end of the body or, with stopAtFile,
// the first file part. A field naming advertisers in an encoding
// (Content-Transfer-Encoding) is refused with a 90011 *Error: servers
// disagree on whether to decode it.
func scanMultipart(mr *multipart.Reader, sel *selection, stopAtFile bool) (int, error) {
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			return scanDecided, nil
		}
		if err != nil {
			return scanBroken, err
		}
		name, err := partName(part)
		if err != nil {
			return scanBroken, err
		}
		if name == "advertiser_id" || name == "advertiser_ids" {
			if cte := part.Header.Get("Content-Transfer-Encoding"); cte != "" {
				return scanBroken, newError(CodeMalformed, http.StatusBadRequest,
					"the multipart %s field has Content-Transfer-Encoding %q, which servers decode differently: send the field plain", name, cte)
			}
			v, err := io.ReadAll(io.LimitReader(part, maxAdvertiserField+1))
			if err != nil {
				return scanBroken, err
			}
			if len(v) > maxAdvertiserField {
				return scanBroken, fmt.Errorf("the %s field is longer than %d bytes", name, maxAdvertiserField)
			}
			ids, err := fieldAdvertisers(url.Values{name: {string(v)}})
			if err != nil {
				return scanBroken, err
			}
			sel.advertisers = append(sel.advertisers, ids...)
			continue
		}
		if stopAtFile && part.FileName() != "" {
			return scanUndecided, nil
		}
		if _, err := io.Copy(io.Discard, part); err != nil {
			return scanBroken, err
		}
	}
}

// partName is the name a part's Content-Disposition gives it, whatever
// the disposition type: unlike Part.FormName, which knows only form-data,
// servers reading multipart/mixed (or an "attachment; name=...") take the
// name too. A part with two Content-Disposition headers is refused with a
// 90011 *Error: servers disagree on which one counts.
func partName(part *multipart.Part) (string, error) {
	cds := part.Header.Values("Content-Disposition")
	if len(cds) > 1 {
		return "", newError(CodeMalformed, http.StatusBadRequest,
			"a multipart part has %d Content-Disposition headers, which servers read differently: send one per part", len(cds))
	}
	if len(cds) == 0 {
		return "", nil
	}
	_, params, err := mime.ParseMediaType(cds[0])
	if err != nil && strings.Contains(strings.ToLower(cds[0]), "advertiser") {
		// A lenient server may still find the name in it.
		return "", newError(CodeMalformed, http.StatusBadRequest,
			"a multipart part's Content-Disposition %.200q does not parse, and may name an advertiser field: fix it", cds[0])
	}
	return params["name"], nil
}

// verifiedBody streams a multipart body to TikTok while a second reading
// of it, on its own goroutine, checks the parts selection could not see:
// an advertiser of another credential than cred (90001), an encoded
// advertiser field or a body that stops being multipart (90011) fail the
// read, so the transport abandons the request before its end. The last
// byte read is held back until the check is done, so TikTok never has the
// whole of a body the check refuses. The check starts with the first Read,
// so a body never sent leaves no goroutine behind; Close stops it.
type verifiedBody struct {
	src      io.ReadCloser
	boundary string
	check    func(ids []string) *Error // judges the advertisers the body names

	started bool
	pw      *io.PipeWriter
	done    chan struct{}
	held    []byte // read from src, not yet returned; the last byte waits for the check
	srcErr  error
	buf     []byte

	mu  sync.Mutex // guards err and pw (Close may run while Read waits)
	err error      // the check's verdict
}

func (c *Core) verifiedBody(src io.ReadCloser, boundary, cred string) *verifiedBody {
	return &verifiedBody{src: src, boundary: boundary, check: func(ids []string) *Error {
		if c, perr := c.credentialOf(ids); perr != nil || (c != "" && c != cred) {
			return newError(CodeNoCredential, http.StatusBadRequest,
				"the upload names advertisers %v after its file, not all of credential %q: name one credential's advertisers only, before the file", ids, cred)
		}
		return nil
	}}
}

func (v *verifiedBody) start() {
	pr, pw := io.Pipe()
	v.mu.Lock()
	v.started, v.pw, v.done, v.buf = true, pw, make(chan struct{}), make([]byte, 32<<10)
	v.mu.Unlock()
	go func() {
		defer close(v.done)
		sel := &selection{}
		_, err := scanMultipart(multipart.NewReader(pr, v.boundary), sel, false)
		if err == nil {
			if perr := v.check(sel.advertisers); perr != nil {
				err = perr
			}
		} else if _, ok := err.(*Error); !ok {
			err = newError(CodeMalformed, http.StatusBadRequest,
				"the multipart body broke off or stopped being multipart after what was inspected: %v", err)
		}
		v.mu.Lock()
		v.err = err
		v.mu.Unlock()
		// Unblocks the writer if the check ended before the body did.
		pr.CloseWithError(io.ErrClosedPipe)
	}()
}

func (v *verifiedBody) verdict() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

func (v *verifiedBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !v.started {
		v.start()
	}
	for {
		if err := v.verdict(); err != nil && err != io.EOF {
			return 0, err
		}
		if len(v.held) > 1 {
			n := copy(p, v.held[:len(v.held)-1])
			v.held = v.held[n:]
			return n, nil
		}
		if v.srcErr != nil {
			if v.srcErr != io.EOF {
				return 0, v.srcErr
			}
			<-v.done
			if err := v.verdict(); err != nil {
				return 0, err
			}
			if len(v.held) == 1 {
				p[0], v.held = v.held[0], nil
				return 1, nil
			}
			return 0, io.EOF
		}
		n, err := v.src.Read(v.buf)
		if n > 0 {
			// A failed write means the check is over; its verdict says why.
			_, _ = v.pw.Write(v.buf[:n])
			v.held = append(v.held, v.buf[:n]...)
		}
		if err != nil {
			v.srcErr = err
			v.pw.CloseWithError(err)
		}
	}
}

// Close closes the client's body and ends the check.
func (v *verifiedBody) Close() error {
	v.mu.Lock()
	pw := v.pw
	v.mu.Unlock()
	if pw != nil {
		pw.CloseWithError(io.ErrClosedPipe)
	}
	return v.src.Close()
}
