//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dodev/hindsight/internal/apitest"
	"github.com/dodev/hindsight/internal/chlocal"
	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/proctest"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/internal/webhooktest"
	"github.com/dodev/hindsight/schema"
)

const (
	clusterName = "hindsight"
	apiKey      = "cluster-key-0123456789abcdef"
	// The sample's month, for the API's ranges.
	from, to = "2026-10-01T00:00:00Z", "2026-11-02T00:00:00Z"
)

// The suite's cluster, the single server beside it, and the binary.
var (
	cl      *chlocal.Cluster
	single  *chlocal.Server
	binPath string
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "hindsight-cluster-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if binPath, err = proctest.Build(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if cl, err = chlocal.StartCluster(ctx, filepath.Join(dir, "cluster"), clusterName, 2, 2, nil); err != nil {
			fmt.Fprintln(os.Stderr, "the cluster suite needs ZooKeeper and ClickHouse:", err)
			return 1
		}
		defer cl.Stop()
		if single, err = chlocal.Start(ctx, filepath.Join(dir, "single"), nil); err != nil {
			fmt.Fprintln(os.Stderr, "the cluster suite needs ClickHouse:", err)
			return 1
		}
		defer single.Stop()
		return m.Run()
	}()
	os.Exit(code)
}

func open(t testing.TB, addr string) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 5 * time.Second, ReadTimeout: time.Minute})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// replica is the server of shard s, replica r (from 0).
func replica(s, r int) *chlocal.Server { return cl.Shards[s][r] }

func count(t testing.TB, conn driver.Conn, q string, args ...any) uint64 {
	t.Helper()
	var n uint64
	require.NoError(t, conn.QueryRow(context.Background(), q, args...).Scan(&n), q)
	return n
}

// TestShardOfMatchesDistributed inserts eventIds through the cluster's
// Distributed events table, synchronously, and finds each on the shard
// schema.ShardOf names: ingest's routing is ClickHouse's.
func TestShardOfMatchesDistributed(t *testing.T) {
	conn := open(t, replica(0, 0).Addr)
	ctx := context.Background()
	db := fmt.Sprintf("route_%d", os.Getpid())
	_, err := schema.MigrateCluster(ctx, conn, db, clusterName)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+clusterName) })
	shards, err := schema.ClusterShards(ctx, conn, clusterName)
	require.NoError(t, err)
	require.Len(t, shards, 2)
	for _, s := range shards {
		require.Len(t, s.Replicas, 2)
	}
	slots := schema.Slots(shards)

	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	require.NoError(t, conn.Exec(ctx, "INSERT INTO "+db+".events (event_id, type, service, created_at) "+
		"SELECT concat('evt_', toString(number)), 'send.email.sent', 'send', 1790812800000 + number FROM system.numbers LIMIT 2000"))
	for s := range 2 {
		ids, misplaced := shardIDs(t, s, db, slots)
		assert.Empty(t, misplaced, "shard %d holds only the eventIds ShardOf gives it", s+1)
		assert.Greater(t, len(ids), 500, "shard %d holds a share", s+1)
	}
}

// shardIDs returns the distinct eventIds shard s's first replica holds,
// once it has every part its shard was sent, and those of them ShardOf
// puts on another shard.
func shardIDs(t *testing.T, s int, db string, slots []int) (ids, misplaced []string) {
	t.Helper()
	conn := open(t, replica(s, 0).Addr)
	ctx := context.Background()
	require.NoError(t, conn.Exec(ctx, "SYSTEM SYNC REPLICA "+db+".events_local"))
	rows, err := conn.Query(ctx, "SELECT DISTINCT event_id FROM "+db+".events_local")
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
		if schema.ShardOf(id, slots) != s {
			misplaced = append(misplaced, id)
		}
	}
	require.NoError(t, rows.Err())
	return ids, misplaced
}

// world is one test's broker, database and processes.
type world struct {
	t      testing.TB
	broker *kfake.Cluster
	db     string
	procs  []*exec.Cmd
}

func newWorld(t testing.TB) *world {
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events", "single"), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	t.Cleanup(broker.Close)
	w := &world{t: t, broker: broker, db: fmt.Sprintf("cluster_%d", os.Getpid())}
	t.Cleanup(func() { w.stop(0) })
	return w
}

// stop stops the world's processes from the from-th started on, and waits
// for them.
func (w *world) stop(from int) {
	for _, p := range w.procs[from:] {
		if p.ProcessState == nil {
			_ = p.Process.Signal(syscall.SIGTERM)
			_ = p.Wait()
		}
	}
}

// start runs `hindsight role` with the world's broker and database, and
// on the cluster through the servers listed when cluster is true.
func (w *world) start(role string, cluster bool, servers []string, args ...string) {
	w.t.Helper()
	env := []string{"HINDSIGHT_KAFKA=" + strings.Join(w.broker.ListenAddrs(), ","), "HINDSIGHT_CLICKHOUSE=" + strings.Join(servers, ","),
		"HINDSIGHT_DATABASE=" + w.db, "HINDSIGHT_LOG_LEVEL=warn", "HINDSIGHT_API_KEY=" + apiKey}
	if cluster {
		env = append(env, "HINDSIGHT_CLUSTER="+clusterName)
	}
	dir := os.Getenv("HINDSIGHT_CLUSTER_LOGS") // keep the processes' logs there
	if dir == "" {
		dir = w.t.TempDir()
	}
	cmd := proctest.Start(w.t, binPath, filepath.Join(dir, fmt.Sprintf("%s-%s-%d.log", w.db, role, len(w.procs))), env,
		append([]string{role}, args...)...)
	w.procs = append(w.procs, cmd)
}

// api starts `hindsight api` and returns its base URL once it answers.
func (w *world) api(cluster bool, servers ...string) string {
	w.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(w.t, err)
	addr := ln.Addr().String()
	ln.Close()
	w.start("api", cluster, servers, "--http", addr, "--allow-private-endpoints")
	base := "http://" + addr
	require.Eventually(w.t, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, time.Minute, 100*time.Millisecond)
	return base
}

func (w *world) produce(topic string, values [][]byte, chunk int, pause time.Duration) error {
	return proctest.Produce(w.broker.ListenAddrs(), topic, values, chunk, pause)
}

// TestIngestQueryReplay runs the cluster's promise end to end: two ingest
// processes on a four-partition topic, with producer retries and invalid
// records, while one replica of each shard is stopped and started again,
// then a whole shard (produceWithOutages);
// a single server ingests the same stream. Then the API on each answers
// the same, and a replay through the cluster, shared by two workers on
// different servers, delivers every matching event once.
func TestIngestQueryReplay(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	stream := sample.NewStream(30_000, func() sample.Options {
		o := sample.TestdataOptions(11)
		o.Duplicates = 0.02
		o.Unknown = 0
		return o
	}())
	t.Logf("stream: %d records, %d unique valid eventIds, %d invalid", len(stream.Values), len(stream.Valid), len(stream.Invalid))

	// Migrate once before the processes start, as the README says to.
	seed := open(t, replica(0, 0).Addr)
	_, err := schema.MigrateCluster(ctx, seed, w.db, clusterName)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = seed.Exec(context.Background(), "DROP DATABASE IF EXISTS "+w.db+" ON CLUSTER "+clusterName)
	})

	// Each ingest process starts on a different server, and writes each
	// shard through its first replica that answers.
	w.start("ingest", true, []string{replica(0, 0).Addr, replica(1, 1).Addr})
	w.start("ingest", true, []string{replica(1, 1).Addr, replica(0, 1).Addr})
	w.start("ingest", false, []string{single.Addr}, "--topic", "single")

	produced := make(chan error, 2)
	go func() { produced <- w.produce("single", stream.Values, 1000, 0) }()
	go func() { produced <- produceWithOutages(w, stream.Values) }()
	require.NoError(t, <-produced)
	require.NoError(t, <-produced)

	want := uint64(len(stream.Valid))
	singleConn := open(t, single.Addr)
	require.Eventually(t, func() bool {
		var n uint64
		return singleConn.QueryRow(ctx, "SELECT uniqExact(event_id) FROM "+w.db+".events").Scan(&n) == nil && n == want
	}, 3*time.Minute, 200*time.Millisecond, "the single server stores every valid eventId")
	reader := open(t, replica(1, 1).Addr)
	require.Eventually(t, func() bool {
		var n uint64
		return reader.QueryRow(ctx, "SELECT uniqExact(event_id) FROM "+w.db+".events").Scan(&n) == nil && n == want
	}, 3*time.Minute, 200*time.Millisecond, "the cluster stores every valid eventId")

	t.Run("every invalid record dead-lettered", func(t *testing.T) {
		dlq, err := proctest.TopicValues(w.broker.ListenAddrs(), "events.dlq")
		require.NoError(t, err)
		for v := range stream.Invalid {
			assert.True(t, dlq[v], "%q on events.dlq", v)
		}
	})

	t.Run("stored once, on its shard, on every replica", func(t *testing.T) {
		shards, err := schema.ClusterShards(ctx, reader, clusterName)
		require.NoError(t, err)
		slots := schema.Slots(shards)
		seen := map[string]int{}
		for s := range 2 {
			var sums [2]string
			for r := range 2 {
				conn := open(t, replica(s, r).Addr)
				require.NoError(t, conn.Exec(ctx, "SYSTEM SYNC REPLICA "+w.db+".events_local"))
				require.NoError(t, conn.QueryRow(ctx, "SELECT concat(toString(count()), '/', toString(sum(cityHash64(event_id)))) FROM "+
					w.db+".events_local").Scan(&sums[r]))
				assert.Equal(t, count(t, conn, "SELECT uniqExact(event_id) FROM "+w.db+".events_local"),
					count(t, conn, "SELECT count() FROM "+w.db+".events_local FINAL"), "shard %d replica %d: one row per eventId once merged", s+1, r+1)
			}
			assert.Equal(t, sums[0], sums[1], "shard %d: both replicas hold the same rows (count/hash sum)", s+1)
			ids, misplaced := shardIDs(t, s, w.db, slots)
			assert.Empty(t, misplaced, "shard %d holds only the eventIds its hash picks", s+1)
			assert.Greater(t, len(ids), len(stream.Valid)/4, "shard %d holds a share", s+1)
			for _, id := range ids {
				seen[id]++
			}
		}
		lost, twice := 0, 0
		for id := range stream.Valid {
			switch seen[id] {
			case 0:
				lost++
			case 1:
			default:
				twice++
			}
		}
		assert.Zero(t, lost, "valid eventIds lost")
		assert.Zero(t, twice, "eventIds on both shards")
		assert.Len(t, seen, len(stream.Valid), "nothing but valid eventIds stored")
	})

	clusterAPI := w.api(true, replica(0, 1).Addr, replica(1, 0).Addr)
	singleAPI := w.api(false, single.Addr)

	t.Run("the API answers as on one server", func(t *testing.T) {
		paths := []string{"/v1/event-types?from=" + from + "&to=" + to,
			"/v1/stats/send?from=" + from + "&to=" + to + "&livemode=all&group_by=recipient_domain&limit=3",
			"/v1/events?from=" + from + "&to=" + to + "&limit=100&types=send.email.*",
		}
		for _, svc := range []string{"send", "telco", "talk", "voip", "transcribe", "platform"} {
			paths = append(paths, "/v1/stats/"+svc+"?from="+from+"&to="+to+"&livemode=all&granularity=day&tz=America/New_York")
		}
		n := 0
		for id := range stream.Valid {
			if n++; n > 5 {
				break
			}
			paths = append(paths, "/v1/events/"+id, "/v1/events/"+id+"?include=deliveries")
		}
		// Timelines: a message's events are on both shards.
		var page struct {
			Data []struct {
				Data struct {
					MessageID string
					To        any
				}
			}
		}
		require.Equal(t, http.StatusOK, get(t, singleAPI+"/v1/events?from="+from+"&to="+to+"&limit=5&types=send.email.*", &page))
		require.NotEmpty(t, page.Data)
		for _, ev := range page.Data {
			paths = append(paths, "/v1/messages/"+ev.Data.MessageID)
			if addr, ok := ev.Data.To.(string); ok {
				paths = append(paths, "/v1/stats/send?from="+from+"&to="+to+"&livemode=all&recipient="+url.QueryEscape(addr))
			}
		}
		for _, p := range paths {
			var a, b any
			assert.Equal(t, http.StatusOK, get(t, clusterAPI+p, &a), p)
			assert.Equal(t, http.StatusOK, get(t, singleAPI+p, &b), p)
			assert.Equal(t, b, a, "%s: the cluster answers as the single server", p)
		}
		var stats struct{ Totals struct{ Events int } }
		total := 0
		for _, svc := range []string{"send", "telco", "talk", "voip", "transcribe", "platform"} {
			get(t, clusterAPI+"/v1/stats/"+svc+"?from="+from+"&to="+to+"&livemode=all", &stats)
			total += stats.Totals.Events
		}
		assert.Equal(t, len(stream.Valid), total, "the cluster counts every eventId once")
	})

	t.Run("a replay through the cluster delivers each matching event once", func(t *testing.T) {
		for _, servers := range [][]string{{replica(0, 0).Addr}, {replica(1, 1).Addr}} {
			w.start("replay-worker", true, servers, "--allow-private-endpoints")
		}
		wantIDs := map[string]bool{}
		for id, svc := range stream.Valid {
			if svc == "send" {
				wantIDs[id] = true
			}
		}
		recv := webhooktest.New(t)
		var ep struct{ ID, Secret string }
		require.Equal(t, http.StatusCreated, post(t, clusterAPI+"/v1/endpoints", map[string]any{"url": recv.URL + "/hook", "enabled_events": []string{"send.*"}}, &ep))
		recv.SetSecret(ep.Secret)
		var job struct{ ID string }
		require.Equal(t, http.StatusAccepted, post(t, clusterAPI+"/v1/replays", map[string]any{"endpoint_id": ep.ID, "since": from,
			"until": to, "ordered": false, "concurrency": 16}, &job))
		var state struct {
			Status                     string
			Matched, Delivered, Failed int
		}
		require.Eventually(t, func() bool {
			get(t, clusterAPI+"/v1/replays/"+job.ID, &state)
			return state.Status == "completed" || state.Status == "failed" || state.Status == "cancelled"
		}, 3*time.Minute, 200*time.Millisecond, "replay %s: %+v", job.ID, state)
		assert.Equal(t, "completed", state.Status)
		assert.Equal(t, len(wantIDs), state.Matched)
		assert.Equal(t, len(wantIDs), state.Delivered)
		assert.Zero(t, recv.Bad(), "every delivery verified with the Standard Webhooks reference library")
		got := recv.Counts()
		assert.Len(t, got, len(wantIDs), "every matching eventId delivered")
		for id, n := range got {
			assert.True(t, wantIDs[id], "%s matches send.*", id)
			assert.Equal(t, 1, n, "%s delivered once", id)
		}
	})

	t.Run("retention drops the old months on every replica of every shard", func(t *testing.T) {
		// The stream is October 2026's, with journeys running into
		// November: a retention reaching back to 15 November drops October,
		// over by then, and keeps November, whatever today is.
		november := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
		keep := time.Since(time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC)).Truncate(time.Hour)
		w.start("ingest", true, []string{replica(0, 1).Addr}, "--events-retention", keep.String())
		for s := range 2 {
			for r := range 2 {
				conn := open(t, replica(s, r).Addr)
				var events, ids uint64
				assert.Eventually(t, func() bool {
					events = count(t, conn, "SELECT count() FROM "+w.db+".events_local WHERE created_at < ?", november)
					ids = count(t, conn, "SELECT count() FROM "+w.db+".event_ids_local WHERE created_at < ?", november)
					return events == 0 && ids == 0
				}, 2*time.Minute, 200*time.Millisecond, "shard %d replica %d keeps no October rows", s+1, r+1)
				assert.Zero(t, events, "shard %d replica %d: October events", s+1, r+1)
				assert.Zero(t, ids, "shard %d replica %d: October event_ids", s+1, r+1)
				assert.NotZero(t, count(t, conn, "SELECT count() FROM "+w.db+".events_local WHERE created_at >= ?", november),
					"shard %d replica %d keeps November, not over yet", s+1, r+1)
			}
		}
	})
}

// produceWithOutages produces values to the cluster's topic in thirds: the
// first with every server up; the second with the first replica of each
// shard (the one both shards' pools write to) stopped; the last with the
// whole second shard stopped, which ingest must wait out. Every server is
// up again when it returns.
func produceWithOutages(w *world, values [][]byte) error {
	third := len(values) / 3
	restart := func(servers ...*chlocal.Server) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, s := range servers {
			if err := s.StartAgain(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	if err := w.produce("events", values[:third], 500, 100*time.Millisecond); err != nil {
		return err
	}
	replica(0, 0).Stop()
	replica(1, 0).Stop()
	if err := w.produce("events", values[third:2*third], 500, 100*time.Millisecond); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	if err := restart(replica(0, 0), replica(1, 0)); err != nil {
		return err
	}
	replica(1, 0).Stop()
	replica(1, 1).Stop()
	if err := w.produce("events", values[2*third:], 500, 100*time.Millisecond); err != nil {
		return err
	}
	time.Sleep(5 * time.Second)
	return restart(replica(1, 0), replica(1, 1))
}

func get(t testing.TB, url string, into any) int {
	t.Helper()
	return apitest.Get(t, url, apiKey, into)
}

func post(t testing.TB, url string, body, into any) int {
	t.Helper()
	return apitest.Do(t, http.MethodPost, url, apiKey, body, into)
}

// TestMoveToCluster follows the README's steps to move a single server's
// database to the cluster: migrate the cluster, copy every table with
// INSERT … SELECT FROM remote(), and find the same events, each on the
// shard its hash picks, the lookup by eventId working, and the endpoints
// there.
func TestMoveToCluster(t *testing.T) {
	ctx := context.Background()
	db := fmt.Sprintf("move_%d", os.Getpid())
	old := open(t, single.Addr)
	_, err := schema.Migrate(ctx, old, db)
	require.NoError(t, err)
	t.Cleanup(func() { _ = old.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) })
	events, err := sample.Events(5000, sample.TestdataOptions(5))
	require.NoError(t, err)
	chtest.InsertEvents(t, old, db, events)
	require.NoError(t, old.Exec(ctx, "INSERT INTO "+db+".endpoints (id, url, enabled_events, version) SELECT 'whep_1', 'https://example.com/hook', ['send.*'], 1"))

	conn := open(t, replica(1, 1).Addr)
	_, err = schema.MigrateCluster(ctx, conn, db, clusterName)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+clusterName) })
	copyCtx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	for _, table := range []string{"events", "endpoints", "replays", "replay_cancels", "deliveries", "api_keys", "api_key_uses", "event_dups", "dead_letters"} {
		require.NoError(t, conn.Exec(copyCtx, fmt.Sprintf("INSERT INTO %s.%s SELECT * FROM remote('%s', %s.%s)", db, table, single.Addr, db, table)), table)
	}

	assert.EqualValues(t, len(events), count(t, conn, "SELECT count() FROM "+db+".events"))
	assert.EqualValues(t, len(events), count(t, conn, "SELECT sum(events) FROM "+db+".stats_rollup"), "the copy fed the rollup on each shard")
	_, err = schema.RebuildRollups(ctx, conn, db, clusterName)
	require.NoError(t, err)
	for _, s := range cl.Shards {
		for _, r := range s {
			require.NoError(t, open(t, r.Addr).Exec(ctx, "SYSTEM SYNC REPLICA "+db+".stats_rollup_local"))
		}
	}
	assert.EqualValues(t, len(events), count(t, conn, "SELECT sum(events) FROM "+db+".stats_rollup"), "the rollup rebuilt on the cluster")
	unchecked, err := schema.CheckRollup(ctx, conn, db, 0, math.MaxInt64)
	require.NoError(t, err)
	assert.Zero(t, unchecked, "the rebuilt rollup counts what the events hold")
	shards, err := schema.ClusterShards(ctx, conn, clusterName)
	require.NoError(t, err)
	for s := range 2 {
		ids, misplaced := shardIDs(t, s, db, schema.Slots(shards))
		assert.Empty(t, misplaced, "shard %d", s+1)
		assert.NotEmpty(t, ids, "shard %d", s+1)
	}
	for _, ev := range events[:20] {
		raw, ok, err := schema.ReadEvent(ctx, conn, db, ev.ID)
		require.NoError(t, err)
		assert.True(t, ok, "%s found through event_ids", ev.ID)
		assert.JSONEq(t, string(ev.Raw), string(raw), ev.ID)
	}
	other := open(t, replica(0, 0).Addr)
	require.NoError(t, other.Exec(ctx, "SYSTEM SYNC REPLICA "+db+".endpoints"))
	assert.EqualValues(t, 1, count(t, other, "SELECT count() FROM "+db+".endpoints FINAL"), "endpoints on every server")
}
