package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// waitUntil polls cond until it holds, failing after 20s with what and
// state(). It never decides from a pause: each cond is a state the bound
// reaches only if it holds.
func waitUntil(t *testing.T, what string, state func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, state())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricValue is the value of the unlabelled gauge or counter name on reg.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// dial opens n client connections to ln, closed when the test ends.
func dial(t *testing.T, ln net.Listener, n int) {
	t.Helper()
	for range n {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
	}
}

// TestListenersShareOneClientBound: under a small RLIMIT_NOFILE the proxy
// and forward-proxy listeners together hand out no more client
// connections than the descriptors left after TikTok's connections allow,
// so simultaneous bursts on both cannot take twice that: once the proxy
// listener's clients hold the bound, the forward proxy's clients wait in
// the kernel's queue too, and get a slot when one of the proxy's closes.
// Every step is observed on the bound itself (Accepts waiting on it), not
// by waiting for the accepted count to stay still.
func TestListenersShareOneClientBound(t *testing.T) {
	dir := t.TempDir()
	if code, out, errOut := runCLI(t, "", "ca", "--out", filepath.Join(dir, "ca")); code != 0 {
		t.Fatalf("ca: exit %d\n%s%s", code, out, errOut)
	}
	cfg := appConfig(t, dir, `forward_proxy:
  listen: 127.0.0.1:3128
  ca_cert: `+filepath.Join(dir, "ca", "ca.crt")+`
  ca_key: `+filepath.Join(dir, "ca", "ca.key")+`
`)

	// The bound is read from RLIMIT_NOFILE when the listeners are opened;
	// the limit is lowered only for that moment.
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

	b := a.clients
	limit := b.Limit()
	if limit >= nofile {
		t.Fatalf("client bound %d under RLIMIT_NOFILE %d: not bounded by it", limit, nofile)
	}
	proxyAcc, fwdAcc := acceptAll(t, a.proxyLn), &acceptCounter{}
	state := func() string {
		return fmt.Sprintf("bound %d: %d held, %d Accepts waiting; accepted %d by the proxy listener, %d by the forward proxy's",
			limit, b.Held(), b.Waiting(), proxyAcc.count(), fwdAcc.count())
	}

	// More clients on the proxy listener than the process could hold
	// descriptors for: it accepts the bound's worth, then its Accept waits.
	dial(t, a.proxyLn, nofile)
	waitUntil(t, "the proxy listener to fill the bound", state, func() bool {
		return b.Held() == limit && b.Waiting() == 1 && proxyAcc.count() == limit
	})

	// The forward proxy's clients wait on the same bound: none accepted.
	fwdAcc = acceptAll(t, a.forwardLn)
	dial(t, a.forwardLn, 2)
	waitUntil(t, "the forward-proxy listener's Accept to wait on the bound", state, func() bool {
		return b.Waiting() == 2
	})
	if n := fwdAcc.count(); n != 0 {
		t.Fatalf("the forward-proxy listener accepted %d connections with the proxy listener holding the whole bound: %s", n, state())
	}

	// A proxy client closing makes room for one forward-proxy client (the
	// proxy listener, closed, no longer competes for it), then the bound
	// is full again.
	a.proxyLn.Close()
	waitUntil(t, "the closed proxy listener's Accept to stop waiting", state, func() bool { return b.Waiting() == 1 })
	proxyAcc.releaseOne()
	waitUntil(t, "the forward-proxy listener to accept one client", state, func() bool {
		return fwdAcc.count() == 1 && b.Held() == limit && b.Waiting() == 1
	})

	// The metrics show the same.
	for name, want := range map[string]int{
		"tiktok_auth_proxy_client_connections":          limit,
		"tiktok_auth_proxy_client_connections_limit":    limit,
		"tiktok_auth_proxy_client_accepts_waited_total": 3, // the proxy listener's once, the forward proxy's twice
	} {
		if got := metricValue(t, a.registry, name); got != float64(want) {
			t.Errorf("%s = %v, want %d (%s)", name, got, want, state())
		}
	}
}
