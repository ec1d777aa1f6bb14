package filestore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

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
// has a key.
type codec struct {
	sealer *seal.Sealer // nil: no key
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

func (c *codec) encode(recs map[string]*tokens.Record) ([]byte, error) {
	doc := document{Version: formatVersion, Credentials: make(map[string]*tokens.Record, len(recs))}
	if c.sealer != nil {
		kc, err := c.sealer.KeyCheck()
		if err != nil {
			return nil, err
		}
		doc.Encryption = &encryption{Algorithm: seal.Algorithm, KeyCheck: kc}
	}
	names := make([]string, 0, len(recs))
	for name := range recs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		r := recs[name].Clone()
		r.Credential = name
		if c.sealer != nil {
			var err error
			if r, err = c.sealer.SealRecord(r); err != nil {
				return nil, err
			}
		}
		doc.Credentials[name] = r
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("filestore: encode: %w", err)
	}
	return append(data, '\n'), nil
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
