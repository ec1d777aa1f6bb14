package logbuf

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// sink records each write to it; wrote receives the count after each.
type sink struct {
	mu     sync.Mutex
	writes []string
	gate   chan struct{} // when not nil, each write waits for a value
	wrote  chan int
}

func newSink() *sink { return &sink{wrote: make(chan int, 1<<16)} }

func (s *sink) Write(p []byte) (int, error) {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	s.writes = append(s.writes, string(p))
	n := len(s.writes)
	s.mu.Unlock()
	s.wrote <- n
	return len(p), nil
}

func (s *sink) all() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.writes, ""), len(s.writes)
}

func line(i int) []byte { return fmt.Appendf(nil, "{\"msg\":\"request\",\"n\":%d}\n", i) }

// Lines written together go out in one write, in order, once the interval
// has passed; none is written before. On synctest's fake clock the
// interval passes only when the test says.
func TestBatchesWithinTheInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSink()
		w := New(s, 50*time.Millisecond)
		defer w.Close()
		var want bytes.Buffer
		for i := range 100 {
			w.Write(line(i))
			want.Write(line(i))
		}
		time.Sleep(49 * time.Millisecond)
		synctest.Wait()
		if _, n := s.all(); n != 0 {
			t.Fatalf("%d writes 49ms after the lines, want none within the 50ms interval", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		got, n := s.all()
		if n != 1 || got != want.String() {
			t.Fatalf("%d writes of %q, want one write of the 100 lines in order", n, got)
		}
	})
}

// The caller's buffer is copied: slog reuses it for the next record.
func TestCopiesTheLine(t *testing.T) {
	s := newSink()
	w := New(s, time.Hour)
	b := []byte("first\n")
	w.Write(b)
	copy(b, "XXXXX\n")
	w.Close()
	if got, _ := s.all(); got != "first\n" {
		t.Fatalf("wrote %q, want the line as it was when written", got)
	}
}

// A line through Direct goes out at once, after the batched lines before
// it, in the same write.
func TestDirectKeepsOrder(t *testing.T) {
	s := newSink()
	w := New(s, time.Hour)
	defer w.Close()
	w.Write([]byte("a\n"))
	w.Write([]byte("b\n"))
	if _, err := w.Direct().Write([]byte("warn\n")); err != nil {
		t.Fatal(err)
	}
	if got, n := s.all(); n != 1 || got != "a\nb\nwarn\n" {
		t.Fatalf("%d writes of %q, want a, b and the direct line in one write", n, got)
	}
	w.Direct().Write([]byte("again\n"))
	if got, n := s.all(); n != 2 || got != "a\nb\nwarn\nagain\n" {
		t.Fatalf("%d writes of %q, want the second direct line written alone", n, got)
	}
}

// Enough lines to be worth a write go out without waiting for the
// interval.
func TestWritesAFullBatchAtOnce(t *testing.T) {
	s := newSink()
	w := New(s, time.Hour)
	defer w.Close()
	l := bytes.Repeat([]byte("x"), 1023)
	l = append(l, '\n')
	for range flushSize / len(l) {
		w.Write(l)
	}
	select {
	case <-s.wrote:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d bytes held 10s with an interval of an hour, want them written once %d gathered", flushSize, flushSize)
	}
	if got, _ := s.all(); len(got) != flushSize {
		t.Fatalf("wrote %d bytes, want the %d gathered", len(got), flushSize)
	}
}

// Close writes what is held; later lines are written at once.
func TestCloseFlushesAndStopsBatching(t *testing.T) {
	s := newSink()
	w := New(s, time.Hour)
	w.Write([]byte("held\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.all(); got != "held\n" {
		t.Fatalf("after Close wrote %q, want the held line", got)
	}
	w.Write([]byte("late\n"))
	if got, n := s.all(); n != 2 || got != "held\nlate\n" {
		t.Fatalf("%d writes of %q, want the line after Close written at once", n, got)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A reader that stopped reading holds the proxy's writers back once
// maxPending has piled up, as the pipe itself would, instead of memory
// growing without bound; nothing is lost or reordered when it reads again.
func TestBoundedWhileTheWriteIsStuck(t *testing.T) {
	s := newSink()
	s.gate = make(chan struct{})
	w := New(s, time.Millisecond)
	l := append(bytes.Repeat([]byte("y"), 1000), '\n')
	const lines = 3 * maxPending / 1001
	var want bytes.Buffer
	written := make(chan int, lines)
	go func() {
		for i := range lines {
			b := append(fmt.Appendf(nil, "%07d", i), l...)
			w.Write(b)
			written <- i
		}
		close(written)
	}()
	for i := range lines {
		want.Write(append(fmt.Appendf(nil, "%07d", i), l...))
	}
	// The first write is stuck at the gate; the writer fills pending up
	// to the bound and then waits.
	deadline := time.Now().Add(20 * time.Second)
	for {
		w.mu.Lock()
		n := len(w.pending)
		w.mu.Unlock()
		if n > maxPending+1008 {
			t.Fatalf("%d bytes pending while the write is stuck, want at most %d", n, maxPending)
		}
		if n >= maxPending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d bytes pending after 20s", n)
		}
		time.Sleep(time.Millisecond)
	}
	got := 0
	for len(written) > 0 {
		<-written
		got++
	}
	if got >= lines {
		t.Fatalf("all %d lines accepted while the write was stuck, want the writer held back", lines)
	}
	close(s.gate) // the reader reads again
	for range written {
	}
	w.Close()
	if out, _ := s.all(); out != want.String() {
		t.Fatalf("wrote %d bytes, want the %d lines' %d bytes in order", len(out), lines, want.Len())
	}
}
