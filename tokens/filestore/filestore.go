// Package filestore keeps tokens.Records in one JSON file.
//
// Every change rewrites the whole document: to a temporary file in the same
// directory, fsync'd, renamed over the old one, and the directory fsync'd, so
// a crash at any moment leaves either the old or the new document, never a
// mix. The file is mode 0600 in a directory created 0700, and a directory
// created for it is made durable in its parent too. A file with wider
// permissions, a directory others can write to (they could replace the
// file), a file that does not parse, or one sealed with another key is
// refused with an error naming it, and the file is never touched.
//
// A file removed while the store holds records (deleted by hand, its
// directory replaced) is written again from memory at the next access,
// with a warning: the tokens in memory may be the only copy of a grant
// TikTok will not issue again. Until it can be written, reads are answered
// from memory and Ping fails.
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
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// Store is a tokens.Store backed by one file. It keeps the whole document in
// memory and is safe for concurrent use. Other processes may open the same
// file (the status command reads it while serve runs; an authorize command
// may write it): each write holds an exclusive lock on a lock file beside it
// and first reloads the document if another process changed it, so a stale
// copy never overwrites a newer one (the compare-and-swap then reports
// tokens.ErrConflict). Get and List reload a changed file too, at the cost
// of one stat.
type Store struct {
	path  string
	codec *codec
	log   *slog.Logger

	mu       sync.Mutex
	recs     map[string]*tokens.Record
	seen     fs.FileInfo // the file as last read or written; nil: none yet
	vanished bool        // the file was found missing while recs held records, and not written since
	closed   bool
}

var _ tokens.Store = (*Store)(nil)

var (
	errClosed   = errors.New("filestore: store is closed")
	errVanished = errors.New("filestore: token file vanished")
)

// Option configures a Store at Open.
type Option func(*Store)

// WithLogger sets the logger of the store's warnings (a token file written
// again from memory). Without it they go to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) { s.log = l }
}

// Open loads the store at path. A missing file is an empty store; its
// directory is created (0700) on the first write. An existing directory
// that others can write to is refused. key is nil for plain
// tokens or 32 bytes for AES-256-GCM sealing.
func Open(path string, key []byte, opts ...Option) (*Store, error) {
	c, err := newCodec(key)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, codec: c, recs: map[string]*tokens.Record{}, log: slog.Default()}
	for _, o := range opts {
		o(s)
	}
	// A missing directory is created (and checked) by the first write.
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err == nil {
		if err := checkDir(dir, fi); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	if err := s.reloadLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// reloadLocked reads the file again when it is not the one last read or
// written (another process replaced it). A missing file (or a missing
// directory, or one replaced by a file) is an empty store while memory
// holds no record; otherwise its disappearance is errVanished, never a
// reason to forget the tokens.
func (s *Store) reloadLocked() error {
	fi, err := os.Stat(s.path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		s.seen = nil
		if len(s.recs) == 0 {
			return nil
		}
		if !s.vanished {
			s.vanished = true
			s.log.Warn("the token file vanished: serving its tokens from memory and writing it again", "path", s.path)
		}
		return errVanished
	}
	if err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	if s.seen != nil && os.SameFile(fi, s.seen) && fi.Size() == s.seen.Size() && fi.ModTime().Equal(s.seen.ModTime()) {
		return nil
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("filestore: %s is not a regular file", s.path)
	}
	if perm := fi.Mode().Perm(); perm&^0o600 != 0 {
		return fmt.Errorf("filestore: %s has mode %#o, wider than 0600 (it holds tokens): run chmod 600 %s", s.path, perm, s.path)
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	recs, err := s.codec.decode(data)
	if errors.Is(err, ErrWrongKey) {
		return fmt.Errorf("filestore: %w for %s", err, s.path)
	}
	if err != nil {
		return fmt.Errorf("filestore: %s: %w", s.path, err)
	}
	s.recs, s.seen, s.vanished = recs, fi, false
	return nil
}

// refreshLocked is reloadLocked for reads: a vanished file is written
// again from memory at once, and while that fails, memory answers.
func (s *Store) refreshLocked() error {
	err := s.reloadLocked()
	if errors.Is(err, errVanished) {
		if err := s.recreateLocked(); err != nil {
			s.log.Warn("writing the vanished token file again failed: serving from memory", "path", s.path, "error", err.Error())
		}
		return nil
	}
	return err
}

// recreateLocked writes the vanished file again from memory, under the
// writers' lock, unless another process wrote one meanwhile (then read).
func (s *Store) recreateLocked() error {
	unlock, err := s.lockFile()
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.reloadLocked(); !errors.Is(err, errVanished) {
		return err
	}
	return s.write(s.recs)
}

// lockFile takes the exclusive lock that serialises writers across
// processes; the returned func releases it.
func (s *Store) lockFile() (func(), error) {
	dir := filepath.Dir(s.path)
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "."+filepath.Base(s.path)+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("filestore: lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// ensureDir creates dir and any missing parent (mode 0700), each made
// durable by syncing the directory that holds it, and checks that only its
// owner can write dir. It runs before every write, so a directory whose
// mode was widened after Open is refused before the file is touched.
func ensureDir(dir string) error {
	var missing []string // deepest first
	// Bounded by the path's depth: filepath.Dir shortens d until it is the
	// root (or ".") and stops changing.
	for d := dir; ; d = filepath.Dir(d) {
		_, err := os.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("filestore: %w", err)
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		// Another process may create it at the same moment; its mode is
		// checked below either way.
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("filestore: %w", err)
		}
		// A crash could otherwise lose the new directory, and with it
		// every token renamed into it.
		if parent := filepath.Dir(d); parent != d {
			if err := syncDir(parent); err != nil {
				return fmt.Errorf("filestore: sync directory %s: %w", parent, err)
			}
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	return checkDir(dir, fi)
}

// checkDir refuses a directory that others can write to: they could
// replace or remove the token file, or take its lock. A group-writable one
// is accepted: Kubernetes makes a volume group-writable for the pod's
// fsGroup, and the group is then the deployment's own.
func checkDir(dir string, fi fs.FileInfo) error {
	if !fi.IsDir() {
		return fmt.Errorf("filestore: %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o002 != 0 {
		return fmt.Errorf("filestore: directory %s has mode %#o, so others can write to it and replace the token file: "+
			"run chmod o-w %s, or set store.path to a file in a directory only this user can write (a missing one is created with mode 0700)",
			dir, perm, dir)
	}
	return nil
}

// syncDir makes a directory's entries durable. A variable so tests can see
// which directories are synced.
var syncDir = func(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Path is the file the store writes.
func (s *Store) Path() string { return s.path }

// Get returns a copy of the credential's record, or tokens.ErrNotFound.
func (s *Store) Get(_ context.Context, credential string) (*tokens.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if err := s.refreshLocked(); err != nil {
		return nil, err
	}
	r, ok := s.recs[credential]
	if !ok {
		return nil, tokens.ErrNotFound
	}
	return r.Clone(), nil
}

// List returns copies of every record, in no particular order.
func (s *Store) List(_ context.Context) ([]*tokens.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if err := s.refreshLocked(); err != nil {
		return nil, err
	}
	out := make([]*tokens.Record, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, r.Clone())
	}
	return out, nil
}

// Put stores rec when the stored generation equals expect (0: no record),
// as documented on tokens.Store, against the file as it is on disk now. It
// returns once the file is durable. On an error before the rename neither
// the file nor the in-memory copy changed; after it (the directory fsync
// failed) both hold the new document, whose durability is unknown.
func (s *Store) Put(_ context.Context, rec *tokens.Record, expect uint64) error {
	if rec == nil || rec.Credential == "" {
		return errors.New("filestore: put: record without credential name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	unlock, err := s.lockFile()
	if err != nil {
		return err
	}
	defer unlock()
	// A vanished file is written again by this write, from memory.
	if err := s.reloadLocked(); err != nil && !errors.Is(err, errVanished) {
		return err
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
	unlock, err := s.lockFile()
	if err != nil {
		return err
	}
	defer unlock()
	// A vanished file is written again by this write, from memory.
	if err := s.reloadLocked(); err != nil && !errors.Is(err, errVanished) {
		return err
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
	return s.write(recs)
}

// Ping reports whether the store is open, its directory reachable and its
// file readable. A file that vanished is written again from memory first;
// Ping fails while that fails.
func (s *Store) Ping(_ context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	dir := filepath.Dir(s.path)
	if _, err := os.Stat(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("filestore: %w", err)
	}
	err := s.reloadLocked()
	if errors.Is(err, errVanished) {
		if err := s.recreateLocked(); err != nil {
			return fmt.Errorf("filestore: %s vanished and cannot be written again: %w", s.path, err)
		}
		return nil
	}
	return err
}

// Close makes every later call fail. Every Put was already durable, so
// there is nothing to flush.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// write replaces the file with recs atomically and durably. From the rename
// on, the in-memory copy is recs too, even when the directory fsync then
// fails, so memory never lags the file.
func (s *Store) write(recs map[string]*tokens.Record) error {
	data, err := s.codec.encode(recs)
	if err != nil {
		return err
	}
	// lockFile, which every writer holds, has created and checked dir.
	dir := filepath.Dir(s.path)
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
	s.recs = recs
	if s.vanished {
		s.vanished = false
		s.log.Warn("the vanished token file was written again from memory", "path", s.path)
	}
	if fi, err := os.Stat(s.path); err == nil {
		s.seen = fi
	} else {
		// Unknown: the next access reads the file again.
		s.seen = nil
	}
	// The rename is durable only once the directory entry is.
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("filestore: sync directory %s: %w", dir, err)
	}
	return nil
}
