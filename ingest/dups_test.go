package ingest

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSpansOf: a live batch with one event produced an hour late reads two
// short spans, not the hour; spans are ordered, disjoint, at most maxSpans,
// and hold every value.
func TestSpansOf(t *testing.T) {
	const now = 1_790_000_000_000
	var live []int64
	for i := range 50_000 {
		live = append(live, now+int64(i%1000))
	}
	live = append(live, now-3_600_000)
	assert.Equal(t, []span{{now - 3_600_000, now - 3_600_000}, {now, now + 999}}, spansOf(live))

	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 100, 5000} {
		at := make([]int64, n)
		for i := range at {
			at[i] = now + rng.Int64N(30*24*3600*1000) // a month's backfill: gaps everywhere
		}
		spans := spansOf(at)
		require.LessOrEqual(t, len(spans), maxSpans)
		for i, s := range spans {
			assert.LessOrEqual(t, s.lo, s.hi)
			if i > 0 {
				assert.Greater(t, s.lo-spans[i-1].hi, int64(spanGap), "spans are split at gaps wider than spanGap")
			}
		}
		for _, v := range at {
			in := 0
			for _, s := range spans {
				if v >= s.lo && v <= s.hi {
					in++
				}
			}
			require.Equal(t, 1, in, "%d is in one span", v)
		}
	}
}
