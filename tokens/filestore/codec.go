package filestore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/seal"
)

// formatVersion is the document's "version"; any other is refused so an
// older binary never rewrites a newer document it does not understand.
const formatVersion = 1

// document is the file's JSON shape.
type document struct {
	Version     int                       `json:"version"`
	Encryption  *encryption               `json:"encryption,omitempty"`
	Credentials map[string]*tokens.Record `json:"credentials"`
}

// encryption says how token fields are sealed.
type encryption struct {
	Algorithm string `json:"algorithm"`
	KeyCheck  string `json:"key_check"` // seal.Sealer.KeyCheck of the key
}

// codec turns records into the document and back, sealing tokens when it
// has a key. It is not safe for concurrent use: the Store calls it under
// its mutex.
type codec struct {
	sealer *seal.Sealer // nil: no key
	// out holds the latest encoded document and enc writes it: every
	// write of the file encodes every record, so a fresh buffer (and
	// MarshalIndent's second one) per write would be garbage the size of
	// the file each time (O(credentials²) bytes when each credential's
	// advertiser listing is stored at start-up).
	out bytes.Buffer
	enc *json.Encoder
}

func newCodec(key []byte) (*codec, error) {
	if len(key) == 0 {
		return &codec{}, nil
	}
	sl, err := seal.New(key)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	return &codec{sealer: sl}, nil
}

// ErrWrongKey is returned by Open, wrapped with the file name, when the
// configured key is not the one the document was sealed with.
var ErrWrongKey = seal.ErrWrongKey

// encode returns the document holding recs. The bytes are the codec's
// own, valid until its next encode.
func (c *codec) encode(recs map[string]*tokens.Record) ([]byte, error) {
	doc := document{Version: formatVersion, Credentials: recs}
	if c.sealer != nil {
		kc, err := c.sealer.KeyCheck()
		if err != nil {
			return nil, err
		}
		doc.Encryption = &encryption{Algorithm: seal.Algorithm, KeyCheck: kc}
	}
	// The records are encoded as they are, not copied, unless sealing
	// or a record not naming its key changes them.
	if c.sealer != nil || !keyedByCredential(recs) {
		doc.Credentials = make(map[string]*tokens.Record, len(recs))
		for name, r := range recs {
			if r.Credential != name {
				r = r.Clone()
				r.Credential = name
			}
			if c.sealer != nil {
				var err error
				if r, err = c.sealer.SealRecord(r); err != nil {
					return nil, err
				}
			}
			doc.Credentials[name] = r
		}
	}
	if c.enc == nil {
		c.enc = json.NewEncoder(&c.out)
		c.enc.SetIndent("", "  ")
	}
	c.out.Reset()
	// Encode indents as MarshalIndent does and ends the document with a
	// newline.
	if err := c.enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("filestore: encode: %w", err)
	}
	return c.out.Bytes(), nil
}

// keyedByCredential reports whether every record names the credential it
// is stored under.
func keyedByCredential(recs map[string]*tokens.Record) bool {
	for name, r := range recs {
		if r.Credential != name {
			return false
		}
	}
	return true
}

// decode parses a document. Its errors name the byte offset of a syntax
// or type problem; the caller adds the file name.
func (c *codec) decode(data []byte) (map[string]*tokens.Record, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var doc document
	if err := dec.Decode(&doc); err != nil {
		return nil, describeJSONError(err, dec.InputOffset(), len(data))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("cannot parse: unexpected data after the document at offset %d", dec.InputOffset())
	}
	if doc.Version != formatVersion {
		return nil, fmt.Errorf("unsupported version %d (this program reads version %d)", doc.Version, formatVersion)
	}
	switch {
	case doc.Encryption != nil && c.sealer == nil:
		return nil, errors.New("tokens are encrypted but no store.encryption_key is configured")
	case doc.Encryption != nil:
		if doc.Encryption.Algorithm != seal.Algorithm {
			return nil, fmt.Errorf("unsupported encryption algorithm %q", doc.Encryption.Algorithm)
		}
		if err := c.sealer.CheckKey(doc.Encryption.KeyCheck); err != nil {
			return nil, err
		}
	case c.sealer != nil && len(doc.Credentials) > 0:
		// Sealing plain tokens silently would hide a misconfiguration; the
		// operator re-authorizes or removes the file deliberately.
		return nil, errors.New("tokens are stored unencrypted but store.encryption_key is configured")
	}
	recs := make(map[string]*tokens.Record, len(doc.Credentials))
	for name, r := range doc.Credentials {
		if r == nil {
			return nil, fmt.Errorf("credential %q: null record", name)
		}
		if r.Credential == "" {
			r.Credential = name
		}
		if r.Credential != name {
			return nil, fmt.Errorf("credential %q: record names credential %q", name, r.Credential)
		}
		if r.Generation == 0 {
			return nil, fmt.Errorf("credential %q: generation 0 (every stored record has generation >= 1)", name)
		}
		if c.sealer != nil {
			if err := c.sealer.OpenRecord(r); err != nil {
				return nil, err
			}
		}
		recs[name] = r
	}
	return recs, nil
}

func describeJSONError(err error, inputOffset int64, size int) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("cannot parse at offset %d of %d bytes: %w", syn.Offset, size, err)
	case errors.As(err, &typ):
		return fmt.Errorf("cannot parse at offset %d: field %q: %w", typ.Offset, typ.Field, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("cannot parse: truncated at offset %d of %d bytes: %w", inputOffset, size, err)
	default:
		return fmt.Errorf("cannot parse near offset %d: %w", inputOffset, err)
	}
}
