package httpapi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Limits are the ClickHouse limits every API query runs under, whichever
// part of the API (stats and events, or replays and endpoints) runs it.
type Limits struct {
	// MaxExecutionTime bounds each query. Default 30 s.
	MaxExecutionTime time.Duration
	// MaxResultRows bounds the rows any query may return. Default 100,000.
	MaxResultRows int
}

// The Limits defaults.
const (
	DefaultMaxExecutionTime = 30 * time.Second
	DefaultMaxResultRows    = 100_000
)

// ApplyDefaults fills zero fields with their defaults.
func (l *Limits) ApplyDefaults() {
	if l.MaxExecutionTime == 0 {
		l.MaxExecutionTime = DefaultMaxExecutionTime
	}
	if l.MaxResultRows == 0 {
		l.MaxResultRows = DefaultMaxResultRows
	}
}

// Validate checks the limits after ApplyDefaults.
func (l Limits) Validate() error {
	if l.MaxExecutionTime < time.Second {
		return fmt.Errorf("max execution time %s: want at least 1s", l.MaxExecutionTime)
	}
	if l.MaxResultRows < 1 {
		return fmt.Errorf("max result rows %d: want at least 1", l.MaxResultRows)
	}
	return nil
}

// Context carries the limits to the queries run with it, with a caller's
// extra settings (clickhouse-go replaces a context's settings as a whole,
// so they are given here).
func (l Limits) Context(ctx context.Context, extra ...clickhouse.Settings) context.Context {
	settings := clickhouse.Settings{
		"max_execution_time": int(l.MaxExecutionTime / time.Second),
		"max_result_rows":    l.MaxResultRows,
	}
	for _, e := range extra {
		maps.Copy(settings, e)
	}
	return clickhouse.Context(ctx, clickhouse.WithSettings(settings))
}

type limitsKey struct{}

// Bind returns ctx carrying the limits: every query run with it carries
// them, and WithSettings adds to them. The host binds its Config's limits
// to every /v1 request's context, so each module's queries run under the
// same ones.
func (l Limits) Bind(ctx context.Context) context.Context {
	return l.Context(context.WithValue(ctx, limitsKey{}, l))
}

// LimitsOf returns the limits bound to ctx, or the defaults.
func LimitsOf(ctx context.Context) Limits {
	l, _ := ctx.Value(limitsKey{}).(Limits)
	l.ApplyDefaults()
	return l
}

// WithSettings returns ctx whose queries carry the bound limits and extra
// settings as well (clickhouse-go replaces a context's settings as a whole,
// so the limits are given again).
func WithSettings(ctx context.Context, extra clickhouse.Settings) context.Context {
	return LimitsOf(ctx).Context(ctx, extra)
}

// IsTimeout reports a query that ran past its time: ClickHouse's
// TIMEOUT_EXCEEDED (159), or the request's own deadline.
func IsTimeout(err error) bool { return errors.Is(err, context.DeadlineExceeded) || hasCode(err, 159) }

// IsTooManyRows reports ClickHouse's TOO_MANY_ROWS_OR_BYTES (396), which
// max_result_rows raises.
func IsTooManyRows(err error) bool { return hasCode(err, 396) }

func hasCode(err error, code int32) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && ex.Code == code
}
