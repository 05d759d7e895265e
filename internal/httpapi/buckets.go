package httpapi

import (
	"strconv"
	"strings"
	"time"
)

// Granularity is the width of a series bucket.
type Granularity string

// Granularities. A week starts on Monday (ISO); every bucket starts at local
// midnight (or the local hour) of the request's zone.
const (
	NoSeries Granularity = ""
	Hour     Granularity = "hour"
	Day      Granularity = "day"
	Week     Granularity = "week"
	Month    Granularity = "month"
)

// MaxBuckets is the most buckets a series may have.
const MaxBuckets = 10_000

func ParseGranularity(v string) (Granularity, error) {
	switch g := Granularity(v); g {
	case NoSeries, Hour, Day, Week, Month:
		return g, nil
	}
	return "", badParam("granularity", "want hour, day, week or month, got "+strconv.Quote(v))
}

func ParseZone(v string) (*time.Location, error) {
	if v == "" {
		return time.UTC, nil
	}
	// LoadLocation also reads paths relative to the zoneinfo root and accepts
	// "Local"; neither is a zone a client means.
	if v == "Local" || len(v) > 64 || strings.Contains(v, "..") {
		return nil, badParam("tz", "unknown time zone "+strconv.Quote(v))
	}
	loc, err := time.LoadLocation(v)
	if err != nil {
		return nil, badParam("tz", "unknown time zone "+strconv.Quote(v))
	}
	return loc, nil
}

// BucketStart returns the start of the bucket holding t, in loc.
func BucketStart(g Granularity, t time.Time, loc *time.Location) time.Time {
	t = t.In(loc)
	switch g {
	case Hour:
		// Floor the local clock to the hour by the offset in force at t, so
		// the repeated hour of a DST fall-back is two buckets, as in ClickHouse.
		_, off := t.Zone()
		local := t.Unix() + int64(off)
		return time.Unix(local-local%3600-int64(off), 0).In(loc)
	case Day:
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	case Week:
		d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
		back := (int(d.Weekday()) + 6) % 7 // days since Monday
		return time.Date(d.Year(), d.Month(), d.Day()-back, 0, 0, 0, 0, loc)
	case Month:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
	}
	return t
}

func NextBucket(g Granularity, b time.Time, loc *time.Location) time.Time {
	switch g {
	case Hour:
		return BucketStart(Hour, b.Add(time.Hour), loc)
	case Day:
		return time.Date(b.Year(), b.Month(), b.Day()+1, 0, 0, 0, 0, loc)
	case Week:
		return time.Date(b.Year(), b.Month(), b.Day()+7, 0, 0, 0, 0, loc)
	case Month:
		return time.Date(b.Year(), b.Month()+1, 1, 0, 0, 0, 0, loc)
	}
	return b
}

// BucketsOf lists every bucket from the one holding from to the one holding
// to minus 1 ms.
func BucketsOf(g Granularity, from, to time.Time, loc *time.Location) ([]time.Time, error) {
	last := BucketStart(g, to.Add(-time.Millisecond), loc)
	// Bound the count before building the list, so a century of hours is
	// refused without allocating it.
	if approx := to.Sub(from) / approxWidth(g); approx > MaxBuckets+2 {
		return nil, badParam("granularity", "the series would have more than 10000 buckets; narrow the range or widen the granularity")
	}
	var out []time.Time
	for b := BucketStart(g, from, loc); !b.After(last); b = NextBucket(g, b, loc) {
		out = append(out, b)
		if len(out) > MaxBuckets {
			return nil, badParam("granularity", "the series would have more than 10000 buckets; narrow the range or widen the granularity")
		}
	}
	return out, nil
}

func approxWidth(g Granularity) time.Duration {
	switch g {
	case Hour:
		return time.Hour
	case Day:
		return 23 * time.Hour
	case Week:
		return 7*24*time.Hour - time.Hour
	}
	return 28 * 24 * time.Hour
}

// BucketSQL is the SQL for the unix-seconds start of an event's bucket; the
// zone is bound as the single argument each "?" takes.
func BucketSQL(g Granularity, msColumn string) (string, int) {
	ts := "toDateTime(intDiv(" + msColumn + ", 1000))"
	switch g {
	case Hour:
		return "toUInt32(toUnixTimestamp(toStartOfHour(" + ts + ", ?)))", 1
	case Day:
		return "toUInt32(toUnixTimestamp(toStartOfDay(" + ts + ", ?)))", 1
	case Week:
		return "toUInt32(toUnixTimestamp(toDateTime(toMonday(" + ts + ", ?), ?)))", 2
	case Month:
		return "toUInt32(toUnixTimestamp(toDateTime(toStartOfMonth(" + ts + ", ?), ?)))", 2
	}
	return "toUInt32(0)", 0
}

// FormatBucket renders a bucket's start in its zone, offset included.
func FormatBucket(t time.Time, loc *time.Location) string {
	return t.In(loc).Format(time.RFC3339)
}

func badParam(param, msg string) error { return &BadParam{Param: param, Msg: msg} }
