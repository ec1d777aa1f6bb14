package proxy

import (
	"net"
	"testing"
)

// Queued reads the clients the kernel holds in the bound's listeners'
// accept queues: none once each client is accepted, those connected
// beyond a full bound while its Accept waits, one fewer when a held
// connection closes and lets one in; nothing from a closed listener.
func TestClientBoundQueued(t *testing.T) {
	b := newClientBound(1)
	if _, ok := b.Queued(); ok {
		t.Error("Queued read queues of no listener")
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := b.Listen(raw)
	defer ln.Close()
	dial := func() {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	queued := func(want int) func() bool {
		return func() bool { n, ok := b.Queued(); return ok && n == want }
	}

	dial()
	r := receive(t, acceptOnce(ln), "the first client's Accept")
	if r.err != nil {
		t.Fatal(r.err)
	}
	eventually(t, "an empty accept queue once the client is accepted", queued(0))

	// The bound is full: the next Accept waits on it and the kernel holds
	// the clients that connect meanwhile.
	next := acceptOnce(ln)
	eventually(t, "the Accept to wait on the full bound", func() bool { return b.Waiting() == 1 })
	dial()
	dial()
	eventually(t, "two clients in the accept queue", queued(2))

	r.conn.Close()
	if r := receive(t, next, "the Accept once the held connection closed"); r.err != nil {
		t.Fatal(r.err)
	}
	eventually(t, "one client left in the accept queue", queued(1))

	ln.Close()
	if _, ok := b.Queued(); ok {
		t.Error("Queued read the queue of a closed listener")
	}
}
