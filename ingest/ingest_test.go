package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/schema"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

// fixture is a broker with a 4-partition "events" topic and a migrated
// database of the test's own.
type fixture struct {
	t       testing.TB
	cluster *kfake.Cluster
	conn    driver.Conn
	db      string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	conn, db := chtest.MigratedDatabase(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events"), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	return &fixture{t: t, cluster: cluster, conn: conn, db: db}
}

func (f *fixture) config() Config {
	return Config{
		Brokers:       f.cluster.ListenAddrs(),
		Database:      f.db,
		FlushInterval: 100 * time.Millisecond,
		RetryMin:      20 * time.Millisecond,
		RetryMax:      200 * time.Millisecond,
	}
}

func (f *fixture) produce(values ...[]byte) {
	f.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.ListenAddrs()...), kgo.DefaultProduceTopic("events"))
	require.NoError(f.t, err)
	defer cl.Close()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Value: v}
	}
	require.NoError(f.t, cl.ProduceSync(context.Background(), recs...).FirstErr())
}

// run starts an ingester and returns it with a function that stops it and
// returns Run's error.
func (f *fixture) run(cfg Config, hooks testHooks) (*Ingester, func() error) {
	f.t.Helper()
	in, err := New(cfg, f.conn, testLogger(f.t))
	require.NoError(f.t, err)
	in.testHooks = hooks
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var once bool
	var result error
	stop := func() error {
		if !once {
			once = true
			cancel()
			result = <-done
		}
		return result
	}
	f.t.Cleanup(func() { stop() })
	return in, stop
}

func (f *fixture) count(query string, args ...any) uint64 {
	f.t.Helper()
	var n uint64
	require.NoError(f.t, f.conn.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

func (f *fixture) waitConsumed(in *Ingester, n int64) {
	f.t.Helper()
	require.Eventually(f.t, func() bool {
		s := in.Stats()
		return s.Consumed >= n && s.Inserted+s.Duplicates+s.DeadLettered >= n
	}, 60*time.Second, 20*time.Millisecond, "ingest did not handle %d records: %+v", n, in.Stats())
}

// readSample loads testdata's events and counts, independently of package
// schema, the distinct eventIds per type.
func readSample(t *testing.T) ([][]byte, map[string]uint64) {
	t.Helper()
	raw, err := os.ReadFile("../testdata/events.ndjson")
	require.NoError(t, err)
	var lines [][]byte
	want := map[string]uint64{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := append([]byte(nil), sc.Bytes()...)
		lines = append(lines, line)
		var ev struct{ EventID, Type string }
		require.NoError(t, json.Unmarshal(line, &ev))
		if !seen[ev.EventID] {
			seen[ev.EventID] = true
			want[ev.Type]++
		}
	}
	require.NoError(t, sc.Err())
	return lines, want
}

func (f *fixture) countsByType() map[string]uint64 {
	f.t.Helper()
	rows, err := f.conn.Query(context.Background(), "SELECT type, count() FROM "+f.db+".events GROUP BY type")
	require.NoError(f.t, err)
	defer rows.Close()
	got := map[string]uint64{}
	for rows.Next() {
		var typ string
		var n uint64
		require.NoError(f.t, rows.Scan(&typ, &n))
		got[typ] = n
	}
	require.NoError(f.t, rows.Err())
	return got
}

func TestIngestSampleEachEventOnce(t *testing.T) {
	f := newFixture(t)
	lines, want := readSample(t)
	in, stop := f.run(f.config(), testHooks{})
	f.produce(lines...)
	f.waitConsumed(in, int64(len(lines)))
	require.NoError(t, stop())

	assert.Equal(t, want, f.countsByType(), "rows per type: every eventId once, retries dropped")
	s := in.Stats()
	assert.Equal(t, int64(len(lines)), s.Consumed)
	assert.Equal(t, int64(0), s.DeadLettered)
	assert.Equal(t, int64(len(lines)), s.Inserted+s.Duplicates)

	// The stored record is the produced bytes, byte for byte.
	var raw string
	require.NoError(t, f.conn.QueryRow(context.Background(),
		"SELECT raw FROM "+f.db+".events WHERE event_id = ?", eventID(t, lines[0])).Scan(&raw))
	assert.Equal(t, string(lines[0]), raw)
	f.checkDims()
}

// checkDims holds every stored row's envelope and dimensions to what a
// parser of its own (one that copies its strings) reads from its raw record.
func (f *fixture) checkDims() {
	f.t.Helper()
	rows, err := f.conn.Query(context.Background(), "SELECT raw, event_id, type, service, created_at, message_id, message_hash, "+
		"recipient_domain, sender_domain, bounce_type, npa, voice, format, recipients FROM "+f.db+".events")
	require.NoError(f.t, err)
	defer rows.Close()
	var p schema.Parser
	n := 0
	for rows.Next() {
		var raw, id, typ, svc, msg, rdom, sdom, bounce, npa, voice, format string
		var at int64
		var hash uint64
		var recipients []string
		require.NoError(f.t, rows.Scan(&raw, &id, &typ, &svc, &at, &msg, &hash, &rdom, &sdom, &bounce, &npa, &voice, &format, &recipients))
		ev, err := p.Parse([]byte(raw))
		require.NoError(f.t, err)
		d := ev.Dims
		if len(d.Recipients) == 0 {
			d.Recipients = []string{}
		}
		require.Equal(f.t, []any{ev.ID, ev.Type, ev.Service, ev.CreatedAt, d.MessageID, d.MessageHash, d.RecipientDomain, d.SenderDomain,
			d.BounceType, d.NPA, d.Voice, d.Format, d.Recipients},
			[]any{id, typ, svc, at, msg, hash, rdom, sdom, bounce, npa, voice, format, recipients}, raw)
		n++
	}
	require.NoError(f.t, rows.Err())
	require.NotZero(f.t, n)
}

func eventID(t *testing.T, line []byte) string {
	var ev struct{ EventID string }
	require.NoError(t, json.Unmarshal(line, &ev))
	return ev.EventID
}

func TestIngestDeadLettersInvalidRecords(t *testing.T) {
	f := newFixture(t)
	good := []byte(`{"eventId":"e1","type":"send.email.delivered","service":"send","data":{"messageId":"m","to":"a@b.c"},"createdAt":1790812800000}`)
	bad := map[string]string{
		`not json`: "not JSON",
		`[1,2]`:    "not a JSON object",
		`{"eventId":"e2","type":"send.email.delivered","service":"telco","data":{"messageId":"m","to":"a@b.c"},"createdAt":1}`:                  "does not match type",
		`{"eventId":"e3","type":"send.email.bounced","service":"send","data":{"messageId":"m","to":"a@b.c","bounceType":"hard"},"createdAt":1}`: "missing data.diagnosticCode",
	}
	in, stop := f.run(f.config(), testHooks{})
	values := [][]byte{good}
	for v := range bad {
		values = append(values, []byte(v))
	}
	f.produce(values...)
	f.waitConsumed(in, int64(len(values)))
	require.NoError(t, stop())
	assert.Equal(t, uint64(1), f.count("SELECT count() FROM "+f.db+".events"))

	cl, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.ListenAddrs()...), kgo.ConsumeTopics("events.dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	got := map[string]string{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(got) < len(bad) && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == "error" {
					got[string(r.Value)] = string(h.Value)
				}
			}
		})
	}
	require.Len(t, got, len(bad), "every invalid record is on events.dlq with an error header")
	for v, reason := range bad {
		assert.Contains(t, got[v], reason, "record %s", v)
	}
	// And each is in the dead-letter log, with its kind, reason and source.
	assert.Equal(t, uint64(len(bad)), f.count("SELECT count() FROM "+f.db+".dead_letter_log WHERE kind = 'invalid' AND source LIKE 'events/%'"))
	for _, reason := range bad {
		assert.Equal(t, uint64(1), f.count("SELECT count() FROM "+f.db+".dead_letter_log WHERE position(reason, '"+reason+"') > 0"), reason)
	}
}

// TestIngestCrashBetweenInsertAndCommit stops ingest after ClickHouse stored a
// batch and before its offsets were committed, as a crash there would. The
// next ingester gets the same records again and must store none twice.
func TestIngestCrashBetweenInsertAndCommit(t *testing.T) {
	f := newFixture(t)
	lines, want := readSample(t)
	f.produce(lines...)

	crash := errors.New("crash before commit")
	first, stop := f.run(f.config(), testHooks{afterInsert: func() error { return crash }})
	require.Eventually(t, func() bool { return first.Stats().Consumed > 0 && first.Ready() != nil }, 30*time.Second, 10*time.Millisecond)
	require.ErrorIs(t, stop(), crash)
	stored := f.count("SELECT count() FROM " + f.db + ".events")
	require.NotZero(t, stored, "the first ingester stored a batch before it crashed")

	second, stop2 := f.run(f.config(), testHooks{})
	f.waitConsumed(second, int64(len(lines)))
	require.NoError(t, stop2())

	assert.Equal(t, want, f.countsByType(), "no loss and no double count")
	assert.GreaterOrEqual(t, second.Stats().Duplicates, int64(stored), "the redelivered batch was skipped")
}

// TestIngestRetriesWhileClickHouseRefuses makes the table unwritable, then
// writable again: ingest must wait, lose nothing and commit nothing early.
func TestIngestRetriesWhileClickHouseRefuses(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	lines, want := readSample(t)
	in, stop := f.run(f.config(), testHooks{})
	require.Eventually(t, func() bool { return in.Ready() == nil }, 30*time.Second, 10*time.Millisecond)

	require.NoError(t, f.conn.Exec(ctx, "RENAME TABLE "+f.db+".events TO "+f.db+".events_away"))
	f.produce(lines...)
	require.Eventually(t, func() bool {
		err := in.Ready()
		return err != nil && strings.Contains(err.Error(), "retrying")
	}, 30*time.Second, 10*time.Millisecond, "readiness shows the failing writes")
	time.Sleep(300 * time.Millisecond) // several retries while the table is away
	assert.Zero(t, committed(t, f.cluster.ListenAddrs()), "no offset committed while nothing is stored")

	require.NoError(t, f.conn.Exec(ctx, "RENAME TABLE "+f.db+".events_away TO "+f.db+".events"))
	f.waitConsumed(in, int64(len(lines)))
	require.NoError(t, stop())
	assert.Equal(t, want, f.countsByType())
}

// TestInsertWritesOnePart: an insert of several blocks (insertBlock rows
// or insertBlockBytes each) stores its rows as one part of the events
// table, as one block would: the server puts an insert's blocks together
// before writing them.
func TestInsertWritesOnePart(t *testing.T) {
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	large := make([][]byte, 7) // 1.5 MiB each: blocks of two
	for i := range large {
		large[i] = fmt.Appendf(nil, `{"eventId":"large-%d","type":"talk.speech.generated","service":"talk","createdAt":%d,"data":{"voice":"nova","format":"mp3","textLength":1,"speed":1,"text":%q}}`,
			i, start.UnixMilli()+int64(i), strings.Repeat("x", 3<<19))
	}
	for _, tc := range []struct {
		name   string
		values [][]byte
		blocks int
	}{
		{"rows", sample.Generate(3*insertBlock+5, sample.Options{Seed: 3, Start: start, Span: 24 * time.Hour}), 4},
		{"bytes", large, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			// No merge may join the parts before they are counted.
			require.NoError(t, f.conn.Exec(ctx, "SYSTEM STOP MERGES `"+f.db+"`.events"))
			var p schema.Parser
			var c columns
			for i, v := range tc.values {
				ev, err := p.Parse(v)
				require.NoError(t, err)
				c.add(&ev, &kgo.Record{Topic: "events", Offset: int64(i), Value: v}, time.Now())
			}
			require.Len(t, c.byMonth(), 1, "one partition")
			blocks := 0
			for lo := 0; lo < c.len(); lo = c.blockEnd(lo) {
				blocks++
			}
			require.Equal(t, tc.blocks, blocks, "blocks sent")
			require.NoError(t, c.insert(ctx, f.conn, insertQuery(f.db, "events")))
			assert.Equal(t, uint64(len(tc.values)), f.count("SELECT count() FROM `"+f.db+"`.events"))
			assert.Equal(t, uint64(1), f.count("SELECT count() FROM system.parts WHERE database = ? AND table = 'events' AND active", f.db), "parts")
		})
	}
}

// TestBlockEnd: a block ends after insertBlock rows or before the row that
// would take its records past insertBlockBytes, and holds one row at least.
func TestBlockEnd(t *testing.T) {
	var c columns
	for _, n := range []int{1 << 20, 2 << 20, 1 << 20, 1, 5 << 20, 3 << 20, 1 << 20} {
		c.raw = append(c.raw, strings.Repeat("x", n))
		c.eventID = append(c.eventID, "")
	}
	var ends []int
	for lo := 0; lo < c.len(); {
		lo = c.blockEnd(lo)
		ends = append(ends, lo)
	}
	// 4 MiB fill a block, the next byte starts another, 5 MiB go alone.
	assert.Equal(t, []int{3, 4, 5, 7}, ends)
	c = columns{}
	for range insertBlock + 1 {
		c.raw, c.eventID = append(c.raw, "x"), append(c.eventID, "")
	}
	assert.Equal(t, insertBlock, c.blockEnd(0))
	assert.Equal(t, insertBlock+1, c.blockEnd(insertBlock))
}

// TestColumnsMatchTheTable: the columns ingest appends hold, column by
// column, the values schema.EventRow puts there, for an event whose
// columns differ where their types allow (the four flags are 0 or 1), so two
// columns swapped in either place fail.
func TestColumnsMatchTheTable(t *testing.T) {
	var p schema.Parser
	ev, err := p.Parse([]byte(`{"eventId":"evt_cols","type":"send.email.bounced","service":"send","createdAt":1790000000001,"livemode":false,` +
		`"data":{"messageId":"msg_cols","from":"a@from.example","to":["b@to.example","c@cc.example"],"bounceType":"hard","diagnosticCode":"550",` +
		`"npa":"212","voice":"nova","format":"mp3","textLength":7,"durationSec":1.5,"hasCarrier":true}}`))
	require.NoError(t, err)
	rec := &kgo.Record{Topic: "events-cols", Partition: 3, Offset: 42, Value: ev.Raw}
	now := time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC)
	var c columns
	c.add(&ev, rec, now)
	want := schema.EventRow(&ev, rec.Topic, rec.Partition, rec.Offset, now)
	got := append(c.values(0, c.len()), c.recipients)
	require.Len(t, got, len(schema.EventColumns), "one slice per column, in EventColumns order, recipients last")
	require.Len(t, want, len(schema.EventColumns))
	for i, col := range got {
		v := reflect.ValueOf(col)
		require.Equal(t, 1, v.Len(), schema.EventColumns[i])
		first := v.Index(0).Interface()
		if b, ok := first.([]byte); ok {
			first = string(b)
		}
		assert.Equal(t, want[i], first, "column %s", schema.EventColumns[i])
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		c := Config{Brokers: []string{"127.0.0.1:9092"}}
		c.ApplyDefaults()
		return c
	}
	require.NoError(t, func() error { c := base(); return c.Validate() }())
	for name, mutate := range map[string]func(*Config){
		"no brokers":     func(c *Config) { c.Brokers = nil },
		"empty topic":    func(c *Config) { c.Topic = "" },
		"empty group":    func(c *Config) { c.Group = "" },
		"bad database":   func(c *Config) { c.Database = "a-b" },
		"zero batch":     func(c *Config) { c.BatchSize = -1 },
		"huge batch":     func(c *Config) { c.BatchSize = 2_000_000 },
		"tiny interval":  func(c *Config) { c.FlushInterval = time.Millisecond },
		"retry inverted": func(c *Config) { c.RetryMax = c.RetryMin / 2 },
		"bad protocol":   func(c *Config) { c.GroupProtocol = "eager" },
		"short session":  func(c *Config) { c.SessionTimeout = time.Second },
		"tiny rebalance": func(c *Config) { c.RebalanceTimeout = time.Millisecond },
		"tiny batch":     func(c *Config) { c.BatchBytes = 1000 },
		"huge events":    func(c *Config) { c.MaxEventBytes = 64 << 20 },
	} {
		t.Run(name, func(t *testing.T) {
			c := base()
			mutate(&c)
			assert.Error(t, c.Validate())
		})
	}
	c := Config{Brokers: []string{"x:1"}}
	c.ApplyDefaults()
	assert.Equal(t, "events", c.Topic)
	assert.Equal(t, "hindsight", c.Database)
	assert.Equal(t, DefaultBatchSize, c.BatchSize)
	assert.Equal(t, fmt.Sprint(time.Second), fmt.Sprint(c.FlushInterval))
	assert.Equal(t, "consumer", c.GroupProtocol)
	assert.Equal(t, 256<<10, c.MaxEventBytes)
	static := Config{Brokers: []string{"x:1"}, InstanceID: "pod-0"}
	static.ApplyDefaults()
	assert.Equal(t, "classic", static.GroupProtocol, "static members rejoin at once only in classic groups")
}

// committed returns the sum of the ingest group's committed offsets.
func committed(t *testing.T, brokers []string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	defer cl.Close()
	offsets, err := kadm.NewClient(cl).FetchOffsets(context.Background(), DefaultGroup)
	require.NoError(t, err)
	var sum int64
	offsets.Each(func(o kadm.OffsetResponse) { sum += max(o.At, 0) })
	return sum
}

// testLogger logs to the test's output, shown when it fails or with -v.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestEventsRetention: an ingester with a retention lets events older than
// it go when it starts (on 18.16, the months wholly older), and ingests on.
func TestEventsRetention(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	var p schema.Parser
	var events []schema.Event
	for i, at := range []time.Time{now.AddDate(0, -4, 0), now.Add(-time.Hour)} {
		ev, err := p.Parse(fmt.Appendf(nil, `{"eventId":"kept-%d","type":"platform.test","service":"platform","createdAt":%d,"data":{"message":"m","endpoint_id":"e"}}`,
			i, at.UnixMilli()))
		require.NoError(t, err)
		events = append(events, ev)
	}
	chtest.InsertEvents(t, f.conn, f.db, events)
	cfg := f.config()
	cfg.EventsRetention = 30 * 24 * time.Hour
	in, _ := f.run(cfg, testHooks{})
	require.Eventually(t, func() bool {
		return f.count("SELECT count() FROM `"+f.db+"`.events") == 1
	}, 30*time.Second, 50*time.Millisecond, "the four-month-old event goes")
	assert.EqualValues(t, 1, f.count("SELECT count() FROM `"+f.db+"`.events WHERE event_id = 'kept-1'"))
	f.produce(fmt.Appendf(nil, `{"eventId":"new","type":"platform.test","service":"platform","createdAt":%d,"data":{"message":"m","endpoint_id":"e"}}`, now.UnixMilli()))
	f.waitConsumed(in, 1)
	assert.EqualValues(t, 2, f.count("SELECT count() FROM `"+f.db+"`.events"))
}

// TestIngestChecksTheRollup: the quarter hours ingest stored into are
// checked against the events and their engagements linked once they are
// over, so stats read the rollup and links there; at start ingest checks
// and links every quarter hour not yet checked or linked.
func TestIngestChecksTheRollup(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	lines, _ := readSample(t)
	in, stop := f.run(f.config(), testHooks{rollupCheckEvery: time.Hour})
	f.produce(lines...)
	f.waitConsumed(in, int64(len(lines)))
	require.NoError(t, stop())
	steps := f.count("SELECT count(DISTINCT created_at) FROM " + f.db + ".stats_rollup")
	require.NotZero(t, steps)

	// recorded is how many quarter hours' totals (per quarter hour, in
	// column events) are the ones recorded (the latest by version).
	recorded := func(totals, record string) uint64 {
		return f.count("SELECT count() FROM (SELECT created_at, sum(events) AS n FROM " + f.db + "." + totals + " GROUP BY created_at) " +
			"ANY INNER JOIN (SELECT created_at, argMax(events, version) AS recorded FROM " + f.db + "." + record + " GROUP BY created_at) " +
			"USING created_at WHERE n = recorded")
	}
	// checked is how many quarter hours' rollup totals are the ones checked;
	// linked how many quarter hours' links were built from the engagements
	// they hold.
	checked := func() uint64 { return recorded("stats_rollup", "rollup_checked") }
	linked := func() uint64 { return recorded("engagement_counts", "links_checked") }
	engaged := f.count("SELECT count(DISTINCT created_at) FROM " + f.db + ".engagement_counts")
	require.NotZero(t, engaged)
	truncate := func() {
		require.NoError(t, f.conn.Exec(ctx, "TRUNCATE TABLE "+f.db+".rollup_checked"))
		require.NoError(t, f.conn.Exec(ctx, "TRUNCATE TABLE "+f.db+".links_checked"))
	}
	truncate()
	require.Zero(t, checked())
	require.Zero(t, linked())
	n, err := in.checkRollup(ctx, false)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, steps, checked(), "every quarter hour stored into is checked")
	assert.Equal(t, engaged, linked(), "and linked")
	assert.Empty(t, in.touched.takeOver(time.Now().UnixMilli()), "and taken off the list")

	truncate()
	n, err = in.checkRollup(ctx, true)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, steps, checked(), "the sweep at start checks every quarter hour")
	assert.Equal(t, engaged, linked(), "and links every one")
}

// TestFlushStoresRecordsWaitingForTheRecentSet: valid records wait in
// groups for the recent set (addValid) while their offsets are already the
// batch's. A flush that comes before their group is added, as a stop
// between two records of a poll does, must store them first, or their
// offsets would be committed over rows never stored.
func TestFlushStoresRecordsWaitingForTheRecentSet(t *testing.T) {
	f := newFixture(t)
	in, err := New(f.config(), f.conn, testLogger(t))
	require.NoError(t, err)
	defer in.client.Close()
	in.resumed[0] = true
	day := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for i := range 5 {
		r := &kgo.Record{Topic: "events", Offset: int64(i), Value: delivered(fmt.Sprint("waiting-", i), day)}
		require.NoError(t, in.add(ctx, r, time.Now()))
	}
	require.Len(t, in.valid, 5, "fewer than a group: none added yet")
	require.NoError(t, in.flush(ctx))
	require.NoError(t, in.finishTail(ctx))
	assert.Equal(t, uint64(5), f.count("SELECT count() FROM "+f.db+".events"))
}
