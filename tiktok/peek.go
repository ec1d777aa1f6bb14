package tiktok

import (
	"bytes"
	"unicode/utf8"
)

// peekFast is PeekEnvelope for the envelope as TikTok writes it:
// {"code":0,"message":"OK","request_id":"...","data":...}, its members
// in any order before "data", with any JSON whitespace. It allocates only
// the two strings it returns. ok is false for anything else (another key,
// an escaped or empty string, a code that is not a plain integer, a prefix
// that ends before the answer is known), which peekDecoded then reads;
// whenever ok is true, h is what peekDecoded returns (FuzzPeekFast).
func peekFast(prefix []byte) (h EnvelopeHead, ok bool) {
	p := skipSpace(prefix)
	if len(p) == 0 || p[0] != '{' {
		return h, false
	}
	p = skipSpace(p[1:])
	for {
		key, rest, ok := plainString(p)
		if !ok {
			return h, false
		}
		p = skipSpace(rest)
		if len(p) == 0 || p[0] != ':' {
			return h, false
		}
		p = skipSpace(p[1:])
		switch {
		case string(key) == "code" && !h.CodeOK:
			if h.Code, p, ok = plainInt(p); !ok {
				return EnvelopeHead{}, false
			}
			h.CodeOK = true
		case string(key) == "message" && h.Message == "":
			var v []byte
			if v, p, ok = plainString(p); !ok || len(v) == 0 {
				return EnvelopeHead{}, false
			}
			h.Message = string(v)
		case string(key) == "request_id" && h.RequestID == "":
			var v []byte
			if v, p, ok = plainString(p); !ok || len(v) == 0 {
				return EnvelopeHead{}, false
			}
			h.RequestID = string(v)
		case string(key) == "data" && h.CodeOK:
			return h, true
		default:
			return EnvelopeHead{}, false
		}
		if h.CodeOK && h.Message != "" && h.RequestID != "" {
			return h, true
		}
		p = skipSpace(p)
		switch {
		case len(p) == 0:
			return EnvelopeHead{}, false
		case p[0] == '}':
			return h, true
		case p[0] != ',':
			return EnvelopeHead{}, false
		}
		p = skipSpace(p[1:])
	}
}

// skipSpace drops JSON whitespace from the front of p.
func skipSpace(p []byte) []byte {
	return bytes.TrimLeft(p, " \t\r\n")
}

// plainString reads a JSON string without escapes or control characters,
// in valid UTF-8, from the front of p.
func plainString(p []byte) (s, rest []byte, ok bool) {
	if len(p) == 0 || p[0] != '"' {
		return nil, nil, false
	}
	end := bytes.IndexByte(p[1:], '"')
	if end < 0 {
		return nil, nil, false
	}
	s = p[1 : 1+end]
	for _, c := range s {
		if c == '\\' || c < 0x20 {
			return nil, nil, false
		}
	}
	if !utf8.Valid(s) {
		return nil, nil, false
	}
	return s, p[2+end:], true
}

// plainInt reads an integer of at most 18 digits, without fraction or
// exponent, that a ',' or '}' follows (so it was not cut short), from the
// front of p.
func plainInt(p []byte) (n int, rest []byte, ok bool) {
	i, neg := 0, false
	if len(p) > 0 && p[0] == '-' {
		neg, i = true, 1
	}
	start := i
	for i < len(p) && p[i] >= '0' && p[i] <= '9' {
		n = n*10 + int(p[i]-'0')
		i++
	}
	digits := i - start
	if digits == 0 || digits > 18 || (digits > 1 && p[start] == '0') {
		return 0, nil, false
	}
	rest = p[i:]
	if next := skipSpace(rest); len(next) == 0 || (next[0] != ',' && next[0] != '}') {
		return 0, nil, false
	}
	if neg {
		n = -n
	}
	return n, rest, true
}
