package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// acceptCounter holds every connection accepted from a listener until the
// test ends, as a server holds a busy client's connection.
type acceptCounter struct {
	mu   sync.Mutex
	held []net.Conn
}

// acceptAll accepts from ln until the test ends, then closes ln and every
// connection it accepted.
func acceptAll(t *testing.T, ln net.Listener) *acceptCounter {
	c := &acceptCounter{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.run(ln)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		c.closeAll()
	})
	return c
}

func (c *acceptCounter) run(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		c.held = append(c.held, conn)
		c.mu.Unlock()
	}
}

func (c *acceptCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held)
}

// releaseOne closes one held connection, as a client finishing would.
func (c *acceptCounter) releaseOne() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held[0].Close()
	c.held = c.held[1:]
}

func (c *acceptCounter) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.held {
		conn.Close()
	}
}

// settled polls count until it has not changed for a while and returns it.
// A bound shows only as connections not accepted, so the count must stay
// still for a while; connections already waiting in the kernel's queue are
// accepted within microseconds when nothing holds them back. A machine too
// busy for that could only hide a missing bound, never fail a present one.
func settled(t *testing.T, count func() int) int {
	t.Helper()
	const quiet = 300 * time.Millisecond
	deadline := time.Now().Add(20 * time.Second)
	last, since := count(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		if n := count(); n != last || n == 0 {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			return n
		}
	}
	t.Fatalf("accepted connections still changing after 20s (%d)", last)
	return 0
}

// TestListenersBoundedByFDLimit: under a small RLIMIT_NOFILE the forward
// proxy's listener, like the reverse proxy's, hands out no more client
// connections than the descriptors left after TikTok's connections allow:
// more clients than that wait in the kernel's queue until one closes, so a
// burst of tunnels cannot starve the process's descriptors either.
func TestListenersBoundedByFDLimit(t *testing.T) {
	dir := t.TempDir()
	if code, out, errOut := runCLI(t, "", "ca", "--out", filepath.Join(dir, "ca")); code != 0 {
		t.Fatalf("ca: exit %d\n%s%s", code, out, errOut)
	}
	cfg, err := config.Parse([]byte(`upstream:
  base_url: http://127.0.0.1:9
store:
  path: `+filepath.Join(dir, "tokens.json")+`
forward_proxy:
  listen: 127.0.0.1:3128
  ca_cert: `+filepath.Join(dir, "ca", "ca.crt")+`
  ca_key: `+filepath.Join(dir, "ca", "ca.key")+`
credentials:
  - name: main
    app_id: "7123456789012345678"
    app_secret: s3cret
`), filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.AdminListen, cfg.ForwardProxy.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"

	// The bounds are read from RLIMIT_NOFILE when the listeners are
	// opened; the limit is lowered only for that moment.
	const nofile = 128
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	low := rl
	low.Cur = nofile
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	a, err := newApp(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.closeListeners()
		a.Close()
	})

	// More clients on each listener than the process could hold
	// descriptors for.
	accepted := map[string]*acceptCounter{}
	for name, ln := range map[string]net.Listener{"proxy": a.proxyLn, "forward_proxy": a.forwardLn} {
		accepted[name] = acceptAll(t, ln)
		for range nofile {
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
		}
	}
	bound := settled(t, accepted["proxy"].count)
	if bound >= nofile {
		t.Fatalf("the proxy listener accepted %d connections under RLIMIT_NOFILE %d: not bounded", bound, nofile)
	}
	fwd := accepted["forward_proxy"]
	if n := settled(t, fwd.count); n != bound {
		t.Fatalf("the forward-proxy listener accepted %d connections under RLIMIT_NOFILE %d, the proxy listener %d: want the same bound", n, nofile, bound)
	}
	// The next waiting client is accepted once one closes.
	fwd.releaseOne()
	deadline := time.Now().Add(10 * time.Second)
	for fwd.count() < bound && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := fwd.count(); n != bound {
		t.Errorf("after one of its connections closed the forward-proxy listener holds %d, want %d again", n, bound)
	}
}
