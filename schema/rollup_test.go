package schema_test

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/schema"
)

// stepCounts is how many of events fall in each quarter hour, counted here.
func stepCounts(events ...[]schema.Event) map[int64]uint64 {
	out := map[int64]uint64{}
	for _, evs := range events {
		for _, ev := range evs {
			out[ev.CreatedAt-ev.CreatedAt%schema.RollupStep]++
		}
	}
	return out
}

// rolledUp is the rollup's count of each quarter hour whose total is the
// one last checked, and the quarter hours holding rollup rows whose total
// is not.
func rolledUp(t *testing.T, conn driver.Conn, db string) (map[int64]uint64, map[int64]bool) {
	t.Helper()
	ctx := context.Background()
	checked := map[int64]bool{}
	rows, err := conn.Query(ctx, "SELECT created_at FROM (SELECT created_at, sum(events) AS rolled FROM "+db+".stats_rollup GROUP BY created_at) AS r "+
		"ANY INNER JOIN (SELECT created_at, argMax(events, version) AS checked FROM "+db+".rollup_checked GROUP BY created_at) AS c "+
		"USING created_at WHERE rolled = checked")
	require.NoError(t, err)
	for rows.Next() {
		var s int64
		require.NoError(t, rows.Scan(&s))
		checked[s] = true
	}
	require.NoError(t, rows.Err())
	rows.Close()
	counts, unchecked := map[int64]uint64{}, map[int64]bool{}
	rows, err = conn.Query(ctx, "SELECT created_at, sum(events) FROM "+db+".stats_rollup GROUP BY created_at")
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var s int64
		var n uint64
		require.NoError(t, rows.Scan(&s, &n))
		if checked[s] {
			counts[s] = n
		} else {
			unchecked[s] = true
		}
	}
	require.NoError(t, rows.Err())
	return counts, unchecked
}

// without is want but the quarter hours in gaps.
func without(want map[int64]uint64, gaps map[int64]bool) map[int64]uint64 {
	out := map[int64]uint64{}
	for s, n := range want {
		if !gaps[s] {
			out[s] = n
		}
	}
	return out
}

// TestRollupCountsEveryInsert: the view counts every event stored, per
// quarter hour, and counts read it only once CheckRollup found it equal to
// the events; a quarter hour the rollup counts wrongly (here by hand, as a
// copy merged away before ingest saw it would) fails the check and is read
// from the events, as is one whose total changed after its check; a
// rebuild starts over from the events, and one run while events are
// inserted counts each once where the rollup is read.
func TestRollupCountsEveryInsert(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()
	_, err := schema.Migrate(ctx, conn, db)
	require.NoError(t, err)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	first, err := sample.Events(3000, sample.Options{Seed: 3, Start: start, Span: 48 * time.Hour, TestMode: 0.1})
	require.NoError(t, err)
	chtest.InsertEvents(t, conn, db, first)
	got, unchecked := rolledUp(t, conn, db)
	assert.Empty(t, got, "nothing is read from the rollup before it is checked")
	assert.Equal(t, len(stepCounts(first)), len(unchecked))
	n, err := schema.CheckRollup(ctx, conn, db, 0, math.MaxInt64)
	require.NoError(t, err)
	assert.Zero(t, n)
	got, unchecked = rolledUp(t, conn, db)
	assert.Empty(t, unchecked)
	assert.Equal(t, stepCounts(first), got, "the view counted every event")

	// A quarter hour counted twice, and one stored into after its check.
	step := first[100].CreatedAt - first[100].CreatedAt%schema.RollupStep
	require.NoError(t, conn.Exec(ctx, "INSERT INTO "+db+".stats_rollup (service, type, created_at, livemode, events) SELECT ?, ?, ?, 1, 1",
		first[100].Service, first[100].Type, step))
	late := first[2000]
	late.ID = "evt_late"
	chtest.InsertEvents(t, conn, db, []schema.Event{late})
	lateStep := late.CreatedAt - late.CreatedAt%schema.RollupStep
	_, unchecked = rolledUp(t, conn, db)
	assert.Equal(t, map[int64]bool{step: true, lateStep: true}, unchecked, "changed totals are read from the events")
	n, err = schema.CheckRollup(ctx, conn, db, start.UnixMilli(), start.Add(48*time.Hour).UnixMilli())
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the quarter hour counted twice fails its check")
	got, unchecked = rolledUp(t, conn, db)
	assert.Equal(t, map[int64]bool{step: true}, unchecked)
	assert.Equal(t, without(stepCounts(first, []schema.Event{late}), unchecked), got)

	n, err = schema.RebuildRollups(ctx, conn, db, "")
	require.NoError(t, err)
	assert.Zero(t, n)
	got, unchecked = rolledUp(t, conn, db)
	assert.Empty(t, unchecked, "a rebuild starts over")
	assert.Equal(t, stepCounts(first, []schema.Event{late}), got)

	// Rebuilt while another process stores events in the same hours.
	more, err := sample.Events(6000, sample.Options{Seed: 4, Start: start, Span: 48 * time.Hour})
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; i < len(more); i += 200 {
			chtest.InsertEvents(t, conn, db, more[i:min(i+200, len(more))])
		}
	})
	n, err = schema.RebuildRollups(ctx, conn, db, "")
	require.NoError(t, err)
	wg.Wait()
	got, unchecked = rolledUp(t, conn, db)
	t.Logf("%d of %d quarter hours unchecked after a rebuild during inserts", len(unchecked), len(stepCounts(first, more)))
	assert.Equal(t, without(stepCounts(first, []schema.Event{late}, more), unchecked), got, "each event counted once where the rollup is read")
}
