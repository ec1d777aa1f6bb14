package main

import (
	"context"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/quota"
)

// newQuota builds the apps' budgets: in this process with the file store,
// in Redis with store.backend redis, so that every replica on that Redis
// spends from the same budget. The heartbeats run until stop is called.
func newQuota(cfg *config.Config, m *metrics.Metrics, log *slog.Logger) (_ *quota.Limiter, stop func() error) {
	if cfg.Store.Backend != "redis" {
		return quota.New(cfg, quota.Options{Metrics: m}), func() error { return nil }
	}
	r := cfg.Store.Redis
	client := redis.NewClient(&redis.Options{Addr: r.Address, Username: r.Username, Password: r.Password.Value(), DB: r.DB})
	backend := quota.NewRedis(client, quota.RedisOptions{Prefix: r.KeyPrefix, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	go backend.Run(ctx)
	return quota.New(cfg, quota.Options{Backend: backend, Metrics: m}), func() error {
		cancel()
		return client.Close()
	}
}
