package schema_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/schema"
)

// TestRetentionDropsWholeMonths runs retention on 18.16, which has no TTL:
// the months wholly older than now-keep go, with what event_ids and
// event_dups held of them; the month the cutoff falls in stays whole.
func TestRetentionDropsWholeMonths(t *testing.T) {
	conn, db := chtest.MigratedDatabase(t)
	ctx := context.Background()
	v, err := schema.ServerVersion(conn)
	require.NoError(t, err)
	if v.HasTTL() {
		t.Skipf("ClickHouse %s deletes by TTL; the compatibility test covers it", v)
	}
	times := []time.Time{
		time.Date(2026, 7, 15, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 8, 31, 23, 59, 59, 999e6, time.UTC),
		time.Date(2026, 9, 10, 0, 0, 0, 0, time.UTC), // the cutoff's month: kept
		time.Date(2026, 10, 2, 0, 0, 0, 0, time.UTC),
	}
	var p schema.Parser
	var events []schema.Event
	for i, at := range times {
		require.NoError(t, conn.Exec(ctx, "INSERT INTO `"+db+"`.deliveries (endpoint_id, event_id, at) SELECT 'whep_1', ?, ?",
			fmt.Sprintf("evt_%d", i), at.UnixMilli()))
		ev, err := p.Parse(fmt.Appendf(nil, `{"eventId":"evt_%d","type":"platform.test","service":"platform","createdAt":%d,"data":{"message":"m","endpoint_id":"e"}}`,
			i, at.UnixMilli()))
		require.NoError(t, err)
		events = append(events, ev)
		require.NoError(t, conn.Exec(ctx, "INSERT INTO `"+db+"`.event_dups (service, type, created_at, event_id, version) SELECT 'platform', 'platform.test', ?, ?, 1",
			at.UnixMilli(), ev.ID))
	}
	chtest.InsertEvents(t, conn, db, events)
	count := func(table string) int {
		var n uint64
		require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM `"+db+"`."+table).Scan(&n))
		return int(n)
	}

	now := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	keep := 30 * 24 * time.Hour // cutoff 2026-09-05
	dropped, err := schema.ApplyRetention(ctx, conn, db, schema.DeliveriesRetained, keep, now)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"202607", "202608"}, dropped)
	assert.Equal(t, 2, count("deliveries"))

	dropped, err = schema.ApplyRetention(ctx, conn, db, schema.EventsRetained, 0, now)
	require.NoError(t, err)
	assert.Empty(t, dropped, "a retention of 0 keeps everything")
	assert.Equal(t, 4, count("events"))
	dropped, err = schema.ApplyRetention(ctx, conn, db, schema.EventsRetained, keep, now)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"202607", "202608"}, dropped)
	assert.Equal(t, 2, count("events"))
	// 18.16 runs ALTER DELETE as a background mutation.
	require.Eventually(t, func() bool { return count("event_ids") == 2 && count("event_dups") == 2 }, 30*time.Second, 100*time.Millisecond,
		"event_ids %d, event_dups %d", count("event_ids"), count("event_dups"))
	var left uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM `"+db+"`.event_ids WHERE created_at < ?", times[2].UnixMilli()).Scan(&left))
	assert.Zero(t, left)

	dropped, err = schema.ApplyRetention(ctx, conn, db, schema.EventsRetained, keep, now)
	require.NoError(t, err)
	assert.Empty(t, dropped, "nothing more to drop")
}
