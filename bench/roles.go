package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// The bench runs the fake upstream and the tuned baseline as separate
// processes (the bench's own executable started again with roleEnv set),
// so each process's CPU time and RSS are its own.
const (
	roleEnv     = "TAPBENCH_ROLE"
	upstreamEnv = "TAPBENCH_UPSTREAM"
	// readyPrefix starts the line a child prints once it listens.
	readyPrefix = "listening "
)

// Child runs the process as the upstream or baseline role when the bench
// started it as one, and never returns then; otherwise it returns at once.
// Call it first in main and in TestMain.
func Child() {
	role := os.Getenv(roleEnv)
	if role == "" {
		return
	}
	var h http.Handler
	switch role {
	case "upstream":
		h = newUpstream()
	case "baseline":
		target, err := url.Parse(os.Getenv(upstreamEnv))
		if err != nil {
			log.Fatalf("bench: baseline: %v", err)
		}
		h = newBaseline(target, &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
		})
	default:
		log.Fatalf("bench: unknown role %q", role)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatalf("bench: %s: %v", role, err)
	}
	fmt.Printf("%s%s\n", readyPrefix, ln.Addr())
	// The parent holds our stdin; when it goes (the bench ended or
	// crashed) so do we.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	log.Fatal(srv.Serve(ln))
}

// newBaseline is the best a Go proxy can be at this job: ReverseProxy with
// pooled copy buffers, no forced flushes, setting one fixed header, sending
// through rt (in its process a pooled transport kept warm by the warm-up
// rounds, with GOGC=400).
func newBaseline(target *url.URL, rt http.RoundTripper) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header["Access-Token"] = []string{longLivedToken}
		},
		Transport:     rt,
		BufferPool:    bufferPool{},
		FlushInterval: 0,
		ErrorLog:      log.New(io.Discard, "", 0),
	}
}

// bufferPool is httputil.BufferPool over a sync.Pool of 32 KiB buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { return make([]byte, 32<<10) }}

func (bufferPool) Get() []byte { return buffers.Get().([]byte) }

//lint:ignore SA6002 httputil.BufferPool hands out slices; a slice header per Put is its cost
func (bufferPool) Put(b []byte) { buffers.Put(b) }

// child is a process the bench started: the proxy binary or a role.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *tail
	done  chan struct{}
}

// startRole starts the bench's own executable as role with env added and
// returns it with the address it listens on.
func startRole(ctx context.Context, role string, env ...string) (*child, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("bench: %w", err)
	}
	c, err := startChild(exe, nil, append([]string{roleEnv + "=" + role}, env...))
	if err != nil {
		return nil, "", err
	}
	addr, err := c.waitAddr(ctx, 20*time.Second)
	if err != nil {
		c.stop()
		return nil, "", fmt.Errorf("bench: %s: %w", role, err)
	}
	return c, addr, nil
}

// startChild starts path with args and env added to the bench's. Its
// output is drained into a small tail kept for error messages, so a
// process that logs every request never blocks on a full pipe.
func startChild(path string, args, env []string) (*child, error) {
	c := &child{cmd: exec.Command(path, args...), out: &tail{}, done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", path, err)
	}
	go func() {
		_ = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// waitAddr waits for the child's "listening ADDR" line.
func (c *child) waitAddr(ctx context.Context, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if addr, ok := c.out.listening(); ok {
			return addr, nil
		}
		select {
		case <-c.done:
			return "", fmt.Errorf("exited: %s", c.out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return "", errors.Join(ctx.Err(), fmt.Errorf("no address within %v: %s", timeout, c.out.String()))
}

// stop ends the child: SIGTERM-like close of stdin for roles, then kill.
func (c *child) stop() {
	_ = c.stdin.Close()
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// tail keeps the first line announcing an address and the last 8 KiB of a
// child's output.
type tail struct {
	mu   sync.Mutex
	addr string
	buf  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.addr == "" && len(t.buf) < 4096 {
		sc := bufio.NewScanner(strings.NewReader(string(t.buf) + string(p)))
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), readyPrefix); ok {
				t.addr = strings.TrimSpace(a)
			}
		}
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8192 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-8192:]...)
	}
	return len(p), nil
}

func (t *tail) listening() (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addr, t.addr != ""
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
