package redisstore

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// SetLogger sends go-redis's own messages (a dial that failed, a broken
// pub/sub connection) to l as warnings, in the program's log format,
// instead of plain lines on stderr. go-redis has one logger per process,
// so this is process-wide.
func SetLogger(l *slog.Logger) { redis.SetLogger(slogPrinter{l}) }

type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(ctx context.Context, format string, v ...any) {
	p.l.WarnContext(ctx, fmt.Sprintf(format, v...), "source", "go-redis")
}
