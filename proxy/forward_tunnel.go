package proxy

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// DefaultTunnelIdleTimeout is how long a forward-proxy tunnel may wait for
// its next request when ForwardOptions.IdleTimeout is 0: as long as the
// proxy listener keeps an idle connection.
const DefaultTunnelIdleTimeout = 2 * time.Minute

// tunnels are the connections goproxy took over for CONNECTs.
type tunnels struct {
	idle, read time.Duration
	mu         sync.Mutex
	open       map[*tunnelConn]struct{}
	closed     bool // CloseTunnels ran: every tunnel ends once idle
	// hijackers are the CONNECTs being served, by request: connect finds
	// there the connection its tunnel will run on.
	hijackers sync.Map // *http.Request → *hijacker
}

// hijacker is a CONNECT's ResponseWriter: its Hijack hands goproxy the
// connection as a *tunnelConn.
type hijacker struct {
	http.ResponseWriter
	ts   *tunnels
	conn *tunnelConn // set by Hijack
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = h.ts.add(conn)
	return h.conn, brw, nil
}

// add tracks conn, waiting (the TLS handshake and the first request's
// header) for at most idle; after CloseTunnels it is closed at once.
func (ts *tunnels) add(conn net.Conn) *tunnelConn {
	c := &tunnelConn{Conn: conn, ts: ts}
	ts.mu.Lock()
	closed := ts.closed
	if !closed {
		ts.open[c] = struct{}{}
	}
	ts.mu.Unlock()
	if closed {
		_ = conn.Close()
		return c
	}
	_ = conn.SetReadDeadline(time.Now().Add(ts.idle))
	return c
}

// closeAll closes every tunnel waiting for a request now and every other
// one once its request is answered, and every tunnel opened later at once.
func (ts *tunnels) closeAll() {
	ts.mu.Lock()
	ts.closed = true
	open := make([]*tunnelConn, 0, len(ts.open))
	for c := range ts.open {
		open = append(open, c)
	}
	ts.mu.Unlock()
	for _, c := range open {
		c.shut()
	}
}

// tunnelConn is a connection goproxy took over for a CONNECT. net/http
// lifts every deadline when it hands a connection over and goproxy sets
// none, so without these a client could hold a tunnel (and its goroutine)
// by sending nothing, and a request's handler by never finishing its body:
// between requests a tunnel waits at most idle, and a request's body must
// arrive within read (upstream.timeout) of its header, as on the proxy
// listener. A read that runs out of time leaves the request stream
// unreadable, so the tunnel then ends once the answer is written.
type tunnelConn struct {
	net.Conn
	ts        *tunnels
	closeOnce sync.Once
	mu        sync.Mutex
	served    uint64 // requests begun, the last one's number
	busy      bool   // a request is being served
	closing   bool   // end once the request being served is answered
	timedOut  bool   // a read ran past its deadline
}

func (c *tunnelConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.mu.Lock()
		c.timedOut = true
		c.mu.Unlock()
	}
	return n, err
}

// Close closes the connection and stops tracking it.
func (c *tunnelConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		c.ts.mu.Lock()
		delete(c.ts.open, c)
		c.ts.mu.Unlock()
		err = c.Conn.Close()
	})
	return err
}

// serving marks a request's header read: its body must arrive within
// read, and its answer be written within read + WriteGrace (a client that
// stops reading would otherwise hold the tunnel, its handler and its slot
// of the client bound for as long as it keeps the connection). It returns
// the request's number in the tunnel, for answered. The deadlines are set
// under mu so that a late answered, or shut, cannot overtake them.
func (c *tunnelConn) serving() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.served++
	c.busy = true
	now := time.Now()
	_ = c.Conn.SetReadDeadline(now.Add(c.ts.read))
	_ = c.Conn.SetWriteDeadline(now.Add(c.ts.read + WriteGrace))
	return c.served
}

// answered marks request n's answer written in full: the tunnel waits up
// to idle for the next request, or ends. Ending is left to goproxy:
// reading the next request fails at once, and goproxy then closes the
// tunnel. When the next request already began, n's answer changes
// nothing.
func (c *tunnelConn) answered(n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n != c.served {
		return
	}
	c.busy = false
	wait := c.ts.idle
	if c.closing || c.timedOut {
		wait = 0
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(wait))
}

// shut closes the tunnel now when it waits for a request, else once its
// request is answered.
func (c *tunnelConn) shut() {
	c.mu.Lock()
	c.closing = true
	busy := c.busy
	c.mu.Unlock()
	if !busy {
		_ = c.Close()
	}
}
