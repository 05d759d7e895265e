package ingest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFindDuplicatesExact: the look-up for copies returns exactly the keys
// stored more than once at the createdAt values it is asked about: not two
// events sharing a millisecond, not one eventId stored under two types (two
// keys, which ClickHouse does not merge), and also the copies of an event
// of another batch stored at one of those milliseconds.
func TestFindDuplicatesExact(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.NoError(t, f.conn.Exec(ctx, "SYSTEM STOP MERGES `"+f.db+"`.events"))
	t.Cleanup(func() { f.conn.Exec(context.Background(), "SYSTEM START MERGES `"+f.db+"`.events") })
	at := time.Date(2026, 10, 10, 0, 0, 0, 0, time.UTC)
	opened := func(id string, createdAt time.Time) []byte {
		return fmt.Appendf(nil, `{"eventId":%q,"type":"send.email.opened","service":"send","data":{"messageId":"m-%s","to":"a@b.c"},"createdAt":%d}`,
			id, id, createdAt.UnixMilli())
	}
	f.storeElsewhere(delivered("twice", at), delivered("b", at.Add(time.Second)), delivered("c", at.Add(time.Second)),
		delivered("two-types", at.Add(2*time.Second)), opened("two-types", at.Add(2*time.Second)),
		delivered("other-batch", at.Add(time.Second)), delivered("later", at.Add(time.Hour)))
	f.storeElsewhere(delivered("twice", at), delivered("other-batch", at.Add(time.Second)), delivered("later", at.Add(time.Hour)))

	in := &Ingester{cfg: Config{Database: f.db}, shards: []shard{{conn: f.conn, table: "events"}}}
	keys, err := in.findDuplicates(ctx, []string{"twice", "b", "c", "two-types"},
		[]int64{at.UnixMilli(), at.Add(time.Second).UnixMilli(), at.Add(time.Second).UnixMilli(), at.Add(2 * time.Second).UnixMilli()},
		[]string{"send"})
	require.NoError(t, err)
	assert.ElementsMatch(t, []dupKey{
		{service: "send", typ: "send.email.delivered", id: "twice", createdAt: at.UnixMilli()},
		{service: "send", typ: "send.email.delivered", id: "other-batch", createdAt: at.Add(time.Second).UnixMilli()},
	}, keys)
}

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
	slices.Sort(live)
	assert.Equal(t, []span{{now - 3_600_000, now - 3_600_000}, {now, now + 999}}, spansOf(live))

	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 100, 5000} {
		at := make([]int64, n)
		for i := range at {
			at[i] = now + rng.Int64N(30*24*3600*1000) // a month's backfill: gaps everywhere
		}
		slices.Sort(at)
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
