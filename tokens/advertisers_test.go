package tokens_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// syncBuffer is a log sink safe for the manager's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestConfigOwnsAdvertisers: an advertiser in a credential's advertiser_ids
// is that credential's whatever another credential's grant says, even one
// earlier in config; one granted to two credentials and configured under
// neither has no owner; each conflict is logged once and shown in Status.
func TestConfigOwnsAdvertisers(t *testing.T) {
	const (
		contested = "7300000000000000001" // in second's advertiser_ids, granted to both
		shared    = "7300000000000000002" // granted to both, configured under neither
	)
	var logs syncBuffer
	e := newEnv(t, func(e *env) {
		e.creds = append(e.creds, tokens.Credential{Name: "second", App: tiktok.App{AppID: "app2"}, AdvertiserIDs: []string{contested}})
		e.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		e.api.advertisers = []tiktok.Advertiser{{ID: contested}, {ID: shared}}
	})
	e.authorize()
	g := e.api.grant()
	g.AdvertiserIDs = []string{contested, shared}
	if _, err := e.m.Authorize(context.Background(), "second", g); err != nil {
		t.Fatal(err)
	}
	// Authorizing again rebuilds the index with the same conflicts.
	e.authorize()

	if c, ok := e.m.CredentialFor(contested); !ok || c != "second" {
		t.Errorf("CredentialFor(configured under second, granted to main too) = %q, %v; want second", c, ok)
	}
	if c, ok := e.m.CredentialFor(configAdvert); !ok || c != credName {
		t.Errorf("CredentialFor(config advertiser) = %q, %v", c, ok)
	}
	if c, ok := e.m.CredentialFor(shared); ok {
		t.Errorf("CredentialFor(granted to both, configured under neither) = %q; want no owner", c)
	}
	if got := e.m.Claimants(shared); !slices.Equal(got, []string{credName, "second"}) {
		t.Errorf("Claimants(shared) = %v, want [main second]", got)
	}
	if got := e.m.Claimants(contested); got != nil {
		t.Errorf("Claimants(configured) = %v, want none", got)
	}

	st, err := e.m.Status(credName)
	if err != nil {
		t.Fatal(err)
	}
	want := []tokens.AdvertiserConflict{
		{AdvertiserID: contested, Owner: "second", Credentials: []string{credName, "second"}},
		{AdvertiserID: shared, Credentials: []string{credName, "second"}},
	}
	if !slices.EqualFunc(st.AdvertiserConflicts, want, func(a, b tokens.AdvertiserConflict) bool {
		return a.AdvertiserID == b.AdvertiserID && a.Owner == b.Owner && slices.Equal(a.Credentials, b.Credentials)
	}) {
		t.Errorf("Status(main).AdvertiserConflicts = %+v, want %+v", st.AdvertiserConflicts, want)
	}

	out := logs.String()
	if !strings.Contains(out, "level=WARN msg=\"an advertiser") {
		t.Fatalf("no conflict warning logged:\n%s", out)
	}
	for _, id := range []string{contested, shared} {
		if n := strings.Count(out, "advertiser_id="+id); n != 1 {
			t.Errorf("advertiser %s: %d warning lines, want exactly 1:\n%s", id, n, out)
		}
	}
	if !strings.Contains(out, "added to one credential's advertiser_ids") {
		t.Errorf("the ambiguity warning does not say how to resolve it:\n%s", out)
	}
}

// TestListedAfterEveryFirstListing: Listed closes once the first advertiser
// listing of every credential has returned (serve then frees start-up's
// garbage), not while one still waits for TikTok; a credential without a
// grant counts once it has re-read the store.
func TestListedAfterEveryFirstListing(t *testing.T) {
	e := newEnv(t, func(e *env) {
		e.creds = append(e.creds, tokens.Credential{Name: "unauthorized", App: tiktok.App{AppID: "app2"}})
	})
	e.authorize()
	before := e.api.advCalls()
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)
	e.api.set(func(a *fakeAPI) { a.advGate = gate })
	e.m.Start(context.Background())
	waitFor(t, "main's first listing to reach TikTok", func() bool { return e.api.advCalls() > before })
	select {
	case <-e.m.Listed():
		t.Fatal("Listed closed while main's first listing waits for TikTok")
	default:
	}
	release()
	select {
	case <-e.m.Listed():
	case <-time.After(10 * time.Second):
		t.Fatal("Listed not closed once every first listing returned")
	}
}

// TestListedWithoutCredentials: with nothing to list, Listed closes at
// Start.
func TestListedWithoutCredentials(t *testing.T) {
	e := newEnv(t, func(e *env) { e.creds = nil })
	select {
	case <-e.m.Listed():
		t.Fatal("Listed closed before Start")
	default:
	}
	e.m.Start(context.Background())
	select {
	case <-e.m.Listed():
	default:
		t.Fatal("Listed not closed at Start without credentials")
	}
}
