package filestore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// formatVersion is the document's "version"; any other is refused so an
// older binary never rewrites a newer document it does not understand.
const formatVersion = 1

// keyCheckPlaintext is sealed into the document so a wrong key is detected
// at Open, before any token is needed.
const keyCheckPlaintext = "tiktok-auth-proxy key check"

// document is the file's JSON shape.
type document struct {
	Version     int                       `json:"version"`
	Encryption  *encryption               `json:"encryption,omitempty"`
	Credentials map[string]*tokens.Record `json:"credentials"`
}

// encryption says how token fields are sealed.
type encryption struct {
	Algorithm string `json:"algorithm"`
	KeyCheck  string `json:"key_check"` // keyCheckPlaintext sealed with the key
}

const algorithm = "AES-256-GCM"

// codec turns records into the document and back, sealing tokens when it
// has a key.
type codec struct {
	aead cipher.AEAD // nil: no key
}

func newCodec(key []byte) (*codec, error) {
	if len(key) == 0 {
		return &codec{}, nil
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("filestore: encryption key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	return &codec{aead: aead}, nil
}

// ErrWrongKey is returned by Open, wrapped with the file name, when the
// configured key is not the one the document was sealed with.
var ErrWrongKey = errors.New("filestore: wrong store.encryption_key")

func (c *codec) encode(recs map[string]*tokens.Record) ([]byte, error) {
	doc := document{Version: formatVersion, Credentials: make(map[string]*tokens.Record, len(recs))}
	if c.aead != nil {
		kc, err := c.seal([]byte(keyCheckPlaintext), "key_check")
		if err != nil {
			return nil, err
		}
		doc.Encryption = &encryption{Algorithm: algorithm, KeyCheck: kc}
	}
	names := make([]string, 0, len(recs))
	for name := range recs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		r := recs[name].Clone()
		if c.aead != nil {
			var err error
			if r.AccessToken, err = c.sealToken(r.AccessToken, name, "access_token"); err != nil {
				return nil, err
			}
			if r.RefreshToken, err = c.sealToken(r.RefreshToken, name, "refresh_token"); err != nil {
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
	case doc.Encryption != nil && c.aead == nil:
		return nil, errors.New("tokens are encrypted but no store.encryption_key is configured")
	case doc.Encryption != nil:
		if doc.Encryption.Algorithm != algorithm {
			return nil, fmt.Errorf("unsupported encryption algorithm %q", doc.Encryption.Algorithm)
		}
		kc, err := c.open(doc.Encryption.KeyCheck, "key_check")
		if err != nil || string(kc) != keyCheckPlaintext {
			return nil, ErrWrongKey
		}
	case c.aead != nil && len(doc.Credentials) > 0:
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
		if c.aead != nil {
			var err error
			if r.AccessToken, err = c.openToken(r.AccessToken, name, "access_token"); err != nil {
				return nil, err
			}
			if r.RefreshToken, err = c.openToken(r.RefreshToken, name, "refresh_token"); err != nil {
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

// sealToken leaves an empty token empty: its absence is not a secret.
func (c *codec) sealToken(tok, credential, field string) (string, error) {
	if tok == "" {
		return "", nil
	}
	return c.seal([]byte(tok), credential+"/"+field)
}

func (c *codec) openToken(sealed, credential, field string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	b, err := c.open(sealed, credential+"/"+field)
	if err != nil {
		return "", fmt.Errorf("credential %q: %s cannot be decrypted: %w", credential, field, err)
	}
	return string(b), nil
}

// seal binds the ciphertext to where it is stored (aad), so a token cannot
// be moved to another credential or field unnoticed.
func (c *codec) seal(plain []byte, aad string) (string, error) {
	nonce := make([]byte, c.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("filestore: nonce: %w", err)
	}
	out := c.aead.Seal(nonce, nonce, plain, []byte(aad))
	return base64.StdEncoding.EncodeToString(out), nil
}

func (c *codec) open(sealed, aad string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	n := c.aead.NonceSize()
	if len(raw) < n+c.aead.Overhead() {
		return nil, errors.New("sealed value too short")
	}
	plain, err := c.aead.Open(nil, raw[:n], raw[n:], []byte(aad))
	if err != nil {
		return nil, errors.New("authentication failed")
	}
	return plain, nil
}
