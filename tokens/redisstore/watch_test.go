package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/redistest"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/redisstore"
)

// next waits for the next name from w.
func next(t *testing.T, w <-chan string) string {
	t.Helper()
	select {
	case name, ok := <-w:
		if !ok {
			t.Fatal("Watch channel closed")
		}
		return name
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported within 10s")
		return ""
	}
}

// A write by one replica reaches another's Watch through pub/sub: polling
// is set to an hour, so nothing else could report it.
func TestWatchPubSub(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	watcher := open(t, srv, redisstore.Options{PollInterval: time.Hour})
	writer := open(t, srv, redisstore.Options{})
	w := watcher.Watch(ctx)
	// The subscription is asynchronous: write until the first change shows,
	// then measure one more.
	warm := time.Now()
	gen := uint64(0)
	got := ""
	until(t, 10*time.Second, "the subscription delivers", func() bool {
		if err := writer.Put(ctx, record("main", "AT", "RT"), gen); err != nil {
			t.Fatal(err)
		}
		gen++
		select {
		case got = <-w:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
	if got != "main" {
		t.Fatalf("Watch sent %q, want main", got)
	}
	t.Logf("subscribed within %s", time.Since(warm))
	drain(w)

	start := time.Now()
	if err := writer.Put(ctx, record("other", "AT", "RT"), 0); err != nil {
		t.Fatal(err)
	}
	if name := next(t, w); name != "other" {
		t.Fatalf("Watch sent %q, want other", name)
	}
	t.Logf("pub/sub latency %s", time.Since(start))

	if err := writer.Delete(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if name := next(t, w); name != "other" {
		t.Fatalf("Watch sent %q after Delete, want other", name)
	}

	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-w:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("Watch channel not closed after its context ended")
		}
	}
}

// drain empties w of what is already buffered.
func drain(w <-chan string) {
	for {
		select {
		case <-w:
		default:
			return
		}
	}
}

// A Redis user that may not use pub/sub (an ACL without channels): Watch
// still reports changes, by polling.
func TestWatchPolling(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Args: []string{"--user", "nopubsub", "on", ">pw", "~*", "resetchannels", "+@all"}})
	ctx := t.Context()
	const poll = 200 * time.Millisecond
	watcher := open(t, srv, redisstore.Options{Username: "nopubsub", Password: "pw", PollInterval: poll})
	writer := open(t, srv, redisstore.Options{Username: "nopubsub", Password: "pw"})
	if err := writer.Put(ctx, record("before", "AT", "RT"), 0); err != nil {
		t.Fatalf("Put by a user refused PUBLISH: %v", err)
	}
	w := watcher.Watch(ctx)
	// Watch's first poll is its baseline, taken asynchronously: write until
	// a change shows, then measure one more.
	gen := uint64(0)
	until(t, 10*time.Second, "polling reports a change", func() bool {
		if err := writer.Put(ctx, record("main", "AT", "RT"), gen); err != nil {
			t.Fatal(err)
		}
		gen++
		select {
		case name := <-w:
			if name != "main" {
				t.Fatalf("Watch sent %q, want main (a record stored before Watch is no change)", name)
			}
			return true
		case <-time.After(2 * poll):
			return false
		}
	})
	drain(w)
	start := time.Now()
	if err := writer.Put(ctx, record("other", "AT", "RT"), 0); err != nil {
		t.Fatal(err)
	}
	for name := next(t, w); name != "other"; name = next(t, w) {
		if name != "main" {
			t.Fatalf("Watch sent %q, want other", name)
		}
	}
	t.Logf("polling latency %s (poll every %s)", time.Since(start), poll)
}
