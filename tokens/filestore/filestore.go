// Package filestore keeps tokens.Records in one JSON file for a single
// process.
//
// Every change rewrites the whole document: to a temporary file in the same
// directory, fsync'd, renamed over the old one, and the directory fsync'd, so
// a crash at any moment leaves either the old or the new document, never a
// mix. The file is mode 0600 in a directory created 0700. A file with wider
// permissions, one that does not parse, or one sealed with another key is
// refused with an error naming it, and is never overwritten.
//
// With a key, every access and refresh token is sealed with AES-256-GCM and
// the document carries a key check value, so a wrong key is reported at
// Open rather than as garbage tokens.
package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// Store is a tokens.Store backed by one file. It keeps the whole document in
// memory: reads never touch the disk after Open. It is safe for concurrent
// use within one process; it takes no lock against other processes, so only
// one process may write the file (readers such as the status command may
// open it at any time: they see the latest complete document).
type Store struct {
	path  string
	codec *codec

	mu     sync.RWMutex
	recs   map[string]*tokens.Record
	closed bool
}

var _ tokens.Store = (*Store)(nil)

var errClosed = errors.New("filestore: store is closed")

// Open loads the store at path. A missing file is an empty store; its
// directory is created (0700) on the first write. key is nil for plain
// tokens or 32 bytes for AES-256-GCM sealing.
func Open(path string, key []byte) (*Store, error) {
	c, err := newCodec(key)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, codec: c, recs: map[string]*tokens.Record{}}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("filestore: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&^0o600 != 0 {
		return nil, fmt.Errorf("filestore: %s has mode %#o, wider than 0600 (it holds tokens): run chmod 600 %s", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	recs, err := c.decode(data)
	if errors.Is(err, ErrWrongKey) {
		return nil, fmt.Errorf("%w for %s", err, path)
	}
	if err != nil {
		return nil, fmt.Errorf("filestore: %s: %w", path, err)
	}
	s.recs = recs
	return s, nil
}

// Path is the file the store writes.
func (s *Store) Path() string { return s.path }

// Get returns a copy of the credential's record, or tokens.ErrNotFound.
func (s *Store) Get(_ context.Context, credential string) (*tokens.Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed
	}
	r, ok := s.recs[credential]
	if !ok {
		return nil, tokens.ErrNotFound
	}
	return r.Clone(), nil
}

// List returns copies of every record, in no particular order.
func (s *Store) List(_ context.Context) ([]*tokens.Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed
	}
	out := make([]*tokens.Record, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, r.Clone())
	}
	return out, nil
}

// Put stores rec when the stored generation equals expect (0: no record),
// as documented on tokens.Store. It returns once the file is durable; on any
// error neither the file nor the in-memory copy has changed.
func (s *Store) Put(_ context.Context, rec *tokens.Record, expect uint64) error {
	if rec == nil || rec.Credential == "" {
		return errors.New("filestore: put: record without credential name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	var have uint64
	if cur, ok := s.recs[rec.Credential]; ok {
		have = cur.Generation
	}
	if have != expect {
		return fmt.Errorf("filestore: put %q: stored generation %d, expected %d: %w", rec.Credential, have, expect, tokens.ErrConflict)
	}
	next := rec.Clone()
	next.Generation = expect + 1
	recs := make(map[string]*tokens.Record, len(s.recs)+1)
	for k, v := range s.recs {
		recs[k] = v
	}
	recs[next.Credential] = next
	if err := s.write(recs); err != nil {
		return err
	}
	s.recs = recs
	rec.Generation = next.Generation
	return nil
}

// Delete removes the credential's record; deleting a missing one is not an
// error.
func (s *Store) Delete(_ context.Context, credential string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if _, ok := s.recs[credential]; !ok {
		return nil
	}
	recs := make(map[string]*tokens.Record, len(s.recs))
	for k, v := range s.recs {
		if k != credential {
			recs[k] = v
		}
	}
	if err := s.write(recs); err != nil {
		return err
	}
	s.recs = recs
	return nil
}

// Ping reports whether the store is open and its directory reachable.
func (s *Store) Ping(_ context.Context) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return errClosed
	}
	dir := filepath.Dir(s.path)
	if _, err := os.Stat(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("filestore: %w", err)
	}
	return nil
}

// Close makes every later call fail. Every Put was already durable, so
// there is nothing to flush.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// write replaces the file with recs atomically and durably.
func (s *Store) write(recs map[string]*tokens.Record) error {
	data, err := s.codec.encode(recs)
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	// CreateTemp already uses 0600; Chmod makes it independent of that detail.
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("filestore: write %s: %w", s.path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("filestore: sync %s: %w", s.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	done = true
	// The rename is durable only once the directory entry is.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("filestore: sync directory %s: %w", dir, err)
	}
	return nil
}
