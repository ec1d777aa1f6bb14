package main

import (
	"context"
	"log/slog"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/quota"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/redisstore"
)

// newQuota builds the apps' budgets: in Redis when the store is there, so
// that every replica on that Redis spends from the same budget (on the
// store's connection, heartbeats until stop), else in this process.
func newQuota(cfg *config.Config, store tokens.Store, m *metrics.Metrics, log *slog.Logger) (_ *quota.Limiter, stop func()) {
	rs, ok := store.(*redisstore.Store)
	if !ok {
		return quota.New(cfg, quota.Options{Metrics: m}), func() {}
	}
	backend := quota.NewRedis(rs.Client(), quota.RedisOptions{Prefix: cfg.Store.Redis.KeyPrefix, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	go backend.Run(ctx)
	return quota.New(cfg, quota.Options{Backend: backend, Metrics: m}), cancel
}
