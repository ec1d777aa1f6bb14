package redisstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/redistest"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/redisstore"
)

// pausedHolderEnv makes the test binary the lease holder of
// TestPausedHolderProcess instead of running tests.
const pausedHolderEnv = "REDISSTORE_PAUSED_HOLDER_ADDR"

func TestMain(m *testing.M) {
	if addr := os.Getenv(pausedHolderEnv); addr != "" {
		if err := pausedHolder(addr); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// pausedHolder takes the lease, reads the record under it and says so; once
// told to go on (after its pause) it tries to extend the lease and to store
// a refresh fenced by the generation it read, printing what happened.
func pausedHolder(addr string) error {
	st, err := redisstore.Open(redisstore.Options{Address: addr})
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	l, ok, err := st.Acquire(ctx, "main", 500*time.Millisecond)
	if err != nil || !ok {
		return fmt.Errorf("acquire: ok %v, err %v", ok, err)
	}
	read, err := st.Get(ctx, "main")
	if err != nil {
		return err
	}
	fmt.Printf("holding generation %d\n", read.Generation)
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	fmt.Printf("extend: lease lost %v\n", errors.Is(l.Extend(ctx), tokens.ErrLeaseLost))
	select {
	case <-l.Lost():
		fmt.Println("lost: closed")
	default:
		fmt.Println("lost: open")
	}
	late := read.Clone()
	late.AccessToken, late.RefreshToken = "AT-late", "RT-late"
	fmt.Printf("put: conflict %v\n", errors.Is(st.Put(ctx, late, read.Generation), tokens.ErrConflict))
	return nil
}

// A holder process stopped (SIGSTOP) while holding the lease: the lease
// runs out, another replica takes it and stores a newer record; resumed,
// the holder learns it lost the lease and its late write is refused.
func TestPausedHolderProcess(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	st := open(t, srv, redisstore.Options{})
	if err := st.Put(ctx, record("main", "AT1", "RT1"), 0); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), pausedHolderEnv+"="+srv.Addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	out := bufio.NewScanner(stdout)
	line := func() string {
		t.Helper()
		if !out.Scan() {
			t.Fatalf("holder process ended early: %v", out.Err())
		}
		return out.Text()
	}
	if got := line(); got != "holding generation 1" {
		t.Fatalf("holder said %q", got)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}

	var lease tokens.Lease
	until(t, 10*time.Second, "the stopped holder's lease to run out", func() bool {
		l, ok, err := st.Acquire(ctx, "main", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		lease = l
		return ok
	})
	cur, err := st.Get(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	next := cur.Clone()
	next.AccessToken, next.RefreshToken = "AT2", "RT2"
	if err := st.Put(ctx, next, cur.Generation); err != nil {
		t.Fatal(err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}

	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintln(stdin, "go"); err != nil {
		t.Fatal(err)
	}
	var said []string
	for range 3 {
		said = append(said, line())
	}
	if want := []string{"extend: lease lost true", "lost: closed", "put: conflict true"}; strings.Join(said, "\n") != strings.Join(want, "\n") {
		t.Fatalf("resumed holder said %q, want %q", said, want)
	}
	got, err := st.Get(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	if got.RefreshToken != "RT2" || got.Generation != 2 {
		t.Fatalf("stored %q at generation %d, want the new holder's RT2 at 2", got.RefreshToken, got.Generation)
	}
}
