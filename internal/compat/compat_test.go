//go:build chdb

package compat

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"github.com/chdb-io/chdb-go/chdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/ingest"
	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/host"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/query"
	"github.com/dodev/hindsight/schema"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

const apiKey = "compat-key-0123456789abcdef"

// fixture is a week of generated events across the US DST change.
func fixture(t *testing.T) []schema.Event {
	t.Helper()
	opts := sample.Options{Seed: 5, Start: time.Date(2026, 10, 28, 0, 0, 0, 0, time.UTC), Span: 7 * 24 * time.Hour, TestMode: 0.05, Unknown: 0.01}
	events, err := sample.Events(2000, opts)
	require.NoError(t, err)
	return events
}

// TestSQLCompatibility migrates a database on both engines, loads the same
// events into both, then sends every kind of API request to the query API
// on each and requires byte-identical responses. A statement one engine
// refuses fails the test with the statement in the message.
func TestSQLCompatibility(t *testing.T) {
	ctx := context.Background()
	old, db := chtest.Database(t)
	cur := &chdbConn{s: session(t), version: newVersion}

	// DDL: each engine gets the statements for its version.
	_, err := schema.Migrate(ctx, old, db)
	require.NoError(t, err, "migrate on ClickHouse 18.16")
	_, err = schema.Migrate(ctx, cur, db)
	require.NoError(t, err, "migrate on chDB 26.7")
	_, err = schema.Migrate(ctx, cur, db)
	require.NoError(t, err, "migrate again on chDB 26.7 (idempotent)")
	typ := chdbColumnType(t, cur, db, "type")
	assert.Equal(t, "LowCardinality(String)", typ, "current servers get LowCardinality")

	// The same rows in both.
	events := fixture(t)
	loadOld(t, old, db, events)
	loadCur(t, cur, db, events)
	addDeliveries(t, old, db, events)
	addDeliveries(t, cur, db, events)
	for _, conn := range []chtest.Execer{old, cur} {
		for i, kind := range []string{"invalid", "refused", "invalid"} {
			require.NoError(t, conn.Exec(ctx, "INSERT INTO `"+db+"`.dead_letter_log (at, kind, reason, source) SELECT ?, ?, ?, ?",
				int64(1793000000000+i*1000), kind, "why "+kind, "events/0/"+string(rune('0'+i))))
		}
	}

	// A fixed clock: the event types' last 30 days must hold the fixture's
	// week however long after it the test runs.
	now := func() time.Time { return time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC) }
	apiOld, apiCur := queryAPI(t, old, db, now), queryAPI(t, cur, db, now)

	paths := requests(events)
	// compare sends every request to both and returns 18.16's bodies.
	compare := func(what string) map[string]string {
		bodies := map[string]string{}
		for _, path := range paths {
			codeOld, bodyOld := call(t, apiOld, path)
			codeCur, bodyCur := call(t, apiCur, path)
			if codeCur == http.StatusInternalServerError || codeOld == http.StatusInternalServerError {
				t.Errorf("GET %s %s: 18.16 answered %d, chDB %d; the last statement chDB got:\n%s", path, what, codeOld, codeCur, last(cur.sent))
				continue
			}
			assert.Equal(t, codeOld, codeCur, "GET %s %s", path, what)
			assert.Equal(t, bodyOld, bodyCur, "GET %s %s: same body on 18.16 and 26.7", path, what)
			bodies[path] = bodyOld
		}
		return bodies
	}
	once := compare("")
	t.Logf("%d requests compared, %d statements sent to chDB", len(paths), len(cur.sent))

	// Copies of some events, not merged and recorded as ingest records
	// them, change no answer on either engine.
	copies := []string{"cityHash64(event_id) % 9 = 0", "cityHash64(event_id) % 27 = 0"}
	chtest.StoreCopies(t, old, db, copies...)
	chtest.StoreCopies(t, cur, db, copies...)
	for path, body := range compare("with copies stored") {
		assert.Equal(t, once[path], body, "GET %s: copies stored change the answer", path)
	}
	// The rollup, engagements and links, built again from the events on
	// each engine, give the same answers.
	for name, conn := range map[string]schema.Conn{"18.16": old, "26.7": cur} {
		_, err := schema.RebuildRollups(ctx, conn, db, "")
		require.NoError(t, err, "rebuild the rollup on %s", name)
	}
	for path, body := range compare("with the rollup rebuilt") {
		assert.Equal(t, once[path], body, "GET %s: the rebuilt rollup changes the answer", path)
	}
	rolled, engaged, linked := 0, 0, 0
	for _, sql := range cur.sent {
		// A stats statement (its parts have a kind) that reads the rollup;
		// the plan's and the checks' reads of its totals are not that.
		if strings.Contains(sql, "AS kind") && strings.Contains(sql, ".stats_rollup WHERE") {
			rolled++
		}
		if strings.Contains(sql, ".engagements WHERE") {
			engaged++
		}
		if strings.Contains(sql, "AS kind") && strings.Contains(sql, ".engagement_links WHERE") {
			linked++
		}
	}
	assert.NotZero(t, rolled, "stats read the rollup")
	assert.NotZero(t, engaged, "distinct counts read engagements")
	assert.NotZero(t, linked, "distinct counts read links")

	// Ingest's own queries, recorded while it consumes for real on 18.16, then
	// sent to both engines.
	scratch := db + "_ingest"
	t.Cleanup(func() { _ = old.Exec(context.Background(), "DROP DATABASE IF EXISTS "+scratch) })
	_, err = schema.Migrate(ctx, old, scratch)
	require.NoError(t, err)
	// The look-up of copies gets the stored events' createdAt values as an
	// external table, at: both engines get a table of that name holding
	// every fixture event's.
	for _, conn := range []chtest.Execer{old, cur} {
		require.NoError(t, conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS default.at (created_at Int64) ENGINE = Memory"))
		require.NoError(t, conn.Exec(ctx, "INSERT INTO default.at SELECT DISTINCT created_at FROM `"+db+"`.events"))
		t.Cleanup(func() { _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS default.at") })
	}
	for _, q := range ingestQueries(t, scratch) {
		// Asked of the shared fixture, which both engines hold.
		q.query = strings.ReplaceAll(q.query, "`"+scratch+"`", "`"+db+"`")
		sql, err := render(q.query, q.args)
		require.NoError(t, err)
		onOld := csvOver18(t, sql)
		onCur, err := cur.run(q.query, q.args)
		require.NoError(t, err, "ingest statement on chDB: %s", sql)
		assert.Equal(t, sortLines(onOld), sortLines(onCur), "ingest statement %s", sql)
	}

	// An event stored before the recipients column (migration 13): both
	// engines compute its recipients from the original event, as ingest
	// would have.
	raw := `{"eventId":"evt_old","type":"send.email.delivered","service":"send","data":{"messageId":"m","to":["Ann <Ann@Example.COM>"," b@B.org "]},"createdAt":1790000000000}`
	for name, conn := range map[string]interface {
		chtest.Execer
		schema.Querier
	}{"18.16": old, "26.7": cur} {
		require.NoError(t, conn.Exec(ctx, "INSERT INTO `"+db+"`.events (event_id, type, service, created_at, raw) SELECT 'evt_old', 'send.email.delivered', 'send', 1790000000000, ?", raw), name)
		rows, err := conn.Query(ctx, "SELECT recipients FROM `"+db+"`.events WHERE event_id = 'evt_old'")
		require.NoError(t, err, name)
		require.True(t, rows.Next(), name)
		var got []string
		require.NoError(t, rows.Scan(&got), name)
		rows.Close()
		assert.Equal(t, []string{"Ann@example.com", "b@b.org"}, got, name)
	}
}

// newVersion is the version chDB reports: its engine is ClickHouse 26.7.
var newVersion = proto.Version{Major: 26, Minor: 7}

var (
	sessionOnce sync.Once
	shared      *chdb.Session
)

// session opens the process's one chDB session (chdb-go keeps one).
func session(t *testing.T) *chdb.Session {
	t.Helper()
	sessionOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hindsight-chdb-")
		require.NoError(t, err)
		shared, err = chdb.NewSession(dir)
		require.NoError(t, err)
	})
	return shared
}

func loadOld(t *testing.T, old driver.Conn, db string, events []schema.Event) {
	t.Helper()
	chtest.InsertEvents(t, old, db, events)
}

func loadCur(t *testing.T, cur *chdbConn, db string, events []schema.Event) {
	t.Helper()
	now := time.Now()
	for start := 0; start < len(events); start += 500 {
		var values []string
		var args []any
		for i := start; i < min(start+500, len(events)); i++ {
			row := chtest.EventRow(events[i], i, now)
			values = append(values, "("+strings.TrimSuffix(strings.Repeat("?, ", len(row)), ", ")+")")
			args = append(args, row...)
		}
		require.NoError(t, cur.Exec(context.Background(), chtest.InsertColumns(db)+" VALUES "+strings.Join(values, ", "), args...))
	}
}

func last(sent []string) string {
	if len(sent) == 0 {
		return "(none)"
	}
	return sent[len(sent)-1]
}

// requests lists every endpoint with every granularity, group_by and
// livemode of every service.
func requests(events []schema.Event) []string {
	from, to := "2026-10-28T05:00:00Z", "2026-11-04T17:30:00Z"
	groups := map[string][]string{
		"send": {"recipient_domain", "sender_domain", "type"}, "telco": {"npa", "type"}, "talk": {"voice", "format", "type"},
		"voip": {"type"}, "transcribe": {"type"}, "platform": {"type"},
	}
	var out []string
	for _, svc := range schema.Services {
		base := "/v1/stats/" + svc + "?from=" + from + "&to=" + to
		for _, lm := range []string{"true", "false", "all"} {
			out = append(out, base+"&livemode="+lm)
		}
		for _, g := range []string{"hour", "day", "week", "month"} {
			for _, tz := range []string{"UTC", "America/New_York"} {
				out = append(out, base+"&granularity="+g+"&tz="+url.QueryEscape(tz))
			}
		}
		for _, gb := range groups[svc] {
			out = append(out, base+"&group_by="+gb, base+"&group_by="+gb+"&granularity=day&limit=2&livemode=all")
		}
	}
	out = append(out,
		"/v1/events?from="+from+"&to="+to+"&limit=50",
		"/v1/events?from="+from+"&to="+to+"&types=send.email.*,voip.call.missed&livemode=all&limit=1000",
		"/v1/events?from="+from+"&to="+to+"&types=telco.*&livemode=false",
		"/v1/events?from="+from+"&to="+to+"&types=platform.test",
		"/v1/events/"+url.PathEscape(events[7].ID),
		"/v1/events/no-such-event",
		"/v1/event-types",
		// Periods compared, stats as CSV, exports.
		"/v1/stats/send?from="+from+"&to="+to+"&compare=previous&granularity=day&group_by=recipient_domain&limit=3",
		"/v1/stats/voip?from="+from+"&to="+to+"&compare=2026-10-01T00:00:00Z,2026-10-28T05:00:00Z",
		"/v1/stats/send?from="+from+"&to="+to+"&format=csv&granularity=day",
		// Ranges inside quarter hours, in a zone a quarter hour off UTC's hours.
		"/v1/stats/send?from=2026-10-28T05:07:31.250Z&to=2026-11-04T17:22:05Z&granularity=hour&tz=Asia%2FKathmandu&group_by=recipient_domain&limit=3&livemode=all",
		"/v1/stats/send?from="+from+"&to="+to+"&granularity=day&recipient_domain=gmail.com,Yahoo.com&group_by=sender_domain",
		"/v1/stats/send?from="+from+"&to="+to+"&granularity=day&sender_domain=do.dev,Mail.do.dev&group_by=recipient_domain&livemode=all",
		"/v1/stats/send?from="+from+"&to="+to+"&bounce_type=hard,soft&group_by=sender_domain",
		"/v1/stats/telco?from=2026-10-29T00:00:00.001Z&to=2026-11-03T23:59:59.999Z&granularity=day&tz=Asia%2FKolkata&group_by=npa&limit=5",
		"/v1/events?from="+from+"&to="+to+"&format=ndjson&livemode=all",
		"/v1/events?from="+from+"&to="+to+"&format=csv&types=send.email.*&recipient_domain=gmail.com",
		"/v1/stats/send?from="+from+"&to="+to+"&livemode=all&recipient="+url.QueryEscape(recipient(events)),
		"/v1/stats/send?from="+from+"&to="+to+"&granularity=day&group_by=sender_domain&recipient="+url.QueryEscape(recipient(events))+",nobody@never.example",
		"/v1/stats/send?from="+from+"&to="+to+"&recipient=nobody@never.example",
		"/v1/stats/send?from="+from+"&to="+to+"&livemode=all&granularity=day&message_id="+url.QueryEscape(messageIDs(events))+",no-such-message",
		"/v1/stats/send?from="+from+"&to="+to+"&message_id=no-such-message",
		"/v1/events?from="+from+"&to="+to+"&livemode=all&recipient="+url.QueryEscape(recipient(events)),
		// Timelines and attempts (see addDeliveries).
		"/v1/events/"+url.PathEscape(events[7].ID)+"?include=deliveries",
		"/v1/messages/no-such-message",
		"/v1/dead-letters?from="+from+"&to="+to+"&limit=2",
	)
	for _, ev := range events {
		if ev.Dims.MessageID != "" {
			out = append(out, "/v1/messages/"+url.PathEscape(ev.Dims.MessageID))
			if len(out) > 250 {
				break
			}
		}
	}
	return out
}

// recipient is the second address of the first email sent to several.
func recipient(events []schema.Event) string {
	for _, ev := range events {
		if len(ev.Dims.Recipients) > 1 {
			return ev.Dims.Recipients[1]
		}
	}
	return "none@example.com"
}

// messageIDs is two messageIds of events, comma-separated.
func messageIDs(events []schema.Event) string {
	var ids []string
	for _, ev := range events {
		if ev.Dims.MessageID != "" && !slices.Contains(ids, ev.Dims.MessageID) {
			if ids = append(ids, ev.Dims.MessageID); len(ids) == 2 {
				break
			}
		}
	}
	return strings.Join(ids, ",")
}

// addDeliveries logs attempts for every twentieth event: one or two each.
func addDeliveries(t *testing.T, conn chtest.Execer, db string, events []schema.Event) {
	t.Helper()
	for i := 0; i < len(events); i += 20 {
		ev := events[i]
		for n := range 1 + i%2 {
			require.NoError(t, conn.Exec(context.Background(), "INSERT INTO `"+db+"`.deliveries (endpoint_id, replay_id, event_id, attempt, status, outcome, latency_ms, error, at) "+
				"SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?", "whep_"+string(rune('a'+i%7)), "rpl_1", ev.ID, uint8(n+1), uint16(200+n*300), []string{"delivered", "failed"}[n%2],
				1.5, "", ev.CreatedAt+int64(n)*1000))
		}
	}
}

// queryAPI mounts query's routes on a host over conn, as cmd does.
func queryAPI(t *testing.T, conn host.Conn, db string, now func() time.Time) *host.Host {
	t.Helper()
	h, err := host.New(host.Config{Database: db, APIKey: apiKey}, conn, nil)
	require.NoError(t, err)
	q, err := query.New(query.Config{Database: db, CursorKey: apiKey, Now: now}, conn, nil)
	require.NoError(t, err)
	q.Register(h.V1())
	return h
}

func call(t *testing.T, api *host.Host, path string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	rec := httptest.NewRecorder()
	api.Handler().ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func chdbColumnType(t *testing.T, c *chdbConn, db, column string) string {
	t.Helper()
	rows, err := c.Query(context.Background(), "SELECT type FROM system.columns WHERE database = ? AND table = 'events' AND name = ?", db, column)
	require.NoError(t, err)
	require.True(t, rows.Next())
	var typ string
	require.NoError(t, rows.Scan(&typ))
	return typ
}

type recorded struct {
	query string
	args  []any
}

// recorder passes an Ingester's statements to ClickHouse and keeps the
// queries.
type recorder struct {
	driver.Conn
	mu      sync.Mutex // ingest queries from its loop and from a batch's tail
	queries []recorded
}

func (r *recorder) Query(ctx context.Context, q string, args ...any) (driver.Rows, error) {
	r.mu.Lock()
	r.queries = append(r.queries, recorded{q, args})
	r.mu.Unlock()
	return r.Conn.Query(ctx, q, args...)
}

// ingestQueries runs ingest over a few records and returns what it queried.
func ingestQueries(t *testing.T, db string) []recorded {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events"), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer cluster.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("events"))
	require.NoError(t, err)
	var recs []*kgo.Record
	for i, raw := range sample.Generate(20, sample.TestdataOptions(9)) {
		recs = append(recs, &kgo.Record{Value: raw, Partition: int32(i % 2)})
	}
	require.NoError(t, cl.ProduceSync(context.Background(), recs...).FirstErr())
	cl.Close()

	rec := &recorder{Conn: chtest.Open(t)}
	// One event is already stored, as another ingest would have stored it,
	// so the look-up finds its copy and reads the copied keys whole.
	var p schema.Parser
	ev, err := p.Parse(recs[0].Value)
	require.NoError(t, err)
	stored, err := rec.PrepareBatch(context.Background(), chtest.InsertColumns(db))
	require.NoError(t, err)
	require.NoError(t, stored.Append(schema.EventRow(&ev, "elsewhere", 0, 0, time.Now().Add(-2*time.Hour))...))
	require.NoError(t, stored.Send())
	in, err := ingest.New(ingest.Config{Brokers: cluster.ListenAddrs(), Database: db, FlushInterval: 50 * time.Millisecond}, rec, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	require.Eventually(t, func() bool { return in.Stats().Flushes > 0 && in.Stats().Consumed == int64(len(recs)) }, 30*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.EqualValues(t, 1, in.Stats().StoredTwice, "the copy was found")
	return rec.queries
}

// csvOver18 runs a rendered statement on the 18.16 server's HTTP interface.
func csvOver18(t *testing.T, sql string) string {
	t.Helper()
	resp, err := http.Post("http://"+chtest.HTTPAddr(t)+"/", "text/plain", strings.NewReader(sql+" FORMAT CSV"))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, "18.16 refused %s: %s", sql, body)
	return string(body)
}

func sortLines(s string) []string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return lines
}
