package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// lockedBuffer is a log sink safe for the server goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestShutdownPastTheBound: a request still in flight when the shutdown
// bound ends is cut off, and Run still stops the manager, closes the store
// and returns nil (exit 0), as SIGTERM promises. A handler that goes on
// after its connection was closed is waited for, within handlerGrace,
// before the store closes.
func TestShutdownPastTheBound(t *testing.T) {
	cfg := appConfig(t, t.TempDir(), "")
	logs := &lockedBuffer{}
	a, err := newApp(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	a.shutdownTimeout = 100 * time.Millisecond
	a.handlerGrace = 100 * time.Millisecond
	// net/http drops a request read just as shutdown begins, so the test
	// waits for the handlers themselves to be running.
	inFlight, lingering, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	defer close(release)
	proxyHandler := a.proxy.Handler
	a.proxy.Handler = a.handlers.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/linger" {
			// Still busy once its connection is gone, as a handler
			// finishing a store write would be.
			close(lingering)
			<-r.Context().Done()
			<-release
			return
		}
		close(inFlight)
		proxyHandler.ServeHTTP(w, r)
	}))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	// A body that never completes holds its handler for upstream.timeout
	// (60s by default), far past the shutdown bound.
	conn, err := net.Dial("tcp", a.proxyLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /open_api/v1.3/campaign/create/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"+
		"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	linger, err := net.Dial("tcp", a.proxyLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer linger.Close()
	if _, err := io.WriteString(linger, "GET /linger HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []chan struct{}{inFlight, lingering} {
		select {
		case <-c:
		case <-time.After(10 * time.Second):
			t.Fatal("a request never reached the proxy")
		}
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after a shutdown that had to cut a request off", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its shutdown bound")
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("stalled connection still open after shutdown (read: %v)", err)
	}
	if err := a.store.Ping(context.Background()); err == nil {
		t.Errorf("store still usable after Run returned: it was not closed")
	}
	if !strings.Contains(logs.String(), `"level":"WARN","msg":"in-flight requests did not finish within the shutdown timeout`) {
		t.Errorf("no warning about the cut-off request:\n%s", logs)
	}
	if !strings.Contains(logs.String(), `"level":"WARN","msg":"handlers still running after their connections were closed; stopping anyway"`) {
		t.Errorf("Run did not wait for the handler still running:\n%s", logs)
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no stopped line:\n%s", logs)
	}
}

// appConfig parses a minimal serve config whose files are in dir, with
// extra YAML appended at its top level, and puts its listeners on free
// loopback ports (validation wants their addresses apart, which two ":0"
// are not until they are opened).
func appConfig(t *testing.T, dir, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(`upstream:
  base_url: http://127.0.0.1:9
store:
  path: `+filepath.Join(dir, "tokens.json")+`
credentials:
  - name: main
    app_id: "7123456789012345678"
    app_secret: s3cret
`+extra), filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	if cfg.ForwardProxy.Listen != "" {
		cfg.ForwardProxy.Listen = "127.0.0.1:0"
	}
	return cfg
}
