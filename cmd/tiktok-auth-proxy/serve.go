package main

import (
	"context"
	"os"
	"runtime/debug"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/logbuf"
)

// defaultGCPercent is serve's GOGC when the environment sets none. The
// proxy's heap is mostly garbage of requests already answered: collecting
// at five times the live heap rather than twice saves 13-18 % of the CPU
// under load for a few MiB (BENCHMARKS.md).
const defaultGCPercent = 400

func runServe(ctx context.Context, args []string, s stdio) error {
	fs := newFlags("serve", "[--config FILE]", s.out)
	path := fs.String("config", defaultConfig, "config file")
	if err := parseFlags(fs, args); err != nil {
		return helpOr(fs, err)
	}
	cfg, err := loadConfig(*path, s)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	// The access log's lines are batched (logbuf); every other line goes
	// out at once, after the access lines before it.
	lines := logbuf.New(s.err, logbuf.DefaultInterval)
	defer lines.Close()
	a, err := newApp(ctx, cfg, newLogger(cfg.Log, lines.Direct()), newLogger(cfg.Log, lines))
	if err != nil {
		return err
	}
	go freeStartGarbage(ctx, a.manager.Listed())
	return a.Run(ctx)
}

// freeStartGarbage collects start-up's garbage and returns it to the OS
// once every credential's first advertiser listing is done. Reading the
// config and the store, then each listing and the store write it makes,
// leave a few MiB of garbage with 50 credentials; GOGC 400's first
// collection waits for a 16 MiB heap, and until a request load brings
// it, that garbage is resident memory of an idle proxy (BENCHMARKS.md).
func freeStartGarbage(ctx context.Context, listed <-chan struct{}) {
	select {
	case <-listed:
		debug.FreeOSMemory()
	case <-ctx.Done():
	}
}
