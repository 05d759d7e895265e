// Package chtest gives integration tests a real ClickHouse server: one child
// server per test binary (started on first use), a fresh database per test.
//
// Without a ClickHouse binary on PATH the tests that need one skip, unless
// HINDSIGHT_REQUIRE_CLICKHOUSE=1 (set by `make test` and CI), where they fail.
package chtest

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/dodev/hindsight/internal/chlocal"
	"github.com/dodev/hindsight/schema"
)

var (
	once    sync.Once
	server  *chlocal.Server
	dir     string
	initErr error
	dbSeq   atomic.Int64
)

// Main runs a package's tests and stops the shared server afterwards. Call it
// from TestMain: os.Exit(chtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if server != nil {
		server.Stop()
		os.RemoveAll(dir)
	}
	return code
}

// Addr returns the shared server's native address, starting it on first use.
func Addr(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	once.Do(func() {
		if _, err := chlocal.FindBinary(); err != nil {
			initErr = err
			return
		}
		dir, initErr = os.MkdirTemp("", "hindsight-chtest-")
		if initErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		server, initErr = chlocal.Start(ctx, dir, nil)
	})
	if initErr != nil {
		if os.Getenv("HINDSIGHT_REQUIRE_CLICKHOUSE") == "" {
			t.Skipf("no ClickHouse server for integration tests: %v", initErr)
		}
		t.Fatalf("ClickHouse required (HINDSIGHT_REQUIRE_CLICKHOUSE is set): %v", initErr)
	}
	return server.Addr
}

// HTTPAddr returns the shared server's HTTP address, starting it on first use.
func HTTPAddr(t testing.TB) string {
	t.Helper()
	Addr(t)
	return server.HTTPAddr
}

// Dir returns the shared server's directory: its data, metadata and logs.
func Dir(t testing.TB) string {
	t.Helper()
	Addr(t)
	return server.Dir
}

// Open connects to the shared server.
func Open(t testing.TB) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{Addr(t)},
		DialTimeout: 5 * time.Second,
		ReadTimeout: 60 * time.Second,
	})
	if err != nil {
		t.Fatalf("open clickhouse: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Database returns a connection and the name of a database no other test
// uses. It is dropped when the test ends.
func Database(t testing.TB) (driver.Conn, string) {
	t.Helper()
	conn := Open(t)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name)
	})
	return conn, name
}

// MigratedDatabase is Database with the schema migrated into it.
func MigratedDatabase(t testing.TB) (driver.Conn, string) {
	t.Helper()
	conn, db := Database(t)
	if _, err := schema.Migrate(context.Background(), conn, db); err != nil {
		t.Fatalf("migrate %s: %v", db, err)
	}
	return conn, db
}

// InsertColumns is the INSERT of every events column, in EventColumns order.
func InsertColumns(db string) string {
	return "INSERT INTO `" + db + "`.events (" + strings.Join(schema.EventColumns, ", ") + ")"
}

// EventRow is the row ingest stores for ev, read from Kafka offset offset
// of topic events (see schema.EventRow).
func EventRow(ev schema.Event, offset int, now time.Time) []any {
	return schema.EventRow(&ev, "events", 0, int64(offset), now)
}

// InsertEvents stores events in db's events table the way ingest does,
// one row each, with Kafka offsets in order.
func InsertEvents(t testing.TB, conn driver.Conn, db string, events []schema.Event) {
	t.Helper()
	batch, err := conn.PrepareBatch(context.Background(), InsertColumns(db))
	if err != nil {
		t.Fatalf("prepare insert: %v", err)
	}
	now := time.Now()
	for i, ev := range events {
		if err := batch.Append(EventRow(ev, i, now)...); err != nil {
			t.Fatalf("append event: %v", err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("insert %d events: %v", len(events), err)
	}
}

// Execer runs a statement: a connection, or the compatibility test's chDB.
type Execer interface {
	Exec(ctx context.Context, query string, args ...any) error
}

// StoreCopies inserts, for each condition (SQL on the events table), one more
// copy of the stored events matching it, stops the table's merges for the
// rest of the test so the copies stay, and records the duplicated keys in
// event_dups as ingest does after an insert.
func StoreCopies(t testing.TB, conn Execer, db string, conds ...string) {
	t.Helper()
	ctx := context.Background()
	exec := func(q string) {
		t.Helper()
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("store copies: %s: %v", q, err)
		}
	}
	exec("SYSTEM STOP MERGES `" + db + "`.events")
	t.Cleanup(func() { conn.Exec(context.Background(), "SYSTEM START MERGES `"+db+"`.events") })
	for _, cond := range conds {
		exec("INSERT INTO `" + db + "`.events SELECT * FROM `" + db + "`.events WHERE " + cond + " LIMIT 1 BY event_id")
	}
	exec("INSERT INTO `" + db + "`.event_dups (service, type, created_at, event_id, found_at) SELECT service, type, created_at, event_id, now() FROM `" + db +
		"`.events GROUP BY service, type, created_at, event_id HAVING count() > 1")
}

// StoreMergedCopies inserts one more copy of the stored events matching cond
// (SQL on the events table) and has ClickHouse merge the copies away at
// once, before anything records them in event_dups: what a process stopped
// between its insert and its look-up for copies leaves behind. The views
// fed from events (the stats rollup) still saw every copy.
func StoreMergedCopies(t testing.TB, conn Execer, db string, cond string) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		"INSERT INTO `" + db + "`.events SELECT * FROM `" + db + "`.events WHERE " + cond + " LIMIT 1 BY event_id",
		"OPTIMIZE TABLE `" + db + "`.events FINAL",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("store merged copies: %s: %v", q, err)
		}
	}
}

// Fill10M migrates db on the shared server and stores ten million events
// over 30 days of October 2026 (see FillN).
func Fill10M(t testing.TB, db string) { FillN(t, db, 10_000_000) }

// FillN migrates db on the shared server and stores n events from
// 2026-10-01 on with ClickHouse's numbers(), for benchmarks: a send-heavy
// mix like the platform's, about one opened and clicked message in four, 2% test mode,
// one event every 259 ms, an area code (npa) on telco's events only, as
// the platform's events carry it. An email comes from one of three sender
// domains; a send event's recipient is one of 70,000 addresses (about 143
// events each in 10M), in its recipient domain. message_hash is cityHash64
// here, where ingest writes xxhash64: benchmarks measure cost, which is the
// same for any 64-bit hash.
func FillN(t testing.TB, db string, n int) {
	t.Helper()
	fill(t, db, n, time.Duration(n)*259*time.Millisecond)
}

// FillMonth is FillN with the n events spread evenly over the 30 days from
// 2026-10-01.
func FillMonth(t testing.TB, db string, n int) {
	t.Helper()
	fill(t, db, n, 30*24*time.Hour)
}

// fill stores n events as FillN describes, spread evenly over span. Its
// connection waits for answers as long as a fill of 100M events and the
// merges after it take (Open's gives up after a minute).
func fill(t testing.TB, db string, n int, span time.Duration) {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{Addr(t)}, DialTimeout: 5 * time.Second, ReadTimeout: time.Hour})
	if err != nil {
		t.Fatalf("open clickhouse: %v", err)
	}
	defer conn.Close()
	if err := Fill(context.Background(), conn, db, n, span); err != nil {
		t.Fatal(err)
	}
}

// Fill migrates db and stores n events in it as FillN describes, spread
// evenly over span from 2026-10-01, merged and the rollup checked, for
// benchmarks outside tests (cmd/bench). conn must wait for answers as long
// as the fill and its merges take.
func Fill(ctx context.Context, conn driver.Conn, db string, n int, span time.Duration) error {
	if _, err := schema.Migrate(ctx, conn, db); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	q := fmt.Sprintf(`INSERT INTO %s.events (event_id, type, service, created_at, livemode, known, message_id, message_hash,
		recipient_domain, sender_domain, bounce_type, has_carrier, has_inventory, npa, voice, format,
		text_length, duration_sec, raw, kafka_topic, kafka_partition, kafka_offset, ingested_at, recipients)
	SELECT concat('evt_', toString(number)) AS id, t, splitByChar('.', t)[1], %d + intDiv(number * %d, %d), number %% 50 != 0, 1,
		concat('msg_', toString(intDiv(number, 6))), cityHash64(concat('msg_', toString(intDiv(number, 6)))),
		arrayElement(['gmail.com', 'yahoo.com', 'outlook.com', 'icloud.com', 'acme.io', 'example.org', 'proton.me'], number %% 7 + 1) AS rd,
		arrayElement(['mail.do.dev', 'news.do.dev', 'alerts.do.dev'], intDiv(number, 6) %% 3 + 1), if(t = 'send.email.bounced', if(number %% 3 = 0, 'soft', 'hard'), ''),
		number %% 5 != 0, number %% 3 = 0, if(startsWith(t, 'telco.'), toString(200 + number %% 700), ''), '', '', 0, 0,
		concat('{"eventId":"evt_', toString(number), '","type":"', t, '"}'), 'events', 0, number, now(),
		if(startsWith(t, 'send.'), [concat('user', toString(number %% 70000), '@', rd)], emptyArrayString())
	FROM (SELECT number, arrayElement(['send.email.sent', 'send.email.sent', 'send.email.sent', 'send.email.sent', 'send.email.sent',
		'send.email.delivered', 'send.email.delivered', 'send.email.delivered', 'send.email.delivered', 'send.email.opened',
		'send.email.opened', 'send.email.opened', 'send.email.clicked', 'send.email.bounced', 'send.email.complained',
		'telco.lookup.completed', 'telco.lookup.completed', 'voip.call.incoming', 'voip.call.completed', 'talk.speech.generated'],
		number %% 20 + 1) AS t FROM system.numbers LIMIT %d)`, db, start, span.Milliseconds(), n, n)
	// The lookup tables' and the rollup's materialized views write a part
	// per inserted block; the server merges them in the background within
	// minutes. Benchmarks measure that steady state, merged.
	stmts := []string{q}
	for _, table := range []string{"events", "event_ids", "message_ids", "recipient_ids", "stats_rollup", "rollup_totals", "engagements", "engagements_by_sender", "engagement_counts"} {
		stmts = append(stmts, "OPTIMIZE TABLE "+db+"."+table+" FINAL")
	}
	for _, stmt := range stmts {
		if err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("fill %d events: %w", n, err)
		}
	}
	// A running ingest checks the rollup's quarter hours (see
	// schema.CheckRollup); counts read it only where checked.
	if _, err := schema.CheckRollup(ctx, conn, db, 0, math.MaxInt64); err != nil {
		return fmt.Errorf("fill %d events: %w", n, err)
	}
	// And distinct counts read links only where built (schema.Links).
	if _, err := schema.LinkEngagements(ctx, conn, db, 0, math.MaxInt64); err != nil {
		return fmt.Errorf("fill %d events: %w", n, err)
	}
	return nil
}
