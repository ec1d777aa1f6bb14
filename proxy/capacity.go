package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/memlimit"
)

// Limits that keep a burst from turning into a file-descriptor storm. A
// burst beyond them waits or is shed with 90013; nothing beyond them is
// TikTok's fault, so none of it counts towards the breaker.
const (
	// MaxUpstreamConns bounds the connections to TikTok (per host, which
	// is one host). Requests beyond it wait for a free connection within
	// upstream.timeout; 256 keep-alive connections carry far more than any
	// app's TikTok quota.
	MaxUpstreamConns = 256
	// MaxInflight bounds the requests the proxy works on at once; the
	// next ones wait up to MaxQueueWait for a slot, then get 90013 (503,
	// Retry-After).
	MaxInflight  = 4096
	MaxQueueWait = 10 * time.Second
)

// WriteGrace is how long after a request's deadline (upstream.timeout from
// its arrival) its answer may still be written: an error envelope made at
// the deadline needs a moment. Writes to a client are bounded by it — the
// proxy listener's server takes upstream.timeout + WriteGrace as its
// WriteTimeout, and each forward-proxy tunnel sets that write deadline per
// request — so a client that stops reading holds its connection, its
// handler and its slot of the shared ClientBound no longer than that,
// instead of for as long as it keeps the connection open. Every answer is
// already cut at upstream.timeout on TikTok's side, so no answer that
// could be delivered is cut.
const WriteGrace = 2 * time.Second

// fdReserve is the file descriptors left for everything but client and
// upstream connections: listeners, the store, the admin listener's
// clients, the log, the runtime.
const fdReserve = 64

// connLimits shares a process's file descriptors (RLIMIT_NOFILE, which Go
// raises to its hard limit at start) between connections from clients and
// to TikTok, so a burst can never take the descriptors its own upstream
// connections need: clients get what MaxUpstreamConns and fdReserve leave,
// and with fewer than 4×MaxUpstreamConns descriptors, upstream gets a
// quarter and the reserve an eighth. Clients get at most MaxInflight
// connections, which bounds the memory a burst of any size takes (each
// connection holds buffers and a goroutine while it waits).
func connLimits(nofile uint64) (clients, upstream int) {
	n := int(min(nofile, 1<<20))
	upstream = max(min(MaxUpstreamConns, n/4), 1)
	return min(max(n-upstream-min(fdReserve, n/8), 1), MaxInflight), upstream
}

// fdLimits is connLimits of the process's current RLIMIT_NOFILE; when it
// cannot be read, clients is 0 (unknown: clientLimit then takes MaxInflight)
// and upstream MaxUpstreamConns.
func fdLimits() (clients, upstream int) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, MaxUpstreamConns
	}
	return connLimits(rl.Cur)
}

// What a burst costs in memory, measured with 10,000 clients at once
// (BENCHMARKS.md): about 150 MiB of live heap and stacks for 4,096 held
// connections (net/http's buffers and two goroutines each), 37 KiB a
// connection, with the garbage the soft memory limit lets pile up on top;
// connMemory leaves room for it. memoryBase is what the proxy needs
// besides: the binary's pages, the runtime, TikTok's connections.
const (
	connMemory = 48 << 10
	memoryBase = 48 << 20
	// tunnelMemory is connMemory for a forward-proxy tunnel: 1,000 idle
	// TLS tunnels held 78-80 KiB each (the TLS connection's record buffers,
	// goproxy's reader, their goroutines), against 24 KiB for a keep-alive
	// connection on the proxy listener; with the same room for garbage.
	tunnelMemory = 96 << 10
	// minClients is the fewest client connections a memory limit leaves.
	minClients = 64
)

// memoryClients is how many client connections fit in a container memory
// limit of limit bytes, so that a burst waits in the kernel's accept queue
// instead of the container being killed for its memory: 1,706 in 128 MiB,
// MaxInflight from 240 MiB on; when the connections may be forward-proxy
// tunnels, 853 in 128 MiB, MaxInflight from 432 MiB on.
func memoryClients(limit int64, tunnels bool) int {
	per := int64(connMemory)
	if tunnels {
		per = tunnelMemory
	}
	return int(min(max((limit-memoryBase)/per, minClients), MaxInflight))
}

// ClientBound is one bound on the client connections that every listener
// it wraps hands out at once: MaxInflight, or fewer when the process's
// file-descriptor limit leaves less after connections to TikTok (see
// connLimits) or its container's memory limit holds fewer
// (memoryClients). Further clients wait in the kernel's accept queue,
// costing no descriptor or memory, until one closes. Serve the reverse and
// the forward front ends on one bound: the limit was computed for the
// process, so two bounds of that size would let simultaneous bursts on
// both hold twice the descriptors and memory it allows, starving the
// proxy's own connections to TikTok. Idle keep-alive connections count too
// (net/http closes them after its IdleTimeout). A ClientBound is safe for
// concurrent use.
type ClientBound struct {
	// sem holds a slot per client connection handed out, and one per
	// Accept that took its slot and waits for a client; conns counts only
	// the connections.
	sem   chan struct{}
	conns atomic.Int64
	// waiting is the Accepts blocked on sem now, waited those that ever
	// were: they show the bound holding clients back.
	waiting atomic.Int64
	waited  atomic.Uint64
	// listeners are the listeners wrapped, whose accept queues Queued reads.
	mu        sync.Mutex
	listeners []net.Listener
}

// NewClientBound returns the bound the process's limits leave, read now.
// tunnels says it will bound a forward-proxy listener too, whose
// connections (TLS tunnels) each take about three times the memory.
func NewClientBound(tunnels bool) *ClientBound {
	return newClientBound(clientLimit(tunnels))
}

// clientLimit is ClientBound's size: connLimits' clients (MaxInflight when
// the descriptor limit cannot be read), or memoryClients when the
// container's memory limit holds fewer.
func clientLimit(tunnels bool) int {
	clients, _ := fdLimits()
	if clients == 0 {
		clients = MaxInflight
	}
	if limit, ok := memlimit.Container(); ok {
		clients = min(clients, memoryClients(limit, tunnels))
	}
	return clients
}

func newClientBound(n int) *ClientBound {
	return &ClientBound{sem: make(chan struct{}, n)}
}

// Limit is the most client connections the bound lets its listeners hold.
func (b *ClientBound) Limit() int { return cap(b.sem) }

// Held is the client connections its listeners hold now.
func (b *ClientBound) Held() int { return int(b.conns.Load()) }

// Waiting is the Accepts of its listeners blocked on the bound now: each
// returns once a connection closes (or its listener does).
func (b *ClientBound) Waiting() int { return int(b.waiting.Load()) }

// Waited counts the Accepts of its listeners that found the bound full
// and had to wait for a connection to close (or their listener to).
func (b *ClientBound) Waited() uint64 { return b.waited.Load() }

// Queued is the clients the kernel holds in its listeners' accept queues
// now, connected and waiting for the proxy to accept them: the clients
// the bound holds back (an Accept waiting on a full bound only says the
// bound is full; idle keep-alive connections can fill it while nobody
// waits). ok is false where the queues cannot be read (not Linux, or not a
// TCP listener).
func (b *ClientBound) Queued() (n int, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ln := range b.listeners {
		q, qok := acceptQueue(ln)
		if !qok {
			return 0, false
		}
		n += q
	}
	return n, len(b.listeners) > 0
}

// Listen wraps ln so that each connection it accepts holds one of b's
// slots until closed. As with netutil.LimitListener, Accept takes a slot
// before accepting, so clients beyond the bound stay in the kernel's
// queue, and Close of the listener ends an Accept waiting for one.
func (b *ClientBound) Listen(ln net.Listener) net.Listener {
	b.mu.Lock()
	b.listeners = append(b.listeners, ln)
	b.mu.Unlock()
	return &boundListener{Listener: ln, bound: b, done: make(chan struct{})}
}

// acquire takes a slot, waiting for one unless done closes first.
func (b *ClientBound) acquire(done <-chan struct{}) bool {
	select {
	case b.sem <- struct{}{}:
		return true
	default:
	}
	b.waited.Add(1)
	b.waiting.Add(1)
	defer b.waiting.Add(-1)
	select {
	case b.sem <- struct{}{}:
		return true
	case <-done:
		return false
	}
}

func (b *ClientBound) release() { <-b.sem }

// boundListener is a listener whose connections hold a slot of bound.
type boundListener struct {
	net.Listener
	bound     *ClientBound
	closeOnce sync.Once
	done      chan struct{} // closed by Close
}

func (l *boundListener) Accept() (net.Conn, error) {
	if !l.bound.acquire(l.done) {
		// Closed: the inner Accept fails at once. A listener that still
		// hands out a pending connection gets it closed, as
		// netutil.LimitListener does (golang.org/issue/50216).
		for {
			c, err := l.Listener.Accept()
			if err != nil {
				return nil, err
			}
			c.Close()
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.bound.release()
		return nil, err
	}
	l.bound.conns.Add(1)
	return &boundConn{Conn: c, bound: l.bound}, nil
}

func (l *boundListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// boundConn gives its slot back on its first Close.
type boundConn struct {
	net.Conn
	bound     *ClientBound
	closeOnce sync.Once
}

func (c *boundConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.bound.conns.Add(-1)
		c.bound.release()
	})
	return err
}

// slots is the in-flight bound: a counting semaphore of n slots that a
// request waits on for at most wait.
type slots struct {
	c    chan struct{}
	wait time.Duration
}

func newSlots(n int, wait time.Duration) *slots {
	return &slots{c: make(chan struct{}, n), wait: wait}
}

// admit takes a slot for one request, which release gives back. Past the
// wait, or when ctx ends first, it returns 90013 and takes nothing.
func (s *slots) admit(ctx context.Context) *Error {
	select {
	case s.c <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(s.wait)
	defer t.Stop()
	select {
	case s.c <- struct{}{}:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	return overloaded("%d requests are already in flight", cap(s.c))
}

// release gives back a slot admit took.
func (s *slots) release() { <-s.c }

// overloaded is 90013: the proxy itself cannot take the request now (its
// in-flight bound, or the machine's file descriptors or ports are used up).
// The client should retry shortly; TikTok was not asked.
func overloaded(format string, args ...any) *Error {
	e := newError(CodeOverloaded, http.StatusServiceUnavailable,
		"the proxy is at capacity ("+format+"); retry after the Retry-After seconds", args...)
	e.RetryAfter = time.Second
	return e
}

// localError is a round trip that failed in this process or machine before
// TikTok was reached: out of file descriptors, ports or buffers, or timed
// out waiting for one of the MaxUpstreamConns connections.
type localError struct{ err error }

func (e *localError) Error() string { return "proxy: local: " + e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// localErrnos are the dial errors that say the machine, not TikTok, ran
// out of something.
var localErrnos = []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.ENOBUFS, syscall.ENOMEM}

func isLocalErrno(err error) bool {
	for _, errno := range localErrnos {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// dialWaitingForResources wraps dial so that a dial failing for want of a
// file descriptor, port or buffer is tried again, backing off from 5ms to
// 1s as net/http's accept loop does, until ctx ends: such a shortage passes
// as other requests finish, so a burst beyond the process's ulimit waits
// rather than fails. The transport ends ctx when the request gives up.
func dialWaitingForResources(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		backoff := 5 * time.Millisecond
		waiting := false
		defer func() {
			if waiting {
				dialsWaiting.Add(-1)
			}
		}()
		for {
			c, err := dial(ctx, network, addr)
			if err == nil || !isLocalErrno(err) {
				return c, err
			}
			localDialFailures.Add(1)
			if !waiting {
				waiting = true
				dialsWaiting.Add(1)
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, err
			}
			backoff = min(2*backoff, time.Second)
		}
	}
}

// localDialFailures counts the dials to TikTok that failed for want of a
// local resource, and dialsWaiting the dials waiting for one now: a round
// trip sent without the connection trace (traceFrom) learns from them
// that the proxy ran short while it waited.
var (
	localDialFailures atomic.Uint64
	dialsWaiting      atomic.Int64
)

// connTrace records how far a round trip got towards a connection. The
// trace costs a few µs a request (httptrace composes it with
// ReverseProxy's own by reflection), so a round trip carries it only when
// the proxy may run short (Core.upstreamRoundTrip); traced says whether
// this one did, and localFailures is localDialFailures when it was sent.
type connTrace struct {
	started, done atomic.Int32 // connects begun and ended for the request
	lastLocal     atomic.Bool  // the last connect ended for want of a local resource
	got           atomic.Bool  // the request was given a connection
	traced        bool
	localFailures uint64
}

// reset forgets a previous attempt.
func (t *connTrace) reset() {
	t.started.Store(0)
	t.done.Store(0)
	t.lastLocal.Store(false)
	t.got.Store(false)
	t.traced = false
}

// trace returns ctx with hooks recording into t.
func (t *connTrace) trace(ctx context.Context) context.Context {
	t.traced = true
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		ConnectStart: func(string, string) { t.started.Add(1) },
		ConnectDone: func(_, _ string, err error) {
			t.lastLocal.Store(isLocalErrno(err))
			t.done.Add(1)
		},
		GotConn: func(httptrace.GotConnInfo) { t.got.Store(true) },
	})
}

// classify wraps err in *localError when it is not TikTok's doing: a local
// resource errno, or a timeout before the request had a connection while
// it was queued behind MaxUpstreamConns (no connect begun) or waiting for
// a file descriptor (the last connect failed for want of one). A connect
// still under way at the timeout, or refused, is TikTok unreachable.
func (t *connTrace) classify(err error) error {
	if isLocalErrno(err) {
		return &localError{err}
	}
	if !isTimeout(err) {
		return err
	}
	if !t.traced {
		// Sent with fewer requests heading to TikTok than connections and
		// no dial waiting for a descriptor: it was not queued. Its timeout
		// is TikTok's unless a dial ran short of a descriptor meanwhile,
		// perhaps its own.
		if localDialFailures.Load() != t.localFailures {
			return &localError{err}
		}
		return err
	}
	if t.got.Load() {
		return err
	}
	started, done := t.started.Load(), t.done.Load()
	if started == 0 || (started == done && t.lastLocal.Load()) {
		return &localError{err}
	}
	return err
}
