package httpapi

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"0":                         time.Unix(0, 0).UTC(),
		"1790812800000":             time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC),
		"2026-10-01T02:00:00+02:00": time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC),
		"2026-10-01T00:00:00.25Z":   time.Date(2026, 10, 1, 0, 0, 0, 250e6, time.UTC),
	} {
		got, err := ParseTime("from", in)
		assert.NoError(t, err, in)
		assert.True(t, want.Equal(got), "%s: %s", in, got)
	}
	for _, in := range []string{"", "-1", "99999999999999999999", "253402300800000", "2026-10-01", "yesterday", "1e12", "0x10", "1969-12-31T23:59:59Z"} {
		_, err := ParseTime("from", in)
		var bp *BadParam
		assert.True(t, errors.As(err, &bp) && bp.Param == "from", "%q: %v", in, err)
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"0", "1790812800000", "2026-10-01T00:00:00Z", "-", "9999-12-31T23:59:59.999Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseTime("to", in)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "to: ") {
				t.Fatalf("error does not name the parameter: %v", err)
			}
			return
		}
		if got.Before(time.Unix(0, 0)) || got.UnixMilli() > MaxMillis || got.Location() != time.UTC {
			t.Fatalf("%q gave %s", in, got)
		}
	})
}

func FuzzBuckets(f *testing.F) {
	f.Add("day", "America/New_York", int64(1790812800000), int64(3600000*24*40))
	f.Add("hour", "Asia/Kolkata", int64(0), int64(3600000*5))
	f.Fuzz(func(t *testing.T, g, tz string, fromMS, spanMS int64) {
		gran, err := ParseGranularity(g)
		if err != nil || gran == NoSeries {
			return
		}
		loc, err := ParseZone(tz)
		if err != nil || fromMS < 0 || spanMS <= 0 || fromMS > MaxMillis/2 || spanMS > MaxMillis/2 {
			return
		}
		from, to := time.UnixMilli(fromMS), time.UnixMilli(fromMS+spanMS)
		bs, err := BucketsOf(gran, from, to, loc)
		if err != nil {
			return // too many buckets: a 400
		}
		if len(bs) == 0 || len(bs) > MaxBuckets {
			t.Fatalf("%d buckets", len(bs))
		}
		if bs[0].After(from) || !bs[len(bs)-1].Before(to) {
			t.Fatalf("buckets %s..%s do not cover [%s, %s)", bs[0], bs[len(bs)-1], from, to)
		}
		for i := 1; i < len(bs); i++ {
			if !bs[i].After(bs[i-1]) {
				t.Fatalf("buckets not increasing at %d: %s, %s", i, bs[i-1], bs[i])
			}
		}
	})
}
