package tokens_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktoksim"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/filestore"
)

const simApp = "7100000000000000001"

// gatedRefresh holds every refresh request until gate closes, so a test
// can line callers up behind one refresh before TikTok answers it.
type gatedRefresh struct {
	sim     http.Handler
	gate    chan struct{}
	arrived atomic.Int64
}

func (g *gatedRefresh) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/open_api/v1.3/oauth2/refresh_token/" {
		g.arrived.Add(1)
		select {
		case <-g.gate:
		case <-r.Context().Done():
			return
		}
	}
	g.sim.ServeHTTP(w, r)
}

// TestSingleFlightAtExpiryAgainstSimulator: the real client against the
// simulator on loopback. 1,000 Token calls released together at expiry
// all wait on one refresh (held at the simulator's door until they do),
// exactly one refresh request reaches the simulator, and every caller gets
// the token it issued.
func TestSingleFlightAtExpiryAgainstSimulator(t *testing.T) {
	clock := newClock()
	sim := tiktoksim.New(tiktoksim.Options{Now: clock.Now})
	t.Cleanup(sim.Close)
	gated := &gatedRefresh{sim: sim, gate: make(chan struct{})}
	release := sync.OnceFunc(func() { close(gated.gate) })
	srv := httptest.NewServer(gated)
	// Cleanups run last-in first-out: the gate opens before the server
	// waits for its handlers.
	t.Cleanup(srv.Close)
	t.Cleanup(release)

	st, err := filestore.Open(filepath.Join(t.TempDir(), "tokens.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cred := tokens.Credential{Name: credName, App: tiktok.App{
		Kind: tiktok.KindAdvertiser, AppID: simApp, Secret: "sim-secret",
		Endpoints: tiktok.DefaultEndpoints(srv.URL, tiktok.KindAdvertiser),
	}}
	client := &tiktok.Client{HTTP: srv.Client()}
	m, err := tokens.NewManager(context.Background(), st, []tokens.Credential{cred}, client, tokens.Options{
		Now: clock.Now, After: clock.After, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })

	ctx := context.Background()
	g, err := client.Exchange(ctx, cred.App, sim.IssueCode(simApp, nil))
	if err != nil {
		t.Fatal(err)
	}
	if g.ExpiresIn <= 0 || g.RefreshToken == "" {
		t.Fatalf("simulator grant without expiry or refresh token: %+v", g.ExpiresIn)
	}
	status, err := m.Authorize(ctx, credName, g)
	if err != nil {
		t.Fatal(err)
	}
	clock.Set(status.AccessExpiresAt.Add(time.Minute))

	const callers = 1000
	toks := make([]string, callers)
	errs := make([]error, callers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			<-start
			toks[i], errs[i] = m.Token(ctx, credName)
		})
	}
	close(start)
	waitFor(t, "the refresh to reach the simulator", func() bool { return gated.arrived.Load() > 0 })
	waitFor(t, "every caller to wait on the one refresh", func() bool { return m.Waiting(credName) == callers })
	release()
	wg.Wait()

	if n := sim.RefreshCalls(simApp); n != 1 {
		t.Fatalf("%d refresh calls reached the simulator, want exactly 1", n)
	}
	if n := gated.arrived.Load(); n != 1 {
		t.Fatalf("%d refresh requests sent, want 1", n)
	}
	grants := sim.Grants()
	if len(grants) != 1 {
		t.Fatalf("simulator holds %d grants, want 1", len(grants))
	}
	issued := grants[0].AccessToken
	if issued == g.AccessToken {
		t.Fatal("the simulator's token did not change: no refresh happened")
	}
	for i := range callers {
		if errs[i] != nil || toks[i] != issued {
			t.Fatalf("caller %d: got a different token or error %v, want the refreshed token", i, errs[i])
		}
	}
	rec, err := st.Get(ctx, credName)
	if err != nil || rec.AccessToken != issued || rec.RefreshToken != grants[0].RefreshToken {
		t.Fatalf("stored record is not the simulator's current grant (err %v)", err)
	}
}
