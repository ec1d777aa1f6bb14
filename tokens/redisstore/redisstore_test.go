package redisstore_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/redistest"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/redisstore"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/seal"
)

func newSealer(t *testing.T) *seal.Sealer {
	t.Helper()
	key := make([]byte, seal.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	s, err := seal.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// open returns a store on srv closed at cleanup.
func open(t *testing.T, srv *redistest.Server, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	opts.Address = srv.Addr
	st, err := redisstore.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// raw is a plain client on srv, for looking at and tampering with keys.
func raw(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

func record(name, access, refresh string) *tokens.Record {
	return &tokens.Record{
		Credential: name, AccessToken: access, RefreshToken: refresh,
		AccessExpiresAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		Advertisers:     []tokens.Advertiser{{ID: "7001", Name: "Shop"}},
		AuthorizedAt:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func TestPutIsCompareAndSwap(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a := open(t, srv, redisstore.Options{})
	b := open(t, srv, redisstore.Options{}) // another replica
	ctx := t.Context()

	if _, err := a.Get(ctx, "main"); !errors.Is(err, tokens.ErrNotFound) {
		t.Fatalf("Get of nothing: %v, want ErrNotFound", err)
	}
	r1 := record("main", "AT1", "RT1")
	if err := a.Put(ctx, r1, 0); err != nil {
		t.Fatal(err)
	}
	if r1.Generation != 1 {
		t.Fatalf("generation after first Put = %d, want 1", r1.Generation)
	}
	if err := b.Put(ctx, record("main", "AT-other", "RT-other"), 0); !errors.Is(err, tokens.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	r2 := record("main", "AT2", "RT2")
	if err := b.Put(ctx, r2, 1); err != nil {
		t.Fatal(err)
	}
	stale := record("main", "AT-stale", "RT-stale")
	if err := a.Put(ctx, stale, 1); !errors.Is(err, tokens.ErrConflict) {
		t.Fatalf("Put with stale generation 1: %v, want ErrConflict", err)
	}
	if stale.Generation != 0 {
		t.Errorf("a refused Put changed rec.Generation to %d", stale.Generation)
	}
	got, err := a.Get(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != "AT2" || got.RefreshToken != "RT2" || got.Generation != 2 ||
		!got.AccessExpiresAt.Equal(r2.AccessExpiresAt) || len(got.Advertisers) != 1 || got.Advertisers[0].ID != "7001" {
		t.Fatalf("stored %+v, want the second writer's record at generation 2", got)
	}

	if err := a.Put(ctx, record("other", "ATo", "RTo"), 0); err != nil {
		t.Fatal(err)
	}
	list, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]uint64{}
	for _, r := range list {
		names[r.Credential] = r.Generation
	}
	if len(names) != 2 || names["main"] != 2 || names["other"] != 1 {
		t.Fatalf("List = %v, want main at 2 and other at 1", names)
	}

	if err := b.Delete(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "main"); err != nil {
		t.Fatalf("deleting a missing record: %v", err)
	}
	if _, err := a.Get(ctx, "main"); !errors.Is(err, tokens.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if list, _ := a.List(ctx); len(list) != 1 || list[0].Credential != "other" {
		t.Fatalf("List after Delete = %v, want only other", list)
	}
	if err := a.Put(ctx, record("main", "AT3", "RT3"), 0); err != nil {
		t.Fatalf("re-creating after Delete: %v", err)
	}
}

// Many replicas racing to store the next generation: exactly one wins.
func TestPutConcurrentOneWinner(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	first := open(t, srv, redisstore.Options{})
	if err := first.Put(ctx, record("main", "AT0", "RT0"), 0); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		st := open(t, srv, redisstore.Options{})
		wg.Go(func() { errs[i] = st.Put(ctx, record("main", "AT", "RT"), 1) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, tokens.ErrConflict):
			t.Errorf("Put: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent Puts at generation 1 succeeded, want exactly 1", won, n)
	}
}

func TestSealed(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	sealer := newSealer(t)
	st := open(t, srv, redisstore.Options{Sealer: sealer, KeyPrefix: "sealed:"})
	if err := st.Put(ctx, record("main", "ACCESS-SECRET-1", "REFRESH-SECRET-1"), 0); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != "ACCESS-SECRET-1" || got.RefreshToken != "REFRESH-SECRET-1" || got.Generation != 1 {
		t.Fatalf("Get = %+v, want the tokens back at generation 1", got)
	}

	rc := raw(t, srv)
	keys, err := rc.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no keys in Redis after Put")
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "sealed:") {
			t.Errorf("key %q lacks the configured prefix", k)
		}
		dump, err := rc.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(dump, "SECRET") {
			t.Errorf("key %q holds a token in the clear", k)
		}
	}

	plain := open(t, srv, redisstore.Options{KeyPrefix: "sealed:"})
	if _, err := plain.Get(ctx, "main"); err == nil || !strings.Contains(err.Error(), "encrypted but no store.encryption_key") {
		t.Errorf("Get of a sealed record without a key: %v", err)
	}
	wrong := open(t, srv, redisstore.Options{KeyPrefix: "sealed:", Sealer: newSealer(t)})
	if _, err := wrong.Get(ctx, "main"); err == nil || !strings.Contains(err.Error(), "cannot be decrypted") {
		t.Errorf("Get with the wrong key: %v", err)
	}

	// A sealed record copied under another credential is refused.
	if err := rc.Copy(ctx, "sealed:cred:main", "sealed:cred:other", 0, false).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "other"); err == nil || !strings.Contains(err.Error(), `names credential "main"`) {
		t.Errorf("Get of a record moved to another credential: %v", err)
	}

	// Plain records are not silently read as sealed ones.
	if err := plain.Put(ctx, record("plain", "AT", "RT"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "plain"); err == nil || !strings.Contains(err.Error(), "stored unencrypted but store.encryption_key is configured") {
		t.Errorf("Get of a plain record with a key: %v", err)
	}
}

func TestPing(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	st := open(t, srv, redisstore.Options{DialTimeout: time.Second})
	if err := st.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	srv.Stop()
	if err := st.Ping(t.Context()); err == nil {
		t.Fatal("Ping of a stopped server succeeded")
	}
	srv.Start()
	if err := st.Ping(t.Context()); err != nil {
		t.Fatalf("Ping after restart: %v", err)
	}
}

func TestAuthentication(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Args: []string{"--user", "proxy", "on", ">s3cret", "~*", "&*", "+@all"}})
	ctx := t.Context()
	good := open(t, srv, redisstore.Options{Username: "proxy", Password: "s3cret"})
	if err := good.Put(ctx, record("main", "AT", "RT"), 0); err != nil {
		t.Fatalf("Put as the configured user: %v", err)
	}
	bad := open(t, srv, redisstore.Options{Username: "proxy", Password: "wrong"})
	if err := bad.Ping(ctx); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("Ping with a wrong password: %v, want WRONGPASS", err)
	}
}

func TestOpenRefusesBadAddress(t *testing.T) {
	if _, err := redisstore.Open(redisstore.Options{Address: "no-port"}); err == nil || !strings.HasPrefix(err.Error(), "redisstore: ") {
		t.Fatalf("Open(no-port) = %v, want a redisstore error", err)
	}
}

// until polls cond every 10ms until it holds or the deadline passes.
func until(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

func TestSetLoggerSendsGoRedisMessagesToSlog(t *testing.T) {
	var buf bytes.Buffer
	redisstore.SetLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(func() { redisstore.SetLogger(slog.New(slog.NewTextHandler(io.Discard, nil))) })
	// Nothing listens on port 1: the pool's failed dial is logged.
	st, err := redisstore.Open(redisstore.Options{Address: "127.0.0.1:1", DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Ping(t.Context()); err == nil {
		t.Fatal("Ping of a closed port succeeded")
	}
	if !strings.Contains(buf.String(), `"level":"WARN"`) || !strings.Contains(buf.String(), `"source":"go-redis"`) {
		t.Fatalf("go-redis's message did not reach the slog logger: %q", buf.String())
	}
}
