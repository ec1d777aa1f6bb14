// Package logbuf batches log lines into fewer writes. The access log has a
// line per request; written one by one to a pipe (a container runtime, the
// journal) each costs a system call and wakes the reader, which under load
// is a large share of what the proxy spends per request. A Writer collects
// the lines and writes them together, within a short interval of the first
// (or at once when enough have gathered), in the order they came, like
// nginx's and Envoy's buffered access logs; a line of another log written
// through Direct goes out at once, after every line before it.
package logbuf

import (
	"io"
	"sync"
	"time"
)

const (
	// DefaultInterval bounds how long a line waits for company.
	DefaultInterval = 100 * time.Millisecond
	// flushSize is how much makes a write worth doing before the interval.
	flushSize = 32 << 10
	// maxPending bounds the lines held while a write is stuck (a reader
	// that stopped reading): beyond it, writers wait, as they would on
	// the pipe itself, rather than the proxy grow without bound.
	maxPending = 1 << 20
)

// Writer is an io.Writer that batches what is written to it; see the
// package comment. Each Write is taken to be one whole line (slog's
// handlers write one record per call). Safe for concurrent use.
type Writer struct {
	out      io.Writer
	interval time.Duration

	wmu sync.Mutex // one write to out at a time, in order

	mu      sync.Mutex
	drained sync.Cond // signalled when pending is taken for writing
	pending []byte
	spare   []byte
	closed  bool

	first chan struct{} // a line arrived in an empty buffer
	full  chan struct{} // flushSize gathered
	done  chan struct{} // Close
	exit  chan struct{} // the flusher returned
}

// New returns a Writer over out that writes at most interval after a line
// arrives (DefaultInterval when 0). Close it to write what is left.
func New(out io.Writer, interval time.Duration) *Writer {
	if interval <= 0 {
		interval = DefaultInterval
	}
	w := &Writer{out: out, interval: interval,
		first: make(chan struct{}, 1), full: make(chan struct{}, 1),
		done: make(chan struct{}), exit: make(chan struct{})}
	w.drained.L = &w.mu
	go w.flusher()
	return w
}

// Write holds a copy of p for the next batch. It waits only when a stuck
// write has let maxPending pile up; after Close it writes p at once.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	for len(w.pending) >= maxPending && !w.closed {
		w.drained.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		return w.direct(p)
	}
	wasEmpty := len(w.pending) == 0
	w.pending = append(w.pending, p...)
	n := len(w.pending)
	w.mu.Unlock()
	switch {
	case n >= flushSize:
		signal(w.full)
	case wasEmpty:
		signal(w.first)
	}
	return len(p), nil
}

// Direct is a writer for lines that must not wait (warnings, errors, the
// start line): each goes out at once, after the lines batched before it.
func (w *Writer) Direct() io.Writer { return directWriter{w} }

type directWriter struct{ w *Writer }

func (d directWriter) Write(p []byte) (int, error) { return d.w.direct(p) }

// direct writes what is pending, then p, in one write.
func (w *Writer) direct(p []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	buf := w.take()
	if len(buf) == 0 {
		if len(p) == 0 {
			return 0, nil
		}
		return w.out.Write(p)
	}
	buf = append(buf, p...)
	_, err := w.out.Write(buf)
	w.giveBack(buf)
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes every line held.
func (w *Writer) Flush() error {
	_, err := w.direct(nil)
	return err
}

// Close writes every line held and stops batching: later lines are
// written at once. It is safe to call more than once.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.drained.Broadcast()
	w.mu.Unlock()
	close(w.done)
	<-w.exit
	return w.Flush()
}

// take swaps the pending lines out for writing (the caller holds wmu).
func (w *Writer) take() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	buf := w.pending
	w.pending, w.spare = w.spare[:0], nil
	w.drained.Broadcast()
	return buf
}

// giveBack keeps buf for the next batch, unless a burst made it large.
func (w *Writer) giveBack(buf []byte) {
	if cap(buf) > 4*flushSize {
		return
	}
	w.mu.Lock()
	if w.spare == nil {
		w.spare = buf[:0]
	}
	w.mu.Unlock()
}

// flusher writes the batch interval after its first line, or as soon as
// flushSize has gathered.
func (w *Writer) flusher() {
	defer close(w.exit)
	t := time.NewTimer(w.interval)
	t.Stop()
	for {
		select {
		case <-w.first:
			t.Reset(w.interval)
			select {
			case <-t.C:
			case <-w.full:
				t.Stop()
			case <-w.done:
				t.Stop()
				return
			}
		case <-w.full:
		case <-w.done:
			return
		}
		_ = w.Flush()
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
