// Package redistest starts a real redis-server on a free loopback port for
// tests, the one Debian installs (scripts/ensure-test-deps.sh). Tests that
// need Redis use it rather than a mock, so the Lua scripts, expiries and
// pub/sub they rely on are Redis's own.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 10 * time.Second

// Options tune the server. The zero value is an in-memory server.
type Options struct {
	// Persist keeps the data across Stop and Start: an append-only file in
	// the test's temp dir, fsync'd on every write. Without it a restarted
	// server is empty.
	Persist bool
	// Args are extra redis-server arguments, e.g. "--requirepass", "pw".
	Args []string
}

// Server is one redis-server process, restartable on the same port.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string

	t    testing.TB
	dir  string
	opts Options

	mu     sync.Mutex
	cmd    *exec.Cmd // nil while stopped
	exited chan struct{}
	log    *os.File
}

// Start runs a redis-server for the test and stops it at cleanup. It fails
// the test when redis-server is missing: the tests that need it are not
// skipped (make deps installs it).
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redistest: redis-server not found (run make deps): %v", err)
	}
	s := &Server{t: t, dir: t.TempDir(), opts: opts}
	// A port freed by the kernel can be taken by another process before
	// redis binds it; a few tries make that race harmless.
	var err error
	for range 5 {
		s.Addr = freeAddr(t)
		if err = s.start(); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redistest: %v", err)
	return nil
}

// freeAddr returns a loopback address no listener had a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start restarts a stopped server on the same port.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("server on %s already running", s.Addr)
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	args := []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--dir", s.dir, "--daemonize", "no", "--loglevel", "warning"}
	if s.opts.Persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, s.opts.Args...)
	logf, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command("redis-server", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(startTimeout)
	for {
		if ping(s.Addr) == nil {
			s.cmd, s.exited, s.log = cmd, exited, logf
			return nil
		}
		select {
		case <-exited:
			logf.Close()
			return fmt.Errorf("redis-server on %s exited at start: %s", s.Addr, s.tailLog())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			logf.Close()
			return fmt.Errorf("redis-server on %s did not answer within %s: %s", s.Addr, startTimeout, s.tailLog())
		}
	}
}

// ping sends an inline PING and expects +PONG (or an auth error, which also
// means the server is up).
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("unexpected answer %q", line)
	}
	return nil
}

func (s *Server) tailLog() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Stop kills the server (SIGKILL: nothing is flushed beyond what
// appendfsync always already wrote) and waits for it. Stopping a stopped
// server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
	s.log.Close()
}

// Pause stops the server with SIGSTOP: connections stay open but nothing is
// answered, like a server hung or behind a partition. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatalf("redistest: signal %v: server on %s is stopped", sig, s.Addr)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("redistest: signal %v: %v", sig, err)
	}
}
