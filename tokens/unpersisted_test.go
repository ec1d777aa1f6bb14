package tokens_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/filestore"
)

// failingStore refuses every Put while failing is set, as a read-only or
// full disk does.
type failingStore struct {
	tokens.Store
	mu      sync.Mutex
	failing bool
}

func (s *failingStore) Put(ctx context.Context, rec *tokens.Record, expect uint64) error {
	s.mu.Lock()
	failing := s.failing
	s.mu.Unlock()
	if failing {
		return errors.New("write tokens.json: no space left on device")
	}
	return s.Store.Put(ctx, rec, expect)
}

func (s *failingStore) fail(on bool) {
	s.mu.Lock()
	s.failing = on
	s.mu.Unlock()
}

// checkUnpersisted asserts what the Manager shows about credName's grant:
// the gauge, Unpersisted, and Ready.
func checkUnpersisted(t *testing.T, e *env, want bool) {
	t.Helper()
	g, ok := gaugeValue(t, e.reg, "grant_unpersisted")
	if !ok || (g == 1) != want {
		t.Errorf("grant_unpersisted = %v (present %v), want unpersisted %v", g, ok, want)
	}
	names := e.m.Unpersisted()
	if (len(names) == 1 && names[0] == credName) != want || (!want && len(names) != 0) {
		t.Errorf("Unpersisted() = %v, want unpersisted %v", names, want)
	}
	err := e.m.Ready(context.Background())
	if want && (err == nil || !strings.Contains(err.Error(), `"`+credName+`"`)) {
		t.Errorf("Ready = %v, want an error naming %q", err, credName)
	}
	if !want && err != nil {
		t.Errorf("Ready = %v, want nil", err)
	}
}

// TestUnpersistedGrantRetried: a rotated refresh token the store refuses
// is held in memory, shown (gauge, Ready, write failures), retried with a
// jittered backoff capped at 10s, never asked of TikTok again, and stored
// once the store takes it.
func TestUnpersistedGrantRetried(t *testing.T) {
	var fs *failingStore
	e := newEnv(t, func(e *env) {
		fs = &failingStore{Store: e.store}
		e.store = fs
		e.opts.Rand = func() float64 { return 0.5 }
	})
	e.authorize()
	checkUnpersisted(t, e, false)
	exp := e.record().AccessExpiresAt
	fs.fail(true)
	e.m.Start(context.Background())
	e.waitRefreshTimer()
	e.clock.Set(exp.Add(-time.Hour))
	waitFor(t, "the proactive refresh", func() bool { return e.api.calls() == 1 })
	waitFor(t, "the grant held", func() bool { return len(e.m.Unpersisted()) == 1 })
	checkUnpersisted(t, e, true)

	for attempt := 2; attempt <= 12; attempt++ {
		now := e.clock.Now()
		failed := testutil.ToFloat64(e.opts.Metrics.StoreWriteFailures)
		at := e.clock.waitWaiter(t, fmt.Sprintf("retry %d within 10s", attempt), func(at time.Time) bool {
			return at.After(now) && at.Before(exp)
		})
		if d := at.Sub(now); d > 10*time.Second {
			t.Fatalf("retry %d of the held grant after %v, want at most 10s", attempt, d)
		}
		if tok := e.mustToken(); tok != "access-0" {
			t.Fatalf("Token = %q while the new grant is not stored, want the old, still valid token", tok)
		}
		e.clock.Set(at)
		waitFor(t, "the write retried", func() bool { return testutil.ToFloat64(e.opts.Metrics.StoreWriteFailures) > failed })
		checkUnpersisted(t, e, true)
	}
	if n := e.api.calls(); n != 1 {
		t.Fatalf("%d refresh calls, want 1: the held grant is stored, never asked for again", n)
	}

	fs.fail(false)
	now := e.clock.Now()
	e.clock.Set(e.clock.waitWaiter(t, "the next retry", func(at time.Time) bool { return at.After(now) && at.Before(exp) }))
	waitFor(t, "the held grant stored", func() bool { return len(e.m.Unpersisted()) == 0 })
	if got := e.record().RefreshToken; got != "refresh-1" {
		t.Fatalf("stored refresh token %q, want refresh-1", got)
	}
	checkUnpersisted(t, e, false)
	if tok := e.mustToken(); tok != "access-1" {
		t.Fatalf("Token = %q after the grant was stored, want access-1", tok)
	}
}

// TestFlush: at shutdown Flush stores a held grant as soon as the store
// takes it; when the store refuses it until ctx ends, Flush's error names
// the credential whose grant is lost.
func TestFlush(t *testing.T) {
	for _, recovers := range []bool{true, false} {
		t.Run(fmt.Sprintf("store recovers %v", recovers), func(t *testing.T) {
			var fs *failingStore
			e := newEnv(t, func(e *env) {
				fs = &failingStore{Store: e.store}
				e.store = fs
			})
			e.authorize()
			fs.fail(true)
			e.clock.Set(e.record().AccessExpiresAt)
			if _, err := e.token(); err == nil {
				t.Fatal("Token served a grant the store refused")
			}
			checkUnpersisted(t, e, true)
			if !recovers {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				err := e.m.Flush(ctx)
				if err == nil || !strings.Contains(err.Error(), `credential "main"`) || !strings.Contains(err.Error(), "lost") {
					t.Fatalf("Flush = %v, want an error naming the lost grant of %q", err, credName)
				}
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			go func() {
				// Flush retries on its own schedule: the store recovers while
				// it waits.
				waitFor(t, "a retry by Flush", func() bool {
					return testutil.ToFloat64(e.opts.Metrics.StoreWriteFailures) >= 4
				})
				fs.fail(false)
			}()
			if err := e.m.Flush(ctx); err != nil {
				t.Fatalf("Flush = %v after the store recovered", err)
			}
			if got := e.record().RefreshToken; got != "refresh-1" {
				t.Fatalf("stored refresh token %q, want refresh-1", got)
			}
			checkUnpersisted(t, e, false)
		})
	}
}

// TestUnpersistedOnRealFileStore: the file store's directory replaced by a
// regular file (which stops writes even for root) refuses the rotated
// grant; the Manager holds it, keeps the old token, and stores it once the
// directory is back, recreating the token file from memory.
func TestUnpersistedOnRealFileStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "tokens.json")
	e := newEnv(t, func(e *env) {
		st, err := filestore.Open(path, nil, filestore.WithLogger(e.opts.Logger))
		if err != nil {
			t.Fatal(err)
		}
		e.store = st
	})
	e.authorize()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(e.record().AccessExpiresAt)
	var re *tokens.RefreshError
	if _, err := e.token(); !errors.As(err, &re) {
		t.Fatalf("Token with the store unwritable = %v, want *RefreshError", err)
	}
	checkUnpersisted(t, e, true)
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(re.RetryAfter)
	if tok, err := e.token(); err != nil || tok != "access-1" {
		t.Fatalf("Token once the directory is back = %q, %v; want access-1", tok, err)
	}
	checkUnpersisted(t, e, false)
	again, err := filestore.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := again.Get(context.Background(), credName)
	if err != nil || rec.RefreshToken != "refresh-1" {
		t.Fatalf("token file after recovery: %+v, %v; want refresh-1", rec, err)
	}
}
