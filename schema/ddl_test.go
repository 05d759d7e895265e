package schema_test

import (
	"context"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/schema"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

func TestMigrateIsIdempotent(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()

	v1, err := schema.Migrate(ctx, conn, db)
	require.NoError(t, err)
	v2, err := schema.Migrate(ctx, conn, db)
	require.NoError(t, err)
	assert.Equal(t, v1, v2)

	var applied uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM "+db+".schema_migrations").Scan(&applied))
	assert.Equal(t, uint64(len(schema.Migrations(db, schema.Version{}))), applied, "each migration recorded once")

	rows, err := conn.Query(ctx, "SELECT name FROM system.columns WHERE database = ? AND table = 'events'", db)
	require.NoError(t, err)
	var cols []string
	for rows.Next() {
		var c string
		require.NoError(t, rows.Scan(&c))
		cols = append(cols, c)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, schema.EventColumns, cols, "insert column order matches the table")
}

// TestMigrationIndexesStoredEvents applies the migrations before event_ids
// by hand, stores events and delivery attempts, then migrates: the events
// stored before and after are all found through event_ids and, those of
// emails, through message_ids; the attempts through delivery_ids; the
// rollup counts them all, both engagements tables hold the opens and
// clicks, and recipient_ids every recipient.
func TestMigrationIndexesStoredEvents(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()
	require.NoError(t, conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db))
	require.NoError(t, conn.Exec(ctx, "CREATE TABLE "+db+".schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version"))
	v, err := schema.ServerVersion(conn)
	require.NoError(t, err)
	for _, m := range schema.Migrations(db, v) {
		if m.Name == "event_ids" {
			break
		}
		for _, stmt := range m.Statements {
			require.NoError(t, conn.Exec(ctx, stmt))
		}
		require.NoError(t, conn.Exec(ctx, "INSERT INTO "+db+".schema_migrations SELECT ?, ?, now()", uint32(m.Version), m.Name))
	}
	events, err := sample.Events(50, sample.TestdataOptions(4))
	require.NoError(t, err)
	// Stored before the recipients column existed, as ingest stored them.
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".events ("+strings.Join(schema.EventColumns[:len(schema.EventColumns)-1], ", ")+")")
	require.NoError(t, err)
	for i, ev := range events[:30] {
		row := chtest.EventRow(ev, i, time.Now())
		require.NoError(t, batch.Append(row[:len(row)-1]...))
	}
	require.NoError(t, batch.Send())
	attempt := func(id string) {
		require.NoError(t, conn.Exec(ctx, "INSERT INTO "+db+".deliveries (endpoint_id, event_id, at) SELECT 'whep_1', ?, 1", id))
	}
	attempt(events[0].ID)
	_, err = schema.Migrate(ctx, conn, db)
	require.NoError(t, err)
	chtest.InsertEvents(t, conn, db, events[30:])
	attempt(events[49].ID)
	for _, ev := range []schema.Event{events[0], events[49]} {
		ds, err := schema.DeliveriesOf(ctx, conn, db, []string{ev.ID})
		require.NoError(t, err)
		assert.Len(t, ds[ev.ID], 1, "the attempt for %s is found", ev.ID)
	}
	emails := 0
	for _, ev := range events {
		if ev.Dims.MessageID == "" {
			continue
		}
		emails++
		m, err := schema.LookUpMessage(ctx, conn, db, ev.Dims.MessageID)
		require.NoError(t, err)
		stored, err := m.Events(ctx, conn, db)
		require.NoError(t, err)
		assert.True(t, slices.ContainsFunc(stored, func(s schema.StoredEvent) bool { return s.ID == ev.ID }), "%s is found by its messageId", ev.ID)
	}
	require.Greater(t, emails, 10)

	// Recipients, computed in SQL for the rows stored before migration 13,
	// are those ingest computes.
	for _, ev := range events {
		var got []string
		require.NoError(t, conn.QueryRow(ctx, "SELECT recipients FROM "+db+".events WHERE event_id = ?", ev.ID).Scan(&got))
		want := ev.Dims.Recipients
		if want == nil {
			want = []string{}
		}
		assert.Equal(t, want, got, "recipients of %s", ev.ID)
	}

	unchecked, err := schema.CheckRollup(ctx, conn, db, 0, math.MaxInt64)
	require.NoError(t, err)
	assert.Zero(t, unchecked)
	rolled, _ := rolledUp(t, conn, db)
	assert.Equal(t, stepCounts(events), rolled, "the rollup counts the events stored before and after")
	engaged := 0
	for _, ev := range events {
		if slices.Contains(schema.DistinctTypes, ev.Type) {
			engaged++
		}
	}
	require.NotZero(t, engaged)
	for _, table := range []string{"engagements", "engagements_by_sender"} {
		var n uint64
		require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM "+db+"."+table).Scan(&n))
		assert.EqualValues(t, engaged, n, "%s holds the opens and clicks stored before and after", table)
	}

	// Every recipient of every email stored before and after is found
	// where its event is stored.
	addressed := 0
	for _, ev := range events {
		for _, a := range ev.Dims.Recipients {
			addressed++
			at, args, err := schema.RecipientsAt(ctx, conn, db, ev.Service, []string{a}, ev.CreatedAt, ev.CreatedAt+1)
			require.NoError(t, err)
			var n uint64
			require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM "+db+".events WHERE event_id = ?"+at, append([]any{ev.ID}, args...)...).Scan(&n))
			assert.NotZero(t, n, "%s is found by its recipient %s", ev.ID, a)
		}
	}
	require.Greater(t, addressed, 10)

	for _, ev := range events {
		var n uint64
		require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM "+db+".event_ids WHERE id_hash = cityHash64(?) AND created_at = ? AND type = ?",
			ev.ID, ev.CreatedAt, ev.Type).Scan(&n))
		assert.NotZero(t, n, "%s is indexed", ev.ID)
	}
}

func TestValidateDatabase(t *testing.T) {
	for _, name := range []string{"hindsight", "_x", "a1_b2"} {
		assert.NoError(t, schema.ValidateDatabase(name), name)
	}
	for _, name := range []string{"", "1abc", "a-b", "a;DROP", "a b", "`x`"} {
		assert.Error(t, schema.ValidateDatabase(name), name)
	}
}

// TestConcurrentMigrations runs four migrations of one database at once, as
// four processes starting together do: all succeed, and a column a
// migration adds is there once.
func TestConcurrentMigrations(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, errs[i] = schema.Migrate(ctx, conn, db) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	var n uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = 'endpoints' AND name = 'retry_schedule'", db).Scan(&n))
	assert.EqualValues(t, 1, n)
}
