package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// failingDial is a transport whose every dial fails with errno, as a
// socket() or connect() call would.
func failingDial(errno syscall.Errno) *http.Transport {
	return &http.Transport{Proxy: nil, DialContext: func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", errno)}
	}}
}

// Running out of file descriptors (or ports, or buffers) is the proxy's
// own trouble, not TikTok's: it answers 90013 with Retry-After and never
// opens the breaker, however many requests meet it. A refused connection
// is TikTok unreachable and does open it.
func TestLocalDialErrorsDoNotOpenBreaker(t *testing.T) {
	for _, tc := range []struct {
		errno     syscall.Errno
		local     bool
		code, sts int
	}{
		{syscall.EMFILE, true, 90013, 503},
		{syscall.ENFILE, true, 90013, 503},
		{syscall.EADDRNOTAVAIL, true, 90013, 503},
		{syscall.ENOBUFS, true, 90013, 503},
		{syscall.ECONNREFUSED, false, 90007, 502},
	} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			h := newHarness(t, nil, func(c *config.Config, o *Options) {
				c.Breaker.OpenTimeout = time.Hour
				o.Transport = failingDial(tc.errno)
			})
			n := 3 * h.config.Breaker.ConsecutiveFailures
			if !tc.local {
				n = h.config.Breaker.ConsecutiveFailures
			}
			for i := range n {
				w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil))
				checkProxyError(t, w, tc.code, tc.sts)
				if tc.local && w.Header().Get("Retry-After") != "1" {
					t.Errorf("request %d: Retry-After %q, want 1", i, w.Header().Get("Retry-After"))
				}
			}
			want := 0.0 // closed
			if !tc.local {
				want = 2 // open
			}
			if g := testutil.ToFloat64(h.m.BreakerState.WithLabelValues("main")); g != want {
				t.Errorf("after %d dials failing with %v: circuit_breaker_state = %v, want %v", n, tc.errno, g, want)
			}
			if len(h.up.requests()) != 0 {
				t.Errorf("TikTok was reached")
			}
		})
	}
}

// A request that times out queued behind the bounded upstream connections
// never reached TikTok: 90013, and the breaker stays closed even at one
// consecutive failure.
func TestQueuedForConnectionDoesNotOpenBreaker(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	tr := &http.Transport{Proxy: nil, MaxConnsPerHost: 1}
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("hold") != "" {
			close(held)
			<-release
		}
		writeEnvelope(w, 0)
	}, func(c *config.Config, o *Options) {
		c.Breaker.ConsecutiveFailures = 1
		c.Breaker.OpenTimeout = time.Hour
		// The queued request must time out; nothing here waits for it.
		c.Upstream.Timeout = 200 * time.Millisecond
		o.Transport = tr
	})
	// The only connection is taken by another user of the transport, with
	// no deadline, until the proxied request has given up.
	holder := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get(h.up.URL + campaignGet + "?hold=1")
		if err == nil {
			resp.Body.Close()
		}
		holder <- err
	}()
	<-held
	w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil))
	close(release)
	if err := <-holder; err != nil {
		t.Fatal(err)
	}
	checkProxyError(t, w, 90013, 503)
	if g := testutil.ToFloat64(h.m.BreakerState.WithLabelValues("main")); g != 0 {
		t.Errorf("circuit_breaker_state = %v after a request queued for a connection timed out, want 0", g)
	}
	if n := len(h.up.requests()); n != 1 {
		t.Errorf("TikTok saw %d requests, want only the holder's", n)
	}
}

// Past the in-flight bound a request waits for a slot, then gets 90013
// with Retry-After without reaching TikTok; the ones admitted are served.
func TestInflightBound(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("hold") != "" {
			close(held)
			<-release
		}
		writeEnvelope(w, 0)
	}, nil)
	h.p.core.slots = newSlots(1, 20*time.Millisecond)
	first := make(chan *httptest.ResponseRecorder, 1)
	go func() { first <- h.do(httptest.NewRequest(http.MethodGet, campaignGet+"?hold=1", nil)) }()
	<-held
	w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil))
	checkProxyError(t, w, 90013, 503)
	if w.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q, want 1", w.Header().Get("Retry-After"))
	}
	close(release)
	if w := <-first; w.Code != 200 || w.Header().Get(HeaderError) != "" {
		t.Errorf("the admitted request: HTTP %d %s", w.Code, w.Body)
	}
	if n := len(h.up.requests()); n != 1 {
		t.Errorf("TikTok saw %d requests, want the admitted one", n)
	}
	// The slot is free again.
	if w := h.do(httptest.NewRequest(http.MethodGet, campaignGet, nil)); w.Code != 200 {
		t.Errorf("after the first finished: HTTP %d %s", w.Code, w.Body)
	}
}

func TestClassify(t *testing.T) {
	emfile := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name           string
		started, done  int32
		lastLocal, got bool
		err            error
		local          bool
	}{
		{"fd exhaustion", 1, 1, true, false, emfile, true},
		{"queued past the deadline", 0, 0, false, false, context.DeadlineExceeded, true},
		{"waiting for a file descriptor past the deadline", 3, 3, true, false, context.DeadlineExceeded, true},
		{"connect to TikTok under way at the deadline", 1, 0, false, false, context.DeadlineExceeded, false},
		{"connect to TikTok timed out", 1, 1, false, false, context.DeadlineExceeded, false},
		{"TikTok slow to answer", 1, 1, false, true, context.DeadlineExceeded, false},
		{"reused connection, TikTok slow", 0, 0, false, true, context.DeadlineExceeded, false},
		{"refused", 1, 1, false, false, refused, false},
		{"reset", 1, 1, false, true, syscall.ECONNRESET, false},
	} {
		ct := connTrace{traced: true}
		ct.started.Store(tc.started)
		ct.done.Store(tc.done)
		ct.lastLocal.Store(tc.lastLocal)
		ct.got.Store(tc.got)
		var local *localError
		if got := errors.As(ct.classify(tc.err), &local); got != tc.local {
			t.Errorf("%s: local = %v, want %v", tc.name, got, tc.local)
		}
	}
}

// A round trip sent without the trace (few requests heading to TikTok, no
// dial waiting for a descriptor) was not queued: its timeout is TikTok's,
// unless a dial ran short of a descriptor while it waited.
func TestClassifyUntraced(t *testing.T) {
	ct := connTrace{localFailures: localDialFailures.Load()}
	var local *localError
	if errors.As(ct.classify(context.DeadlineExceeded), &local) {
		t.Error("untraced timeout with no local dial failure: local, want TikTok's")
	}
	emfile := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	if !errors.As(ct.classify(emfile), &local) {
		t.Error("untraced EMFILE: not local")
	}
	localDialFailures.Add(1)
	if !errors.As(ct.classify(context.DeadlineExceeded), &local) {
		t.Error("untraced timeout after a local dial failure: TikTok's, want local")
	}
}

// Below traceFrom requests heading to TikTok a round trip carries no
// trace; past it, or while a dial waits for a descriptor, it does; and
// settling an exchange gives its count back.
func TestTraceOnlyNearTheBound(t *testing.T) {
	h := newHarness(t, nil, nil)
	c := h.p.core
	c.traceFrom = 2 // as if the transport had 3 connections
	send := func() *exchange {
		t.Helper()
		ex := c.newExchange(localRequest(http.MethodGet, campaignGet, nil), time.Time{})
		req := httptest.NewRequest(http.MethodGet, h.up.URL+campaignGet, nil).WithContext(ex.ctx)
		req.RequestURI = ""
		resp, err := c.upstreamRoundTrip(ex, req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return ex
	}
	a, b := send(), send()
	if a.conn.traced || b.conn.traced {
		t.Errorf("traced with %d requests heading to TikTok, want none below %d", c.heading.Load(), c.traceFrom)
	}
	if d := send(); !d.conn.traced {
		t.Errorf("untraced with %d requests heading to TikTok, want traced past %d", c.heading.Load(), c.traceFrom)
	}
	c.settle(a, http.StatusOK, true, 0)
	c.settle(b, http.StatusOK, true, 0)
	dialsWaiting.Add(1)
	e := send()
	dialsWaiting.Add(-1)
	if !e.conn.traced {
		t.Error("untraced while a dial waits for a descriptor")
	}
	if n := c.heading.Load(); n != 2 {
		t.Errorf("%d requests heading to TikTok after two of four settled, want 2", n)
	}
}

// A dial short of file descriptors waits for one instead of failing; a
// dial TikTok refuses fails at once; a wait ends with the request.
func TestDialWaitsForResources(t *testing.T) {
	emfile := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	server, client := net.Pipe()
	defer server.Close()
	calls := 0
	dial := dialWaitingForResources(func(context.Context, string, string) (net.Conn, error) {
		if calls++; calls < 3 {
			return nil, emfile
		}
		return client, nil
	})
	if c, err := dial(context.Background(), "tcp", "tiktok.test:443"); err != nil || c != client || calls != 3 {
		t.Errorf("after two EMFILE: %v %v, %d dials; want the connection on the third", c, err, calls)
	}

	calls = 0
	dial = dialWaitingForResources(func(context.Context, string, string) (net.Conn, error) {
		calls++
		return nil, refused
	})
	if _, err := dial(context.Background(), "tcp", "tiktok.test:443"); !errors.Is(err, syscall.ECONNREFUSED) || calls != 1 {
		t.Errorf("refused: %v after %d dials, want it at once", err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	dial = dialWaitingForResources(func(context.Context, string, string) (net.Conn, error) {
		if calls++; calls == 2 {
			cancel()
		}
		return nil, emfile
	})
	if _, err := dial(ctx, "tcp", "tiktok.test:443"); !errors.Is(err, syscall.EMFILE) || calls != 2 {
		t.Errorf("request gone while waiting: %v after %d dials, want EMFILE after 2", err, calls)
	}
}

// A container's memory limit bounds the client connections held at once,
// so a burst waits in the accept queue rather than the container being
// killed: what fits after memoryBase at connMemory each (tunnelMemory when
// forward-proxy tunnels share the bound), between minClients and
// MaxInflight.
func TestMemoryClients(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		limit   int64
		tunnels bool
		clients int
	}{
		{32 * mib, false, minClients},
		{64 * mib, false, 341},
		{128 * mib, false, 1706},
		{239 * mib, false, 4074},
		{240 * mib, false, MaxInflight},
		{8 << 30, false, MaxInflight},
		{32 * mib, true, minClients},
		{128 * mib, true, 853},
		{431 * mib, true, 4085},
		{432 * mib, true, MaxInflight},
	} {
		if got := memoryClients(tc.limit, tc.tunnels); got != tc.clients {
			t.Errorf("memoryClients(%d MiB, tunnels %v) = %d, want %d", tc.limit/mib, tc.tunnels, got, tc.clients)
		}
	}
}

// The file descriptors are shared so that clients can never take those the
// connections to TikTok need, whatever the limit; clients never get more
// than MaxInflight connections.
func TestConnLimits(t *testing.T) {
	for _, tc := range []struct {
		nofile            uint64
		clients, upstream int
	}{
		{1 << 20, 4096, 256},
		{20000, 4096, 256},
		{4416, 4096, 256},
		{4000, 4000 - 256 - 64, 256},
		{1024, 1024 - 256 - 64, 256},
		{1000, 1000 - 250 - 64, 250},
		{256, 256 - 64 - 32, 64},
		{64, 64 - 16 - 8, 16},
		{2, 1, 1},
		{^uint64(0), 4096, 256}, // RLIM_INFINITY
	} {
		c, u := connLimits(tc.nofile)
		if c != tc.clients || u != tc.upstream {
			t.Errorf("connLimits(%d) = %d clients, %d upstream; want %d, %d", tc.nofile, c, u, tc.clients, tc.upstream)
		}
		if tc.nofile >= 64 && uint64(c+u) >= tc.nofile {
			t.Errorf("connLimits(%d): %d + %d connections leave no descriptor for anything else", tc.nofile, c, u)
		}
	}
}

// accepted is what one Accept returned.
type accepted struct {
	conn net.Conn
	err  error
}

// acceptOnce calls ln.Accept in the background; its result arrives on the
// channel.
func acceptOnce(ln net.Listener) <-chan accepted {
	c := make(chan accepted, 1)
	go func() {
		conn, err := ln.Accept()
		c <- accepted{conn, err}
	}()
	return c
}

// receive returns the result of an acceptOnce, failing after 10s; a
// connection it returns is closed when the test ends.
func receive(t *testing.T, c <-chan accepted, what string) accepted {
	t.Helper()
	select {
	case r := <-c:
		if r.conn != nil {
			t.Cleanup(func() { r.conn.Close() })
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return accepted{}
	}
}

// One ClientBound wrapping two listeners is one bound: connections held on
// either count against it, so once they fill it an Accept on either waits,
// and it gets through when a connection of the other listener closes. A
// connection gives its slot back once however often it is closed; closing
// a listener ends its waiting Accept, and an Accept that fails holds no
// slot.
func TestClientBoundSharedByListeners(t *testing.T) {
	const limit = 3
	b := newClientBound(limit)
	lns := make([]net.Listener, 2)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = b.Listen(ln)
		t.Cleanup(func() { lns[i].Close() })
		// More clients than the bound wait on each listener.
		for range limit + 1 {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}
	}
	a, c := lns[0], lns[1]
	state := func() string {
		return fmt.Sprintf("%d held of %d, %d Accepts waiting, %d waited", b.Held(), b.Limit(), b.Waiting(), b.Waited())
	}

	var held []net.Conn
	for _, ln := range []net.Listener{a, a, c} {
		r := receive(t, acceptOnce(ln), "an Accept below the bound")
		if r.err != nil {
			t.Fatal(r.err)
		}
		held = append(held, r.conn)
	}
	if b.Held() != limit || b.Waiting() != 0 || b.Waited() != 0 {
		t.Fatalf("two connections held on one listener and one on the other: %s; want %d held, none waiting or waited", state(), limit)
	}

	// Full: the next Accept waits on the bound, whichever listener.
	next := acceptOnce(c)
	eventually(t, "an Accept on the second listener to wait on the bound", func() bool { return b.Waiting() == 1 })

	// A connection of the first listener closing lets it through; closing
	// it again gives back nothing more.
	held[0].Close()
	held[0].Close()
	r := receive(t, next, "the waiting Accept after a connection closed")
	if r.err != nil {
		t.Fatal(r.err)
	}
	held[0] = r.conn
	if b.Held() != limit || b.Waiting() != 0 || b.Waited() != 1 {
		t.Fatalf("after one connection closed (twice) and the waiting Accept got through: %s; want %d held, 0 waiting, 1 waited", state(), limit)
	}

	// Closing a listener ends its waiting Accept, taking no slot.
	next = acceptOnce(a)
	eventually(t, "an Accept on the first listener to wait on the bound", func() bool { return b.Waiting() == 1 })
	a.Close()
	if r := receive(t, next, "the waiting Accept after its listener closed"); r.err == nil {
		t.Fatalf("Accept on a closed listener returned a connection: %s", state())
	}
	if b.Held() != limit || b.Waiting() != 0 || b.Waited() != 2 {
		t.Fatalf("after the listener of a waiting Accept closed: %s; want %d held, 0 waiting, 2 waited", state(), limit)
	}

	// The other listener's connections still count: one closing makes room
	// for one more there and no more.
	held[2].Close()
	if r := receive(t, acceptOnce(c), "an Accept after a connection closed"); r.err != nil {
		t.Fatal(r.err)
	}
	next = acceptOnce(c)
	eventually(t, "the next Accept to wait on the bound", func() bool { return b.Waiting() == 1 })
	if b.Held() != limit {
		t.Fatalf("%s; want %d held", state(), limit)
	}
	c.Close()
	if r := receive(t, next, "the waiting Accept after its listener closed"); r.err == nil {
		t.Fatalf("Accept on a closed listener returned a connection: %s", state())
	}

	// With a slot free, an Accept that fails (its listener closed) gives
	// back the slot it may have taken.
	held[1].Close()
	if r := receive(t, acceptOnce(a), "an Accept on a closed listener"); r.err == nil {
		t.Fatal("Accept on a closed listener returned a connection")
	}
	if b.Held() != limit-1 || len(b.sem) != limit-1 {
		t.Fatalf("after a failed Accept: %s, %d slots taken; want %d of each", state(), len(b.sem), limit-1)
	}
}

// Held counts client connections only: an accept loop that took its slot
// and waits for a client (as a listener's does whenever it is idle) is no
// connection, so client_connections reads 0 with no client.
func TestClientBoundHeldCountsConnections(t *testing.T) {
	b := newClientBound(1)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := b.Listen(inner)
	t.Cleanup(func() { ln.Close() })

	first := acceptOnce(ln)
	eventually(t, "the Accept to take the slot", func() bool { return len(b.sem) == 1 })
	if b.Held() != 0 {
		t.Fatalf("Held = %d with no client, want 0", b.Held())
	}
	client, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	r := receive(t, first, "the Accept of the client")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if b.Held() != 1 {
		t.Fatalf("Held = %d with one client, want 1", b.Held())
	}

	// The next Accept waits for the slot, then for a client.
	next := acceptOnce(ln)
	eventually(t, "the next Accept to wait on the bound", func() bool { return b.Waiting() == 1 })
	r.conn.Close()
	eventually(t, "the next Accept to take the freed slot", func() bool { return b.Waiting() == 0 && len(b.sem) == 1 })
	if b.Held() != 0 {
		t.Fatalf("Held = %d after the only client closed, want 0", b.Held())
	}
	ln.Close()
	if r := receive(t, next, "the Accept after its listener closed"); r.err == nil {
		t.Fatal("Accept on a closed listener returned a connection")
	}
	if len(b.sem) != 0 {
		t.Fatalf("%d slots taken after the listener closed, want 0", len(b.sem))
	}
}
