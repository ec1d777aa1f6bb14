package redisstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/redistest"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/redisstore"
)

// Replicas racing for one credential's lease: exactly one holds it; the
// others hold nothing and no error.
func TestLeaseExclusive(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	const n = 8
	var wg sync.WaitGroup
	got := make([]bool, n)
	for i := range n {
		st := open(t, srv, redisstore.Options{})
		wg.Go(func() {
			l, ok, err := st.Acquire(ctx, "main", time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			if ok != (l != nil) {
				t.Errorf("Acquire: ok %v with lease %v", ok, l)
			}
			got[i] = ok
		})
	}
	wg.Wait()
	held := 0
	for _, ok := range got {
		if ok {
			held++
		}
	}
	if held != 1 {
		t.Fatalf("%d of %d replicas got the lease, want exactly 1", held, n)
	}
	// Leases are per credential.
	other := open(t, srv, redisstore.Options{})
	if _, ok, err := other.Acquire(ctx, "second", time.Minute); err != nil || !ok {
		t.Fatalf("lease of another credential: ok %v, err %v", ok, err)
	}
}

func TestLeaseExtend(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	st := open(t, srv, redisstore.Options{})
	rc := raw(t, srv)
	const ttl = time.Minute
	l, ok, err := st.Acquire(ctx, "main", ttl)
	if err != nil || !ok {
		t.Fatalf("Acquire: ok %v, err %v", ok, err)
	}
	// Stand in for time passing: the lease has one second left.
	if err := rc.PExpire(ctx, "tiktok-auth-proxy:lease:main", time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if err := l.Extend(ctx); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	left, err := rc.PTTL(ctx, "tiktok-auth-proxy:lease:main").Result()
	if err != nil {
		t.Fatal(err)
	}
	if left < ttl/2 || left > ttl {
		t.Fatalf("after Extend the lease has %s left, want about %s", left, ttl)
	}
	select {
	case <-l.Lost():
		t.Fatal("Lost closed for a lease that was extended")
	default:
	}
}

func TestLeaseRelease(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	a := open(t, srv, redisstore.Options{})
	b := open(t, srv, redisstore.Options{})
	la, ok, err := a.Acquire(ctx, "main", time.Minute)
	if err != nil || !ok {
		t.Fatalf("Acquire: ok %v, err %v", ok, err)
	}
	if _, ok, _ := b.Acquire(ctx, "main", time.Minute); ok {
		t.Fatal("a held lease was acquired by another replica")
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if err := la.Extend(ctx); !errors.Is(err, tokens.ErrLeaseLost) {
		t.Fatalf("Extend after Release: %v, want ErrLeaseLost", err)
	}
	lb, ok, err := b.Acquire(ctx, "main", time.Minute)
	if err != nil || !ok {
		t.Fatalf("Acquire after Release: ok %v, err %v", ok, err)
	}

	// A lost lease's Release is no error and leaves the new holder's alone.
	rc := raw(t, srv)
	if err := rc.Del(ctx, "tiktok-auth-proxy:lease:main").Err(); err != nil { // b's lease expires
		t.Fatal(err)
	}
	lc, ok, err := a.Acquire(ctx, "main", time.Minute)
	if err != nil || !ok {
		t.Fatalf("Acquire after expiry: ok %v, err %v", ok, err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatalf("Release of a lost lease: %v", err)
	}
	if err := lc.Extend(ctx); err != nil {
		t.Fatalf("the new holder's lease after the old holder's Release: %v", err)
	}
}

// A holder that stops extending (paused, stuck) loses its lease at the TTL;
// another replica takes it over and writes; the old holder learns it lost
// the lease, and its late write, fenced by the generation it read under the
// lease, is refused.
func TestLeaseTakeOverAfterExpiry(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	a := open(t, srv, redisstore.Options{})
	b := open(t, srv, redisstore.Options{})
	if err := a.Put(ctx, record("main", "AT1", "RT1"), 0); err != nil {
		t.Fatal(err)
	}

	const ttl = 300 * time.Millisecond
	la, ok, err := a.Acquire(ctx, "main", ttl)
	if err != nil || !ok {
		t.Fatalf("Acquire: ok %v, err %v", ok, err)
	}
	readByA, err := a.Get(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	// a is paused now: it neither extends nor writes.

	var lb tokens.Lease
	until(t, 10*time.Second, "b takes the lease over", func() bool {
		l, ok, err := b.Acquire(ctx, "main", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		lb = l
		return ok
	})
	readByB, err := b.Get(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	next := readByB.Clone()
	next.AccessToken, next.RefreshToken = "AT2-by-b", "RT2-by-b"
	if err := b.Put(ctx, next, readByB.Generation); err != nil {
		t.Fatalf("new holder's Put: %v", err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}

	// a wakes up.
	select {
	case <-la.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost not closed for a lease past its TTL")
	}
	if err := la.Extend(ctx); !errors.Is(err, tokens.ErrLeaseLost) {
		t.Fatalf("stale holder's Extend: %v, want ErrLeaseLost", err)
	}
	late := readByA.Clone()
	late.AccessToken, late.RefreshToken = "AT2-by-a", "RT2-by-a"
	if err := a.Put(ctx, late, readByA.Generation); !errors.Is(err, tokens.ErrConflict) {
		t.Fatalf("stale holder's Put: %v, want ErrConflict", err)
	}
	got, err := a.Get(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	if got.RefreshToken != "RT2-by-b" {
		t.Fatalf("stored refresh token %q, want the new holder's", got.RefreshToken)
	}
}

// Extend finding the lease held by someone else (it expired, then was
// taken) reports ErrLeaseLost and closes Lost at once, before the local TTL.
func TestLeaseExtendFindsItTaken(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	a := open(t, srv, redisstore.Options{})
	b := open(t, srv, redisstore.Options{})
	la, ok, err := a.Acquire(ctx, "main", time.Hour)
	if err != nil || !ok {
		t.Fatalf("Acquire: ok %v, err %v", ok, err)
	}
	if err := raw(t, srv).Del(ctx, "tiktok-auth-proxy:lease:main").Err(); err != nil { // expires
		t.Fatal(err)
	}
	if _, ok, err := b.Acquire(ctx, "main", time.Hour); err != nil || !ok {
		t.Fatalf("b's Acquire: ok %v, err %v", ok, err)
	}
	if err := la.Extend(ctx); !errors.Is(err, tokens.ErrLeaseLost) {
		t.Fatalf("Extend of a taken lease: %v, want ErrLeaseLost", err)
	}
	select {
	case <-la.Lost():
	default:
		t.Fatal("Lost not closed after Extend found the lease taken")
	}
}

// While Redis does not answer, the holder cannot know whether its lease is
// still there; once its TTL has passed since the last successful Extend it
// must assume not: Lost closes without any answer from Redis.
func TestLeaseLostWhileRedisUnreachable(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	st := open(t, srv, redisstore.Options{})
	l, ok, err := st.Acquire(ctx, "main", 500*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("Acquire: ok %v, err %v", ok, err)
	}
	srv.Pause()
	defer srv.Resume()
	ectx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := l.Extend(ectx); err == nil {
		t.Fatal("Extend succeeded against a paused server")
	}
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost not closed while Redis was unreachable past the TTL")
	}
}

// A replica asking for a held lease waits for it: it gets it once the
// holder's lease ends, within its AcquireWait, instead of being told it is
// held.
func TestAcquireWaitsForTheHolder(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	a := open(t, srv, redisstore.Options{})
	b := open(t, srv, redisstore.Options{AcquireWait: time.Minute})
	if _, ok, err := a.Acquire(ctx, "main", 2*time.Second); err != nil || !ok {
		t.Fatalf("Acquire: ok %v, err %v", ok, err)
	}
	lb, ok, err := b.Acquire(ctx, "main", time.Minute)
	if err != nil || !ok {
		t.Fatalf("waiting Acquire: ok %v, err %v; want the lease once the holder's ran out", ok, err)
	}
	if err := lb.Extend(ctx); err != nil {
		t.Fatalf("the waiter's lease: %v", err)
	}
	// Without a wait the answer is at once: held.
	c := open(t, srv, redisstore.Options{AcquireWait: -1})
	if _, ok, err := c.Acquire(ctx, "main", time.Minute); err != nil || ok {
		t.Fatalf("Acquire without wait of a held lease: ok %v, err %v", ok, err)
	}
	// A waiter's context bounds the wait.
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, ok, err := b.Acquire(cctx, "main", time.Minute); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past its context: ok %v, err %v, want context.DeadlineExceeded", ok, err)
	}
}
