package tokens_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// TestMemoryLeaser: one holder at a time; Extend keeps the lease past its
// first TTL; an expired lease is taken over, and its old holder's Extend
// then fails with ErrLeaseLost and closes Lost, while its Release leaves the
// new holder's lease alone.
func TestMemoryLeaser(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	l := tokens.NewMemoryLeaser(clock.Now)
	a, ok, err := l.Acquire(ctx, "main", time.Minute)
	if err != nil || !ok {
		t.Fatalf("first Acquire = %v, %v", ok, err)
	}
	if _, ok, err := l.Acquire(ctx, "main", time.Minute); ok || err != nil {
		t.Fatalf("Acquire while held = %v, %v; want false, nil", ok, err)
	}
	if _, ok, _ := l.Acquire(ctx, "other", time.Minute); !ok {
		t.Fatal("another credential's lease is not independent")
	}
	clock.Advance(50 * time.Second)
	if err := a.Extend(ctx); err != nil {
		t.Fatalf("Extend of a held lease = %v", err)
	}
	clock.Advance(50 * time.Second)
	if _, ok, _ := l.Acquire(ctx, "main", time.Minute); ok {
		t.Fatal("Acquire took a lease Extend kept alive")
	}
	clock.Advance(11 * time.Second)
	b, ok, err := l.Acquire(ctx, "main", time.Minute)
	if err != nil || !ok {
		t.Fatalf("Acquire of an expired lease = %v, %v", ok, err)
	}
	select {
	case <-a.Lost():
		t.Fatal("Lost closed before any Extend failed")
	default:
	}
	if err := a.Extend(ctx); !errors.Is(err, tokens.ErrLeaseLost) {
		t.Fatalf("Extend of a lease taken over = %v, want ErrLeaseLost", err)
	}
	select {
	case <-a.Lost():
	default:
		t.Fatal("Lost not closed after Extend failed")
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("Release of a lost lease = %v", err)
	}
	if _, ok, _ := l.Acquire(ctx, "main", time.Minute); ok {
		t.Fatal("the old holder's Release freed the new holder's lease")
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := l.Acquire(ctx, "main", time.Minute); !ok {
		t.Fatal("Acquire after Release failed")
	}
}
