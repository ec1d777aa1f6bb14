package tiktoksim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Run serves a simulator built from opts on addr until ctx ends. It opens
// the listener first, so a bind error is returned at once, then prints
// the base URL to logw.
func Run(ctx context.Context, addr string, opts Options, logw io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("tiktoksim: listen: %w", err)
	}
	sim := New(opts)
	defer sim.Close()
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(logw, "tiktoksim: TikTok Business API simulator listening on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("tiktoksim: serve: %w", err)
	case <-ctx.Done():
	}
	// Streams and injected latencies end with the simulator, so shutdown
	// does not wait on them.
	sim.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("tiktoksim: shutdown: %w", err)
	}
	return nil
}
