package filestore

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// logBuffer collects what a slog text handler writes, for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestVanishedFileRecreated: a token file deleted while the store holds
// records is written again from memory, with a warning, at the next read,
// Ping or write; no record is forgotten.
func TestVanishedFileRecreated(t *testing.T) {
	for _, access := range []struct {
		name string
		do   func(s *Store) error
	}{
		{"Get", func(s *Store) error { _, err := s.Get(context.Background(), "a"); return err }},
		{"List", func(s *Store) error { _, err := s.List(context.Background()); return err }},
		{"Ping", func(s *Store) error { return s.Ping(context.Background()) }},
		{"Put", func(s *Store) error {
			rec, err := s.Get(context.Background(), "b")
			if err != nil {
				return err
			}
			return s.Put(context.Background(), rec, rec.Generation)
		}},
	} {
		t.Run(access.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.json")
			var logs logBuffer
			s, err := Open(path, nil, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"a", "b"} {
				if err := s.Put(context.Background(), sampleRecord(name), 0); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := access.do(s); err != nil {
				t.Fatalf("%s after the file was deleted = %v", access.name, err)
			}
			again, err := Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			list, err := again.List(context.Background())
			if err != nil || len(list) != 2 {
				t.Fatalf("recreated file holds %d records (%v), want both", len(list), err)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("recreated file: %v, %v; want mode 0600", fi, err)
			}
			if got := logs.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "written again from memory") {
				t.Fatalf("log %q: want a warning that the file was written again", got)
			}
		})
	}
}

// TestUnwritableDirectory: the token file's directory replaced by a regular
// file stops every write, even as root. Reads are answered from memory,
// Put and Ping fail, and once the directory can be created again the next
// write recreates the file with every record.
func TestUnwritableDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "tokens.json")
	s, err := Open(path, nil, WithLogger(slog.New(slog.NewTextHandler(&logBuffer{}, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		if err := s.Put(ctx, sampleRecord(name), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Get(ctx, "a")
	if err != nil || rec.AccessToken != sampleRecord("a").AccessToken {
		t.Fatalf("Get with the directory gone = %+v, %v; want the record from memory", rec, err)
	}
	if err := s.Put(ctx, rec, rec.Generation); err == nil {
		t.Fatal("Put succeeded with the directory replaced by a file")
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded while the vanished file cannot be written")
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	rec.AccessToken = "access-new"
	if err := s.Put(ctx, rec, rec.Generation); err != nil {
		t.Fatalf("Put once the directory can be created = %v", err)
	}
	again, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, err := again.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("recreated file holds %d records (%v), want both", len(list), err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("recreated directory: %v, %v; want mode 0700", fi, err)
	}
}
