package query

import (
	"strconv"
	"strings"
	"time"
)

// Livemode selects live events, test events or both.
type Livemode string

// Livemode values, as the API spells them.
const (
	LiveOnly Livemode = "true"
	TestOnly Livemode = "false"
	LiveAll  Livemode = "all"
)

// sql returns the fixed condition the value selects.
func (l Livemode) sql() string {
	switch l {
	case LiveOnly:
		return " AND livemode = 1"
	case TestOnly:
		return " AND livemode = 0"
	}
	return ""
}

func parseLivemode(v string) (Livemode, error) {
	switch v {
	case "", "true":
		return LiveOnly, nil
	case "false":
		return TestOnly, nil
	case "all":
		return LiveAll, nil
	}
	return "", &badParam{"livemode", "want true, false or all, got " + strconv.Quote(v)}
}

// parseTime reads an RFC3339 time or integer milliseconds since the epoch.
func parseTime(param, v string) (time.Time, error) {
	if isInteger(v) {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 || ms > maxMillis {
			return time.Time{}, &badParam{param, "integer milliseconds out of range: " + strconv.Quote(v)}
		}
		return time.UnixMilli(ms).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, &badParam{param, "want RFC3339 (2026-01-02T15:04:05Z) or integer milliseconds, got " + strconv.Quote(v)}
	}
	if t.Before(time.Unix(0, 0)) || t.UnixMilli() > maxMillis {
		return time.Time{}, &badParam{param, "time out of range: " + strconv.Quote(v)}
	}
	return t.UTC(), nil
}

// maxMillis is 9999-12-31T23:59:59.999Z: later times have no RFC3339 form.
const maxMillis = 253402300799999

func isInteger(v string) bool {
	v = strings.TrimPrefix(v, "-")
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

// timeRange is a half-open range [From, To).
type timeRange struct {
	From, To time.Time
}

// parseRange reads from and to, by default the last 7 days up to now.
func parseRange(from, to string, now time.Time) (timeRange, error) {
	r := timeRange{To: now.UTC().Truncate(time.Millisecond)}
	var err error
	if to != "" {
		if r.To, err = parseTime("to", to); err != nil {
			return r, err
		}
	}
	r.From = r.To.Add(-7 * 24 * time.Hour)
	if from != "" {
		if r.From, err = parseTime("from", from); err != nil {
			return r, err
		}
	}
	if !r.From.Before(r.To) {
		return r, &badParam{"from", "must be before to"}
	}
	return r, nil
}

func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }
