package main

import (
	"context"
	"os"
	"runtime/debug"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/logbuf"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/memlimit"
)

// defaultGCPercent is serve's GOGC when the environment sets none. The
// proxy's heap is mostly garbage of requests already answered: collecting
// at five times the live heap rather than twice saves 13-18 % of the CPU
// under load for a few MiB (BENCHMARKS.md).
const defaultGCPercent = 400

// defaultMemoryLimit is serve's soft memory limit (debug.SetMemoryLimit)
// when the environment sets no GOMEMLIMIT. Under steady load the heap
// stays far below it (about 40 MiB of RSS at 64 concurrent requests), so
// GOGC alone paces the collector and the CPU it saves is kept. In a
// burst, the proxy holds up to proxy.MaxInflight client connections,
// about 150 MiB of live heap and stacks at 4,096; at GOGC 400 the garbage
// of the requests answered meanwhile then grows unchecked (peak RSS up to
// 265 MiB, median 210, for 10,000 requests at once). At the limit the
// collector runs as often as needed to stay under it: peak RSS at most
// 195 MiB, median 187, with the same p99. The limit must stay above that
// live set, or the collector runs without pause (160 MiB: a third more
// CPU in the burst and a worse p99). In a container with less memory the
// limit follows the container's (tuneGC), as the listener's bound does.
const defaultMemoryLimit = 192 << 20

// tuneGC sets serve's collector defaults for what the environment
// (getenv) leaves to the runtime: GOGC and GOMEMLIMIT, when set (even to
// "off"), are the operator's and are kept. In a container whose memory
// limit (container, internal/memlimit) is below defaultMemoryLimit's room,
// the soft limit is 90 % of it instead: the collector then works harder
// before the container is killed for its memory, and proxy.ClientBound
// holds fewer connections there too.
func tuneGC(getenv func(string) string, container func() (int64, bool)) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(softMemoryLimit(container()))
	}
}

// softMemoryLimit is defaultMemoryLimit, or 90 % of a container limit that
// leaves less.
func softMemoryLimit(container int64, ok bool) int64 {
	if ok {
		return min(defaultMemoryLimit, container/10*9)
	}
	return defaultMemoryLimit
}

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
	tuneGC(os.Getenv, memlimit.Container)
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
