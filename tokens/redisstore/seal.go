package redisstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// recordAAD binds a sealed value to its use, so a value sealed with the
// same key for something else is not accepted as a record.
const recordAAD = "tiktok-auth-proxy redis record v1"

// aesGCM is the Sealer for store.encryption_key: AES-256-GCM, a random
// nonce in front of the ciphertext.
type aesGCM struct{ aead cipher.AEAD }

// NewSealer returns an AES-256-GCM Sealer for a 32-byte key.
func NewSealer(key []byte) (Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("redisstore: encryption key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	return &aesGCM{aead: aead}, nil
}

func (g *aesGCM) Seal(plain []byte) ([]byte, error) {
	nonce := make([]byte, g.aead.NonceSize(), g.aead.NonceSize()+len(plain)+g.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("redisstore: nonce: %w", err)
	}
	return g.aead.Seal(nonce, nonce, plain, []byte(recordAAD)), nil
}

func (g *aesGCM) Open(sealed []byte) ([]byte, error) {
	n := g.aead.NonceSize()
	if len(sealed) < n+g.aead.Overhead() {
		return nil, errors.New("sealed value too short")
	}
	plain, err := g.aead.Open(nil, sealed[:n], sealed[n:], []byte(recordAAD))
	if err != nil {
		return nil, errors.New("authentication failed")
	}
	return plain, nil
}
