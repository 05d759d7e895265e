package ingest

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestKgoLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	at := func(lvl slog.Level) kgoLogger {
		buf.Reset()
		return kgoLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: lvl}))}
	}
	assert.Equal(t, kgo.LogLevelInfo, at(slog.LevelDebug).Level(), "franz-go's per-request debug lines never")
	assert.Equal(t, kgo.LogLevelWarn, at(slog.LevelInfo).Level())
	assert.Equal(t, kgo.LogLevelError, at(slog.LevelError).Level())

	l := at(slog.LevelDebug)
	l.Log(kgo.LogLevelInfo, "joined", "group", "g")
	assert.Contains(t, buf.String(), "level=DEBUG msg=joined group=g")
	l = at(slog.LevelInfo)
	l.Log(kgo.LogLevelWarn, "retrying", "err", "x")
	assert.Contains(t, buf.String(), "level=WARN msg=retrying err=x")
}
