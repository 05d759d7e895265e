package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/schema"
)

// delivered builds a valid send.email.delivered event.
func delivered(id string, createdAt time.Time) []byte {
	return fmt.Appendf(nil, `{"eventId":%q,"type":"send.email.delivered","service":"send","data":{"messageId":"m-%s","to":"a@b.c"},"createdAt":%d}`,
		id, id, createdAt.UnixMilli())
}

func (f *fixture) produceKeyed(key string, values ...[]byte) {
	f.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.ListenAddrs()...), kgo.DefaultProduceTopic("events"),
		kgo.ProducerBatchMaxBytes(4<<20))
	require.NoError(f.t, err)
	defer cl.Close()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Key: []byte(key), Value: v}
	}
	require.NoError(f.t, cl.ProduceSync(context.Background(), recs...).FirstErr())
}

// deadLetters reads n records from events.dlq.
func (f *fixture) deadLetters(n int) []*kgo.Record {
	f.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.ListenAddrs()...), kgo.ConsumeTopics("events.dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(8<<20))
	require.NoError(f.t, err)
	defer cl.Close()
	var got []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(got) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, r) })
	}
	require.Len(f.t, got, n, "records on events.dlq")
	return got
}

// TestIngestTopicRecreated deletes and recreates the topic: offsets start
// again at 0, below those of the rows already stored. Every new event must
// be stored; none may be taken for a redelivery by its offset.
func TestIngestTopicRecreated(t *testing.T) {
	f := newFixture(t)
	day := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	var old [][]byte
	for i := range 1000 {
		old = append(old, delivered(fmt.Sprintf("old-%d", i), day))
	}
	f.produce(old...)
	in, stop := f.run(f.config(), testHooks{})
	f.waitConsumed(in, 1000)
	require.NoError(t, stop())
	require.Equal(t, uint64(1000), f.count("SELECT count() FROM "+f.db+".events"))

	cl, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.ListenAddrs()...))
	require.NoError(t, err)
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	_, err = adm.DeleteTopic(ctx, "events")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := adm.CreateTopic(ctx, 4, 1, nil, "events")
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	cl.Close()

	var fresh [][]byte
	for i := range 50 {
		fresh = append(fresh, delivered(fmt.Sprintf("new-%d", i), day.Add(time.Hour)))
	}
	f.produce(fresh...)
	in2, stop2 := f.run(f.config(), testHooks{})
	f.waitConsumed(in2, 50)
	require.NoError(t, stop2())
	assert.Equal(t, uint64(50), f.count("SELECT count() FROM "+f.db+".events WHERE event_id LIKE 'new-%'"),
		"every event of the recreated topic is stored")
	assert.Equal(t, int64(0), in2.Stats().Duplicates)
}

// crashAfterFirstPart runs an ingester that reads the n records produced in
// one batch and stops, as a crash would, once the batch's first part (month)
// is stored, before it looks for copies of it or stores the next.
func (f *fixture) crashAfterFirstPart(n int64) {
	f.t.Helper()
	crash := errors.New("crash after the first part")
	cfg := f.config()
	cfg.FlushInterval = time.Second // one batch of all n
	in, stop := f.run(cfg, testHooks{afterPart: func() error { return crash }})
	require.Eventually(f.t, func() bool { return in.Stats().Consumed == n }, 30*time.Second, 10*time.Millisecond)
	require.ErrorIs(f.t, stop(), crash)
}

// TestIngestCrashBetweenParts stops ingest after the first month of a batch
// spanning three was stored: the stored rows hold the partition's highest
// offsets, the others were never written. The next ingester must store the
// others and none twice.
func TestIngestCrashBetweenParts(t *testing.T) {
	f := newFixture(t)
	months := []time.Time{
		time.Date(2026, 8, 10, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 9, 10, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 10, 10, 0, 0, 0, 0, time.UTC),
	}
	var values [][]byte
	for i := range 300 {
		values = append(values, delivered(fmt.Sprintf("e-%d", i), months[(i+2)%3]))
	}
	f.produceKeyed("one-partition", values...) // offsets 0..299, the first part holds 0, 3, ..., 297

	f.crashAfterFirstPart(300)
	require.Equal(t, uint64(100), f.count("SELECT count() FROM "+f.db+".events"), "one month stored before the crash")
	require.Equal(t, uint64(297), f.count("SELECT toUInt64(max(kafka_offset)) FROM "+f.db+".events"),
		"it holds offsets above 198 of the 200 rows never written")

	second, stop2 := f.run(f.config(), testHooks{})
	f.waitConsumed(second, 300)
	require.NoError(t, stop2())
	assert.Equal(t, uint64(300), f.count("SELECT count() FROM "+f.db+".events"), "no loss, no double")
	assert.Equal(t, uint64(300), f.count("SELECT uniqExact(event_id) FROM "+f.db+".events"))
	assert.Equal(t, int64(100), second.Stats().Duplicates, "the stored month was recognised")
}

// TestIngestTenYearBackfill ingests a backfill over 120 months in one batch:
// each month is its own insert, so no insert spans more partitions than a
// current server allows (max_partitions_per_insert_block, 100).
func TestIngestTenYearBackfill(t *testing.T) {
	f := newFixture(t)
	var values [][]byte
	start := time.Date(2016, 1, 1, 12, 0, 0, 0, time.UTC)
	for m := range 120 {
		for i := range 5 {
			values = append(values, delivered(fmt.Sprintf("b-%d-%d", m, i), start.AddDate(0, m, i)))
		}
	}
	cfg := f.config()
	cfg.FlushInterval = time.Second
	var inserts, widest int
	in, stop := f.run(cfg, testHooks{beforeInsert: func(c *columns) error {
		seen := map[int64]bool{}
		for _, ms := range c.createdAt {
			seen[month(ms)] = true
		}
		inserts++
		widest = max(widest, len(seen))
		return nil
	}})
	f.produce(values...)
	f.waitConsumed(in, int64(len(values)))
	require.NoError(t, stop())
	assert.Equal(t, uint64(600), f.count("SELECT count() FROM "+f.db+".events"))
	assert.Equal(t, uint64(120), f.count("SELECT uniqExact(toYYYYMM(toDateTime(intDiv(created_at, 1000), 'UTC'))) FROM "+f.db+".events"))
	assert.Equal(t, 1, widest, "every insert writes one month")
	assert.GreaterOrEqual(t, inserts, 120)
}

// TestIngestDeadLettersRowsClickHouseRefuses injects a permanent refusal
// (TYPE_MISMATCH) for some rows of a batch: the batch is split, the good rows
// stored, the refused ones dead-lettered as they were produced (key, headers,
// timestamp) with ClickHouse's reason, and ingest goes on.
func TestIngestDeadLettersRowsClickHouseRefuses(t *testing.T) {
	f := newFixture(t)
	day := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	var values [][]byte
	for i := range 200 {
		id := fmt.Sprintf("good-%d", i)
		if i%67 == 5 {
			id = fmt.Sprintf("poison-%d", i)
		}
		values = append(values, delivered(id, day))
	}
	cfg := f.config()
	cfg.FlushInterval = time.Second
	in, stop := f.run(cfg, testHooks{beforeInsert: func(c *columns) error {
		for _, id := range c.eventID {
			if strings.HasPrefix(id, "poison") {
				return &clickhouse.Exception{Code: 53, Message: "injected: cannot store " + id}
			}
		}
		return nil
	}})
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.ListenAddrs()...), kgo.DefaultProduceTopic("events"))
	require.NoError(t, err)
	produced := time.UnixMilli(time.Now().UnixMilli() - 1000)
	for i, v := range values {
		id := fmt.Sprint(i)
		r := &kgo.Record{Key: []byte("key-" + id), Value: v, Timestamp: produced, Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t-" + id)}}}
		require.NoError(t, cl.ProduceSync(context.Background(), r).FirstErr())
	}
	cl.Close()
	f.waitConsumed(in, 200)
	f.produce(delivered("after", day))
	f.waitConsumed(in, 201)
	require.NoError(t, stop())
	assert.Equal(t, uint64(198), f.count("SELECT count() FROM "+f.db+".events"))
	assert.Zero(t, f.count("SELECT count() FROM "+f.db+".events WHERE event_id LIKE 'poison%'"))
	got := map[string]*kgo.Record{}
	for _, r := range f.deadLetters(3) {
		got[string(r.Value)] = r
	}
	for _, i := range []int{5, 72, 139} {
		id := fmt.Sprintf("poison-%d", i)
		r := got[string(delivered(id, day))]
		require.NotNil(t, r, id)
		assert.Contains(t, header(r, "error"), "clickhouse refused the row: code: 53, message: injected: cannot store "+id)
		assert.Equal(t, fmt.Sprintf("key-%d", i), string(r.Key))
		assert.Equal(t, fmt.Sprintf("t-%d", i), header(r, "trace"))
		assert.Equal(t, produced, r.Timestamp)
	}
	assert.Equal(t, int64(3), in.Stats().DeadLettered)
	assert.Equal(t, uint64(3), f.count("SELECT count() FROM "+f.db+".dead_letter_log WHERE kind = 'refused'"))
}

// TestIngestOversizedRecords sends records over the maximum event size, one
// of them larger than the dead-letter topic accepts: both are dead-lettered
// (the larger one cut to fit, saying so), the valid event beside them is
// stored once, and ingest goes on.
func TestIngestOversizedRecords(t *testing.T) {
	f := newFixture(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.ListenAddrs()...))
	require.NoError(t, err)
	limit := "600000"
	_, err = kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1, map[string]*string{"max.message.bytes": &limit}, "events.dlq")
	require.NoError(t, err)
	cl.Close()

	day := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	big := func(n int) []byte { // valid JSON, a valid event but for its size
		ev := delivered("big", day)
		return append(ev[:len(ev)-1], fmt.Sprintf(`,"pad":"%s"}`, strings.Repeat("x", n-len(ev)-10))...)
	}
	large, huge := big(300_000), big(1_040_000)
	in, stop := f.run(f.config(), testHooks{})
	f.produceKeyed("k", delivered("before", day), large, huge, delivered("beside", day))
	f.waitConsumed(in, 4)
	f.produce(delivered("after", day))
	f.waitConsumed(in, 5)
	require.NoError(t, stop())

	assert.Equal(t, uint64(3), f.count("SELECT count() FROM "+f.db+".events"))
	assert.Equal(t, uint64(3), f.count("SELECT uniqExact(event_id) FROM "+f.db+".events"))
	dl := f.deadLetters(2)
	for _, r := range dl {
		assert.Contains(t, header(r, "error"), "over the maximum event size of 262144 bytes")
		assert.Regexp(t, `^events/\d+/\d+$`, header(r, "source"))
	}
	bySize := map[int]*kgo.Record{}
	for _, r := range dl {
		orig := len(r.Value)
		if tr := header(r, "truncated"); tr != "" {
			orig, err = strconv.Atoi(tr)
			require.NoError(t, err)
		}
		bySize[orig] = r
	}
	require.Contains(t, bySize, len(large))
	require.Contains(t, bySize, len(huge))
	assert.Equal(t, large, bySize[len(large)].Value, "a record that fits is dead-lettered whole")
	assert.Empty(t, header(bySize[len(large)], "truncated"))
	cut := bySize[len(huge)]
	assert.Less(t, len(cut.Value), 600_000, "cut to fit the topic's max.message.bytes")
	assert.Equal(t, huge[:len(cut.Value)], cut.Value, "what is kept is the record's start")
}

// TestIngestDLQUnusable forbids creating the dead-letter topic on a cluster
// that does not create topics by itself: dead letters go to ClickHouse's
// dead_letters table, and ingest goes on.
func TestIngestDLQUnusable(t *testing.T) {
	f := newFixture(t)
	f.cluster.Close()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events"))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	f.cluster = cluster
	cluster.ControlKey(int16(kmsg.CreateTopics), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		creq := req.(*kmsg.CreateTopicsRequest)
		resp := creq.ResponseKind().(*kmsg.CreateTopicsResponse)
		for _, ct := range creq.Topics {
			rt := kmsg.NewCreateTopicsResponseTopic()
			rt.Topic = ct.Topic
			rt.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})

	day := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	in, stop := f.run(f.config(), testHooks{})
	f.produce(delivered("one", day), []byte(`not json`), []byte(`{"eventId":"evt\n1"}`))
	f.waitConsumed(in, 3)
	f.produce(delivered("two", day))
	f.waitConsumed(in, 4)
	require.NoError(t, stop())
	assert.Equal(t, uint64(2), f.count("SELECT count() FROM "+f.db+".events"))
	assert.Equal(t, uint64(2), f.count("SELECT count() FROM "+f.db+".dead_letters"))
	assert.Equal(t, uint64(1), f.count("SELECT count() FROM "+f.db+".dead_letters WHERE value = 'not json' AND error LIKE 'not JSON%' AND source LIKE 'events/%' AND dlq_error != ''"))
	assert.Equal(t, uint64(1), f.count("SELECT count() FROM "+f.db+".dead_letters WHERE error LIKE '%printable ASCII%'"))
	assert.Equal(t, int64(4), committed(t, f.cluster.ListenAddrs()), "every offset committed")
}

// TestIngestDeadLettersOldRecords dead-letters records produced long ago
// (a backlog): they keep their timestamps and must still reach the DLQ.
func TestIngestDeadLettersOldRecords(t *testing.T) {
	f := newFixture(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.ListenAddrs()...), kgo.DefaultProduceTopic("events"))
	require.NoError(t, err)
	old := time.Now().Add(-time.Hour)
	require.NoError(t, cl.ProduceSync(context.Background(),
		&kgo.Record{Value: []byte("not json, an hour old"), Timestamp: old},
		&kgo.Record{Value: delivered("old", old), Timestamp: old}).FirstErr())
	cl.Close()
	in, stop := f.run(f.config(), testHooks{})
	f.waitConsumed(in, 2)
	require.NoError(t, stop())
	dl := f.deadLetters(1)
	assert.Equal(t, "not json, an hour old", string(dl[0].Value))
	assert.Equal(t, uint64(1), f.count("SELECT count() FROM "+f.db+".events"))
}

// storeElsewhere stores events as another ingest did, out of this one's
// sight: read from another topic (so resume does not load them) two hours ago
// (so the recent set does not either).
func (f *fixture) storeElsewhere(values ...[]byte) {
	f.t.Helper()
	batch, err := f.conn.PrepareBatch(context.Background(), chtest.InsertColumns(f.db))
	require.NoError(f.t, err)
	var p schema.Parser
	for i, v := range values {
		ev, err := p.Parse(v)
		require.NoError(f.t, err)
		row := chtest.EventRow(ev, i, time.Now().Add(-2*time.Hour))
		row[slices.Index(schema.EventColumns, "kafka_topic")] = "elsewhere"
		require.NoError(f.t, batch.Append(row...))
	}
	require.NoError(f.t, batch.Send())
}

// counted counts the events of [from, to) as the API does.
func (f *fixture) counted(from, to time.Time) uint64 {
	f.t.Helper()
	ctx := context.Background()
	c, err := schema.CountedEvents(ctx, f.conn, f.db, from.UnixMilli(), to.UnixMilli())
	require.NoError(f.t, err)
	events, args := c.Source("created_at >= ? AND created_at < ?", []any{from.UnixMilli(), to.UnixMilli()})
	return f.count("SELECT count() FROM "+events, args...)
}

// copiesStoredElsewhere makes 100 events, of which the first 40 are already
// stored by another ingest, and produces all 100 to one partition.
func (f *fixture) copiesStoredElsewhere(at time.Time) {
	f.t.Helper()
	var values [][]byte
	for i := range 100 {
		values = append(values, delivered(fmt.Sprintf("e-%d", i), at.Add(time.Duration(i)*time.Second)))
	}
	f.storeElsewhere(values[:40]...)
	f.produceKeyed("one-partition", values...)
}

// TestIngestRecordsAndResolvesCopies: ingest cannot know the 40 events
// stored out of its sight, so it stores its own copies; then it finds those
// 40 keys stored twice and records them, and counts read each event once.
func TestIngestRecordsAndResolvesCopies(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 10, 10, 0, 0, 0, 0, time.UTC)
	f.copiesStoredElsewhere(at)

	in, stop := f.run(f.config(), testHooks{})
	f.waitConsumed(in, 100)
	require.NoError(t, stop())
	assert.Equal(t, uint64(140), f.count("SELECT count() FROM "+f.db+".events"), "both copies are stored")
	assert.Equal(t, uint64(40), f.count("SELECT uniqExact(event_id) FROM "+f.db+".event_dups WHERE event_id IN (SELECT event_id FROM "+
		f.db+".events WHERE kafka_topic = 'elsewhere')"), "each copied key is recorded")
	assert.Equal(t, uint64(40), f.count("SELECT count() FROM "+f.db+".event_dups FINAL"), "and nothing else")
	assert.EqualValues(t, 40, in.Stats().StoredTwice)
	assert.Equal(t, uint64(100), f.counted(at, at.Add(time.Hour)), "counts read each event once")

	// The keys stay recorded while their copies are stored; once ClickHouse
	// has merged them they are resolved, and counts are plain reads again; a
	// new copy records its key again.
	unresolved := func() uint64 {
		return f.count("SELECT count() FROM (SELECT 1 FROM " + f.db + ".event_dups GROUP BY type, created_at, event_id HAVING argMax(resolved, version) = 0)")
	}
	require.Equal(t, uint64(40), unresolved())

	ctx := context.Background()
	n, err := in.resolveMerged(ctx, 0)
	require.NoError(t, err)
	assert.Zero(t, n, "the copies are still stored")
	assert.Equal(t, uint64(40), unresolved())

	require.NoError(t, f.conn.Exec(ctx, "OPTIMIZE TABLE "+f.db+".events FINAL"))
	require.Equal(t, uint64(100), f.count("SELECT count() FROM "+f.db+".events"), "ClickHouse merged the copies")
	n, err = in.resolveMerged(ctx, 0)
	require.NoError(t, err)
	assert.Equal(t, 40, n)
	assert.Zero(t, unresolved())
	assert.Equal(t, uint64(100), f.counted(at, at.Add(time.Hour)))

	// Another copy of e-3 after that: recorded again, and counted once.
	f.storeElsewhere(delivered("e-3", at.Add(3*time.Second)))
	require.NoError(t, in.recordDuplicates(ctx, []string{"e-3"}, []string{"send"}, []int64{at.Add(3 * time.Second).UnixMilli()}))
	assert.Equal(t, uint64(1), unresolved())
	assert.Equal(t, uint64(100), f.counted(at, at.Add(time.Hour)))
}

// TestIngestCrashBeforeLookingForCopies stops ingest between storing a batch
// and looking for copies of it: the next owner of the partition finds the
// stored rows when it resumes, and looks for their copies then.
func TestIngestCrashBeforeLookingForCopies(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 10, 10, 0, 0, 0, 0, time.UTC)
	f.copiesStoredElsewhere(at)

	f.crashAfterFirstPart(100)
	require.Equal(t, uint64(140), f.count("SELECT count() FROM "+f.db+".events"), "the batch was stored")
	require.Zero(t, f.count("SELECT count() FROM "+f.db+".event_dups"), "nobody looked for copies yet")

	second, stop2 := f.run(f.config(), testHooks{})
	f.waitConsumed(second, 100)
	require.NoError(t, stop2())
	assert.Equal(t, int64(100), second.Stats().Duplicates, "the stored batch was recognised")
	assert.Equal(t, uint64(40), f.count("SELECT count() FROM "+f.db+".event_dups FINAL"), "its copies were found on resume")
	assert.Equal(t, uint64(100), f.counted(at, at.Add(time.Hour)))
}
