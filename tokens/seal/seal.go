// Package seal seals tokens at rest with AES-256-GCM, the same way in every
// store (the file store and the Redis store), so a record sealed by one
// opens with the other given the same key.
//
// Each sealed value is base64 of nonce||ciphertext, bound by its
// additional data to where it is stored (credential and field), so a token
// moved to another credential or field fails to open. A store keeps a key
// check value (KeyCheck) beside its records, so a wrong key is reported
// when the store is opened rather than as garbage tokens.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// Algorithm names the sealing in a store's metadata.
const Algorithm = "AES-256-GCM"

// KeySize is the length of a key in bytes.
const KeySize = 32

// keyCheckPlaintext is what KeyCheck seals.
const keyCheckPlaintext = "tiktok-auth-proxy key check"

// ErrWrongKey is returned by CheckKey when the key is not the one the
// store was sealed with.
var ErrWrongKey = errors.New("seal: wrong store.encryption_key")

// Sealer seals and opens token fields with one key. It is safe for
// concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// New returns a Sealer for key, which must be KeySize bytes.
func New(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: encryption key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// KeyCheck is a fresh key check value for a store's metadata.
func (s *Sealer) KeyCheck() (string, error) {
	return s.seal([]byte(keyCheckPlaintext), "key_check")
}

// CheckKey returns ErrWrongKey unless kc is a KeyCheck of this key.
func (s *Sealer) CheckKey(kc string) error {
	plain, err := s.open(kc, "key_check")
	if err != nil || string(plain) != keyCheckPlaintext {
		return ErrWrongKey
	}
	return nil
}

// SealRecord returns a copy of r with its access and refresh tokens sealed.
// An empty token stays empty: its absence is not a secret.
func (s *Sealer) SealRecord(r *tokens.Record) (*tokens.Record, error) {
	c := r.Clone()
	var err error
	if c.AccessToken, err = s.sealToken(c.AccessToken, c.Credential, "access_token"); err != nil {
		return nil, err
	}
	if c.RefreshToken, err = s.sealToken(c.RefreshToken, c.Credential, "refresh_token"); err != nil {
		return nil, err
	}
	return c, nil
}

// OpenRecord opens r's sealed access and refresh tokens in place. Its
// errors name the credential and the field, never a token.
func (s *Sealer) OpenRecord(r *tokens.Record) error {
	var err error
	if r.AccessToken, err = s.openToken(r.AccessToken, r.Credential, "access_token"); err != nil {
		return err
	}
	if r.RefreshToken, err = s.openToken(r.RefreshToken, r.Credential, "refresh_token"); err != nil {
		return err
	}
	return nil
}

func (s *Sealer) sealToken(tok, credential, field string) (string, error) {
	if tok == "" {
		return "", nil
	}
	return s.seal([]byte(tok), credential+"/"+field)
}

func (s *Sealer) openToken(sealed, credential, field string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	b, err := s.open(sealed, credential+"/"+field)
	if err != nil {
		return "", fmt.Errorf("credential %q: %s cannot be decrypted: %w", credential, field, err)
	}
	return string(b), nil
}

// seal binds the ciphertext to where it is stored (aad), so a token cannot
// be moved to another credential or field unnoticed.
func (s *Sealer) seal(plain []byte, aad string) (string, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: nonce: %w", err)
	}
	out := s.aead.Seal(nonce, nonce, plain, []byte(aad))
	return base64.StdEncoding.EncodeToString(out), nil
}

func (s *Sealer) open(sealed, aad string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	n := s.aead.NonceSize()
	if len(raw) < n+s.aead.Overhead() {
		return nil, errors.New("sealed value too short")
	}
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(aad))
	if err != nil {
		return nil, errors.New("authentication failed")
	}
	return plain, nil
}
