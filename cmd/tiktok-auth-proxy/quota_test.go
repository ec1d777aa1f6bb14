package main

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/quota"
)

// With store.backend redis, the budgets of two serve processes on one
// Redis are one: a real redis-server on a free loopback port.
func TestQuotaSharedThroughRedis(t *testing.T) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not installed (scripts/ensure-test-deps.sh installs it): %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	srv := exec.Command(path, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	ping := redis.NewClient(&redis.Options{Addr: addr})
	defer ping.Close()
	for deadline := time.Now().Add(10 * time.Second); ping.Ping(context.Background()).Err() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not answer PING")
		}
	}

	cfg := &config.Config{
		Store:       config.Store{Backend: "redis", Redis: config.Redis{Address: addr, KeyPrefix: "tap:"}},
		RateLimits:  config.RateLimits{Tier: config.TierBasic, MaxWait: time.Millisecond},
		Credentials: []config.Credential{{Name: "main", AppID: "7123"}},
	}
	var refused int
	for range 2 {
		l, stop := newQuota(cfg, nil, nil)
		t.Cleanup(func() { _ = stop() })
		_, err := l.Wait(context.Background(), quota.Request{Credential: "main"})
		var le *quota.LimitedError
		switch {
		case errors.As(err, &le):
			refused++
		case err != nil:
			t.Fatal(err)
		}
	}
	if refused != 1 {
		t.Errorf("%d of two replicas refused within one interval, want 1: the budget is not shared", refused)
	}
	cfg.Store.Backend = "file"
	l, _ := newQuota(cfg, nil, nil)
	if _, err := l.Wait(context.Background(), quota.Request{Credential: "main"}); err != nil {
		t.Errorf("with the file store the budget is the process's own: %v", err)
	}
}
