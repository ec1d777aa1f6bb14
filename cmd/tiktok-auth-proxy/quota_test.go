package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/redistest"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/quota"
)

// With store.backend redis, the budgets of two serve processes on one
// Redis are one; with the file store each process has its own.
func TestQuotaSharedThroughRedis(t *testing.T) {
	rd := redistest.Start(t, redistest.Options{})
	cfg := &config.Config{
		Store:       config.Store{Backend: "redis", Redis: config.Redis{Address: rd.Addr, KeyPrefix: "tap:"}},
		RateLimits:  config.RateLimits{Tier: config.TierBasic, MaxWait: time.Millisecond},
		Credentials: []config.Credential{{Name: "main", AppID: "7123"}},
	}
	refused := 0
	for range 2 {
		store, _, err := openStore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		l, stop := newQuota(cfg, store, nil, nil)
		t.Cleanup(func() { stop(); store.Close() })
		_, err = l.Wait(context.Background(), quota.Request{Credential: "main"})
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

	l, _ := newQuota(cfg, nil, nil, nil)
	if _, err := l.Wait(context.Background(), quota.Request{Credential: "main"}); err != nil {
		t.Errorf("without a Redis store the budget is the process's own: %v", err)
	}
}
