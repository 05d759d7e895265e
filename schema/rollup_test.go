package schema_test

import (
	"context"
	"math"
	"slices"
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

// rolledUp is the rollup's count of each quarter hour whose total (in
// rollup_totals) is the one last checked, and the quarter hours holding
// rollup rows whose total is not.
func rolledUp(t *testing.T, conn driver.Conn, db string) (map[int64]uint64, map[int64]bool) {
	t.Helper()
	ctx := context.Background()
	checked := map[int64]bool{}
	rows, err := conn.Query(ctx, "SELECT created_at FROM (SELECT created_at, sum(events) AS rolled FROM "+db+".rollup_totals GROUP BY created_at) AS r "+
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
	for s, n := range sums(t, conn, db+".stats_rollup") {
		if checked[s] {
			counts[s] = n
		} else {
			unchecked[s] = true
		}
	}
	return counts, unchecked
}

// sums is each quarter hour's sum of events in table.
func sums(t *testing.T, conn driver.Conn, table string) map[int64]uint64 {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT created_at, sum(events) FROM "+table+" GROUP BY created_at")
	require.NoError(t, err)
	defer rows.Close()
	out := map[int64]uint64{}
	for rows.Next() {
		var s int64
		var n uint64
		require.NoError(t, rows.Scan(&s, &n))
		out[s] = n
	}
	require.NoError(t, rows.Err())
	return out
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
	conn, db := chtest.MigratedDatabase(t)
	ctx := context.Background()
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	first, err := sample.Events(3000, sample.Options{Seed: 3, Start: start, Span: 48 * time.Hour, TestMode: 0.1})
	require.NoError(t, err)
	chtest.InsertEvents(t, conn, db, first)
	assert.Equal(t, stepCounts(first), sums(t, conn, db+".rollup_totals"), "the totals' view counted every event")
	got, unchecked := rolledUp(t, conn, db)
	assert.Empty(t, got, "nothing is read from the rollup before it is checked")
	assert.Equal(t, len(stepCounts(first)), len(unchecked))
	n, err := schema.CheckRollup(ctx, conn, db, 0, math.MaxInt64)
	require.NoError(t, err)
	assert.Zero(t, n)
	got, unchecked = rolledUp(t, conn, db)
	assert.Empty(t, unchecked)
	assert.Equal(t, stepCounts(first), got, "the view counted every event")

	// A quarter hour counted twice (both views count the copy), and one
	// stored into after its check.
	step := first[100].CreatedAt - first[100].CreatedAt%schema.RollupStep
	require.NoError(t, conn.Exec(ctx, "INSERT INTO "+db+".stats_rollup (service, type, created_at, livemode, events) SELECT ?, ?, ?, 1, 1",
		first[100].Service, first[100].Type, step))
	require.NoError(t, conn.Exec(ctx, "INSERT INTO "+db+".rollup_totals (created_at, events) SELECT ?, 1", step))
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

	// A total that is not the rollup's (a view that failed) keeps its
	// quarter hour read from the events until a rebuild.
	otherStep := first[1500].CreatedAt - first[1500].CreatedAt%schema.RollupStep
	require.NotEqual(t, step, otherStep)
	require.NoError(t, conn.Exec(ctx, "INSERT INTO "+db+".rollup_totals (created_at, events) SELECT ?, 1", otherStep))
	n, err = schema.CheckRollup(ctx, conn, db, start.UnixMilli(), start.Add(48*time.Hour).UnixMilli())
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	_, unchecked = rolledUp(t, conn, db)
	assert.Equal(t, map[int64]bool{step: true, otherStep: true}, unchecked, "a total off the rollup's is never counted from it")

	n, err = schema.RebuildRollups(ctx, conn, db, "")
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, sums(t, conn, db+".stats_rollup"), sums(t, conn, db+".rollup_totals"), "a rebuild fills the totals too")
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

// TestPlanRollupReadsTheTotals: a count reads the rollup in the quarter
// hours whose total in rollup_totals is the one checked, and the events in
// the others: one a copy was stored into, one whose total is off the
// rollup's.
func TestPlanRollupReadsTheTotals(t *testing.T) {
	conn, db := chtest.MigratedDatabase(t)
	ctx := context.Background()
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	evs, err := sample.Events(2000, sample.Options{Seed: 5, Start: start, Span: 6 * time.Hour})
	require.NoError(t, err)
	chtest.InsertEvents(t, conn, db, evs)
	_, err = schema.CheckRollup(ctx, conn, db, 0, math.MaxInt64)
	require.NoError(t, err)
	from, to := start.UnixMilli(), start.Add(6*time.Hour).UnixMilli()
	plan, err := schema.PlanRollup(ctx, conn, db, from, to)
	require.NoError(t, err)
	assert.Equal(t, [2]int64{from, to}, [2]int64{plan.From, plan.To})
	assert.Empty(t, plan.Raw)

	// Quarter hours inside the range, so each is a run of Raw.
	i := slices.IndexFunc(evs, func(ev schema.Event) bool {
		return ev.CreatedAt >= start.Add(time.Hour).UnixMilli() && ev.CreatedAt < start.Add(2*time.Hour).UnixMilli()
	})
	require.GreaterOrEqual(t, i, 0)
	copied := evs[i].CreatedAt - evs[i].CreatedAt%schema.RollupStep
	chtest.InsertEvents(t, conn, db, evs[i:i+1])
	off := start.Add(3 * time.Hour).UnixMilli()
	require.NoError(t, conn.Exec(ctx, "INSERT INTO "+db+".rollup_totals (created_at, events) SELECT ?, 1", off))
	require.NotEqual(t, copied, off)
	plan, err = schema.PlanRollup(ctx, conn, db, from, to)
	require.NoError(t, err)
	var raw []int64
	for _, run := range plan.Raw {
		for s := run[0]; s < run[1]; s += schema.RollupStep {
			raw = append(raw, s)
		}
	}
	assert.Equal(t, [2]int64{from, to}, [2]int64{plan.From, plan.To})
	assert.Equal(t, []int64{copied, off}, raw)
}
