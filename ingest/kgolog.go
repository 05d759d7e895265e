package ingest

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kgoLogger passes franz-go's own log lines (group joins, assignments,
// connection errors) to the ingester's logger. franz-go's info lines go out
// at debug, and its debug lines (one per request) not at all: they would
// drown ingest's own.
type kgoLogger struct{ log *slog.Logger }

var _ kgo.Logger = kgoLogger{}

func (l kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case l.log.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelInfo
	case l.log.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	case l.log.Enabled(ctx, slog.LevelError):
		return kgo.LogLevelError
	}
	return kgo.LogLevelNone
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelError
	switch level {
	case kgo.LogLevelDebug, kgo.LogLevelInfo:
		lvl = slog.LevelDebug
	case kgo.LogLevelWarn:
		lvl = slog.LevelWarn
	}
	l.log.Log(context.Background(), lvl, msg, keyvals...)
}
