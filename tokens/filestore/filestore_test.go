package filestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

var (
	key1 = bytes.Repeat([]byte{1}, 32)
	key2 = bytes.Repeat([]byte{2}, 32)
)

// sampleRecord sets every field of a Record (Generation is the store's),
// so a round trip that drops or mangles any of them is caught.
func sampleRecord(name string) *tokens.Record {
	return &tokens.Record{
		Credential:       name,
		AccessToken:      "access-SECRET-" + name,
		AccessExpiresAt:  time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC),
		RefreshToken:     "refresh-SECRET-" + name,
		RefreshExpiresAt: time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC),
		Advertisers:      []tokens.Advertiser{{ID: "7012345678901234567", Name: "Shop"}, {ID: "7012345678901234568"}},
		Scopes:           []string{"4", "100"},
		OpenID:           "open-" + name,
		AuthorizedAt:     time.Date(2029, 1, 2, 3, 4, 5, 0, time.UTC),
		LastRefresh:      tokens.RefreshResult{At: time.Date(2029, 6, 1, 0, 0, 0, 0, time.UTC), OK: true, Error: "an earlier attempt failed"},
		ReauthRequired:   true,
		ReauthReason:     "TikTok refused the refresh token (code 40107)",
		AccessRejected:   true,
	}
}

// TestSampleRecordFillsEveryField keeps sampleRecord complete as Record
// grows, so the round-trip tests compare every field.
func TestSampleRecordFillsEveryField(t *testing.T) {
	v := reflect.ValueOf(*sampleRecord("main"))
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.Name != "Generation" && v.Field(i).IsZero() {
			t.Errorf("sampleRecord leaves %s zero", f.Name)
		}
	}
	lr := reflect.ValueOf(sampleRecord("main").LastRefresh)
	for i := range lr.NumField() {
		if lr.Field(i).IsZero() {
			t.Errorf("sampleRecord leaves LastRefresh.%s zero", lr.Type().Field(i).Name)
		}
	}
}

// writeStore creates a store file at a fresh path holding one record.
func writeStore(t *testing.T, key []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "tokens.json")
	s, err := Open(path, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), sampleRecord("main"), 0); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"sealed", key1}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := writeStore(t, tc.key)
			s, err := Open(path, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx, "main")
			if err != nil {
				t.Fatal(err)
			}
			want := sampleRecord("main")
			want.Generation = 1
			if !recordsEqual(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			secretsInFile := bytes.Contains(data, []byte("SECRET"))
			if secretsInFile != (tc.key == nil) {
				t.Fatalf("tokens in clear in the file: %v, want %v:\n%s", secretsInFile, tc.key == nil, data)
			}
		})
	}
}

// recordsEqual compares every field. Times are compared as instants (the
// file keeps the offset, not the *time.Location) and an empty list equals
// none (the file omits both).
func recordsEqual(a, b *tokens.Record) bool {
	return reflect.DeepEqual(normalised(a), normalised(b))
}

func normalised(r *tokens.Record) *tokens.Record {
	if r == nil {
		return nil
	}
	c := r.Clone()
	for _, t := range []*time.Time{&c.AccessExpiresAt, &c.RefreshExpiresAt, &c.AuthorizedAt, &c.LastRefresh.At} {
		*t = t.UTC()
	}
	if len(c.Advertisers) == 0 {
		c.Advertisers = nil
	}
	if len(c.Scopes) == 0 {
		c.Scopes = nil
	}
	return c
}

func TestPutCompareAndSwap(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "tokens.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		expect  uint64
		wantErr error
		wantGen uint64
	}{
		{expect: 1, wantErr: tokens.ErrConflict},
		{expect: 0, wantGen: 1},
		{expect: 0, wantErr: tokens.ErrConflict},
		{expect: 1, wantGen: 2},
		{expect: 1, wantErr: tokens.ErrConflict},
		{expect: 2, wantGen: 3},
	}
	for i, st := range steps {
		rec := sampleRecord("main")
		err := s.Put(ctx, rec, st.expect)
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil && err != nil) {
			t.Fatalf("step %d: Put(expect %d) = %v, want %v", i, st.expect, err, st.wantErr)
		}
		if err == nil && rec.Generation != st.wantGen {
			t.Fatalf("step %d: generation %d, want %d", i, rec.Generation, st.wantGen)
		}
	}
	got, err := s.Get(ctx, "main")
	if err != nil || got.Generation != 3 {
		t.Fatalf("Get = %+v, %v; want generation 3", got, err)
	}
	// What Get returns is a copy.
	got.Advertisers[0].ID = "changed"
	again, _ := s.Get(ctx, "main")
	if again.Advertisers[0].ID == "changed" {
		t.Fatal("Get returned the stored record, not a copy")
	}
	if _, err := s.Get(ctx, "other"); !errors.Is(err, tokens.ErrNotFound) {
		t.Fatalf("Get(other) = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	reopened, err := Open(s.Path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if list, _ := reopened.List(ctx); len(list) != 0 {
		t.Fatalf("after Delete, reopened store lists %d records", len(list))
	}
}

func TestModesAndNoTempFiles(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "new", "dir")
	path := filepath.Join(dir, "tokens.json")
	s, err := Open(path, key1)
	if err != nil {
		t.Fatal(err)
	}
	var gen uint64
	for i := range 5 {
		rec := sampleRecord("main")
		if err := s.Put(ctx, rec, gen); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		gen = rec.Generation
	}
	lock := filepath.Join(dir, ".tokens.json.lock")
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600, lock: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %#o, want %#o", p, fi.Mode().Perm(), want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != ".tokens.json.lock tokens.json" {
		t.Fatalf("directory holds %v, want only the lock file and tokens.json", names)
	}
}

func TestMissingFileIsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent", "tokens.json")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if list, err := s.List(context.Background()); err != nil || len(list) != 0 {
		t.Fatalf("List = %v, %v; want empty", list, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open created the file: %v", err)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping = %v", err)
	}
}

// TestRefusedFiles: every bad file is reported with its name and a useful
// hint, and is byte-for-byte unchanged afterwards.
func TestRefusedFiles(t *testing.T) {
	tests := []struct {
		name    string
		written []byte // key the file is written with
		key     []byte // key used to open
		prepare func(t *testing.T, path string)
		want    []string // substrings of the error
	}{
		{
			name: "wide permissions", key: nil,
			prepare: func(t *testing.T, path string) { mustChmod(t, path, 0o644) },
			want:    []string{"mode 0644", "wider than 0600", "chmod 600 "},
		},
		{
			name: "group readable", key: nil,
			prepare: func(t *testing.T, path string) { mustChmod(t, path, 0o640) },
			want:    []string{"chmod 600"},
		},
		{
			name: "truncated", key: nil,
			prepare: func(t *testing.T, path string) {
				data := mustRead(t, path)
				mustWrite(t, path, data[:len(data)/2])
			},
			want: []string{"cannot parse", "offset"},
		},
		{
			name: "empty file", key: nil,
			prepare: func(t *testing.T, path string) { mustWrite(t, path, nil) },
			want:    []string{"cannot parse", "offset 0"},
		},
		{
			name: "corrupted byte", key: nil,
			prepare: func(t *testing.T, path string) {
				data := mustRead(t, path)
				i := bytes.Index(data, []byte(`"credentials"`))
				data[i] = '}'
				mustWrite(t, path, data)
			},
			want: []string{"cannot parse at offset"},
		},
		{
			name: "wrong type", key: nil,
			prepare: func(t *testing.T, path string) {
				mustWrite(t, path, []byte(`{"version":1,"credentials":{"main":{"generation":"one"}}}`))
			},
			want: []string{"cannot parse at offset", "generation"},
		},
		{
			name: "unknown version", key: nil,
			prepare: func(t *testing.T, path string) {
				mustWrite(t, path, []byte(`{"version":2,"credentials":{}}`))
			},
			want: []string{"unsupported version 2"},
		},
		{
			name: "trailing garbage", key: nil,
			prepare: func(t *testing.T, path string) {
				mustWrite(t, path, append(mustRead(t, path), []byte("{}")...))
			},
			want: []string{"after the document"},
		},
		{name: "wrong key", written: key1, key: key2, want: []string{"wrong store.encryption_key for "}},
		{
			name: "sealed but no key", written: key1, key: nil,
			want: []string{"encrypted but no store.encryption_key"},
		},
		{
			name: "tampered token", written: key1, key: key1,
			prepare: func(t *testing.T, path string) {
				data := mustRead(t, path)
				i := bytes.Index(data, []byte(`"access_token": "`)) + len(`"access_token": "`)
				data[i] ^= 'A' ^ 'B'
				if data[i] == '"' {
					data[i] = 'C'
				}
				mustWrite(t, path, data)
			},
			want: []string{"access_token cannot be decrypted"},
		},
		{
			name: "plain but key configured", key: key1,
			want: []string{"unencrypted but store.encryption_key is configured"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeStore(t, tc.written)
			if tc.prepare != nil {
				tc.prepare(t, path)
			}
			before := mustRead(t, path)
			fi, _ := os.Stat(path)
			_, err := Open(path, tc.key)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			msg := err.Error()
			for _, w := range append(tc.want, path, "filestore: ") {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "SECRET") {
				t.Errorf("error %q shows a token", msg)
			}
			after := mustRead(t, path)
			if !bytes.Equal(before, after) {
				t.Error("the refused file was changed")
			}
			fi2, _ := os.Stat(path)
			if fi.Mode() != fi2.Mode() || !fi.ModTime().Equal(fi2.ModTime()) {
				t.Error("the refused file's mode or time changed")
			}
		})
	}
}

func TestWrongKeyIs(t *testing.T) {
	path := writeStore(t, key1)
	if _, err := Open(path, key2); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open with another key = %v, want ErrWrongKey", err)
	}
	if _, err := Open(path, []byte("short")); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("Open with a short key = %v", err)
	}
}

func TestClosed(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "tokens.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, sampleRecord("main"), 0); err == nil {
		t.Error("Put after Close succeeded")
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping after Close succeeded")
	}
}

func mustChmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// FuzzDecode: the decoder never panics, and whatever it accepts encodes
// and decodes again to the same records.
func FuzzDecode(f *testing.F) {
	plain, _ := newCodec(nil)
	sealed, _ := newCodec(key1)
	for _, c := range []*codec{plain, sealed} {
		data, err := c.encode(map[string]*tokens.Record{"main": withGen(sampleRecord("main")), "b": withGen(sampleRecord("b"))})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/3])
	}
	f.Add([]byte(`{"version":1,"credentials":{}}`))
	f.Add([]byte(`{"version":1,"credentials":{"x":null}}`))
	f.Add([]byte(`{"version":1,"encryption":{"algorithm":"AES-256-GCM","key_check":"AAAA"},"credentials":{}}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range []*codec{plain, sealed} {
			recs, err := c.decode(data)
			if err != nil {
				continue
			}
			again, err := c.encode(recs)
			if err != nil {
				t.Fatalf("encode of decoded records: %v", err)
			}
			recs2, err := c.decode(again)
			if err != nil {
				t.Fatalf("decode of re-encoded document: %v", err)
			}
			if len(recs2) != len(recs) {
				t.Fatalf("%d records became %d", len(recs), len(recs2))
			}
			for name, r := range recs {
				if r2 := recs2[name]; !recordsEqual(r, r2) {
					t.Fatalf("record %q changed in a round trip:\n%+v\n%+v", name, r, r2)
				}
			}
		}
	})
}

func withGen(r *tokens.Record) *tokens.Record {
	r.Generation = 1
	return r
}

// TestAnotherProcessWriteIsNeverOverwritten: a second store on the same
// file (another process: an authorize command while serve runs) writes a
// newer record; the first store's stale compare-and-swap is refused, and
// its reads and the next write see the newer document.
func TestAnotherProcessWriteIsNeverOverwritten(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.json")
	a, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := sampleRecord("main")
	if err := a.Put(ctx, first, 0); err != nil {
		t.Fatal(err)
	}
	b, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	newer := sampleRecord("main")
	newer.AccessToken = "written-by-the-other-process"
	if err := b.Put(ctx, newer, first.Generation); err != nil {
		t.Fatal(err)
	}
	stale := sampleRecord("main")
	stale.AccessToken = "stale"
	if err := a.Put(ctx, stale, first.Generation); !errors.Is(err, tokens.ErrConflict) {
		t.Fatalf("stale put = %v, want ErrConflict", err)
	}
	got, err := a.Get(ctx, "main")
	if err != nil || got.AccessToken != "written-by-the-other-process" || got.Generation != newer.Generation {
		t.Fatalf("a.Get after the other write = %+v, %v", got, err)
	}
	reopened, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := reopened.Get(ctx, "main"); r.AccessToken != "written-by-the-other-process" {
		t.Fatalf("file holds %q", r.AccessToken)
	}
}

// TestRefusedDirectory: a directory others can write to is
// refused with an error naming it, at Open and, should its mode be widened
// later, at the next write; the token file is never touched.
func TestRefusedDirectory(t *testing.T) {
	for _, mode := range []os.FileMode{0o707, 0o777, 0o777 | os.ModeSticky} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := context.Background()
			path := writeStore(t, nil)
			dir := filepath.Dir(path)
			opened, err := Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			before := mustRead(t, path)
			fi, _ := os.Stat(path)
			mustChmod(t, dir, mode)
			t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })

			_, openErr := Open(path, nil)
			rec := sampleRecord("main")
			putErr := opened.Put(ctx, rec, 1)
			for what, err := range map[string]error{"Open": openErr, "Put": putErr} {
				if err == nil {
					t.Fatalf("%s in a directory of mode %v succeeded", what, mode)
				}
				for _, want := range []string{"filestore: ", "directory " + dir, "others can write", "chmod o-w " + dir} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s error %q does not contain %q", what, err, want)
					}
				}
			}
			if !bytes.Equal(before, mustRead(t, path)) {
				t.Error("the token file was changed")
			}
			fi2, _ := os.Stat(path)
			if fi.Mode() != fi2.Mode() || !fi.ModTime().Equal(fi2.ModTime()) || !os.SameFile(fi, fi2) {
				t.Error("the token file was replaced or its mode or time changed")
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 2 {
				t.Errorf("directory holds %d entries, want the file and its lock only", len(entries))
			}
		})
	}
	// Others may not write; the owner, or its group (a Kubernetes fsGroup
	// volume: 2775), may.
	for _, mode := range []os.FileMode{0o755, 0o500, 0o770, 0o775 | os.ModeSetgid} {
		path := writeStore(t, nil)
		mustChmod(t, filepath.Dir(path), mode)
		t.Cleanup(func() { _ = os.Chmod(filepath.Dir(path), 0o700) })
		if _, err := Open(path, nil); err != nil {
			t.Errorf("directory mode %v: %v", mode, err)
		}
	}
}

// TestCreatedDirectoriesAreDurable: every directory the store creates is
// synced into its parent, and the file's directory after the rename.
func TestCreatedDirectoriesAreDurable(t *testing.T) {
	var synced []string
	orig := syncDir
	syncDir = func(dir string) error {
		synced = append(synced, dir)
		return orig(dir)
	}
	t.Cleanup(func() { syncDir = orig })
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "a", "b")
	s, err := Open(filepath.Join(b, "tokens.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(synced) != 0 {
		t.Fatalf("Open synced %v before any write", synced)
	}
	if err := s.Put(context.Background(), sampleRecord("main"), 0); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(synced, " "), strings.Join([]string{root, a, b}, " "); got != want {
		t.Fatalf("synced %q, want %q: each new directory's parent, then the file's directory", got, want)
	}
	for _, d := range []string{a, b} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want mode 0700", d, fi.Mode(), err)
		}
	}
	// An existing directory is not created again: only the rename is synced.
	synced = nil
	if err := s.Put(context.Background(), sampleRecord("main"), 1); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(synced, " "); got != b {
		t.Fatalf("second write synced %q, want %q", got, b)
	}
}

// TestPutGarbageIsLessThanTheFile: every Put encodes every record again,
// so garbage the size of the file per Put adds up to O(credentials²)
// bytes when each credential's advertiser listing is stored at start-up
// (the idle RSS of a proxy with 50 credentials in BENCHMARKS.md). The
// encoder's buffers are reused: what a Put allocates is well below the
// document it writes.
func TestPutGarbageIsLessThanTheFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.json")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 50 {
		if err := s.Put(ctx, sampleRecord(fmt.Sprintf("cred%02d", i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := s.Get(ctx, "cred07")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// The least any Put allocated: the race detector drops a quarter of
	// what encoding/json returns to its sync.Pool, and a collection
	// empties it, so some Puts allocate json's encoder state afresh.
	least := uint64(math.MaxUint64)
	var before, after runtime.MemStats
	for range 20 {
		runtime.ReadMemStats(&before)
		if err := s.Put(ctx, rec, rec.Generation); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	if least >= uint64(fi.Size()) {
		t.Errorf("a Put of one of 50 records allocated at least %d bytes; the file is %d", least, fi.Size())
	}
}
