package replay

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/internal/proctest"
)

// TestFollow: a follow delivers its range from ClickHouse, then each
// matching event ingest reads from Kafka after the offsets ingest had
// committed: a late arrival (createdAt older than events already sent)
// too, a producer's retry once, nothing invalid, out of range or of
// another type. Stopped and run by another worker, it goes on where it
// was, skipping nothing.
func TestFollow(t *testing.T) {
	e := newEnv(t, 300)
	ctx := context.Background()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events"))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("events"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	produce := func(values ...string) {
		t.Helper()
		var recs []*kgo.Record
		for _, v := range values {
			recs = append(recs, &kgo.Record{Value: []byte(v)})
		}
		require.NoError(t, cl.ProduceSync(ctx, recs...).FirstErr())
	}
	// Ingest's history: the stored events were read from the topic, and
	// ingest committed their offsets.
	var stored []string
	for _, ev := range e.events {
		stored = append(stored, string(ev.Raw))
	}
	produce(stored...)
	require.NoError(t, proctest.CommitEnd(brokers, "events", "hindsight-ingest"))

	s := newSink(t)
	ep := e.endpoint(s, "send.*")
	kafka := &KafkaSource{Brokers: brokers, Topic: "events", Group: "hindsight-ingest", MaxEventBytes: 2048}
	_, stop := e.runWorker(WorkerConfig{PageSize: 50, Kafka: kafka})
	var job map[string]any
	require.Equal(t, http.StatusBadRequest, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": since, "until": until, "follow": true}, nil),
		"a follow has no until")
	require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": since, "follow": true}, &job))
	id := job["id"].(string)
	status := func() map[string]any {
		var j map[string]any
		e.call("GET", "/v1/replays/"+id, nil, &j)
		return j
	}
	require.Eventually(t, func() bool { return status()["status"] == StatusFollowing }, 30*time.Second, 20*time.Millisecond)
	rangeIDs := e.want(since, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), "send.*")
	require.NotEmpty(t, rangeIDs)
	assert.Equal(t, rangeIDs, s.got(), "the range first, in order")

	// New events, which ingest has not stored yet.
	event := func(id, typ string, at time.Time) string {
		return fmt.Sprintf(`{"eventId":%q,"type":%q,"service":"send","createdAt":%d,"data":{"messageId":"m-%s","from":"a@do.dev","to":"b@example.com","subject":"s"}}`,
			id, typ, at.UnixMilli(), id)
	}
	now := time.Now()
	produce(
		event("fresh-1", "send.email.sent", now),
		event("late-1", "send.email.sent", since.Add(time.Hour)), // older than what was sent
		`{"eventId":"voip-1","type":"voip.call.missed","service":"voip","createdAt":1790812800000,"data":{"callId":"c","from":"+1","to":"+2"}}`,
		"not json",
		event("fresh-1", "send.email.sent", now), // a producer's retry
		event("before-1", "send.email.sent", since.Add(-time.Hour)),
		strings.Replace(event("big-1", "send.email.sent", now), `"subject":"s"`, `"subject":"`+strings.Repeat("x", 2048)+`"`, 1), // ingest would dead-letter it
	)
	want := append(append([]string{}, rangeIDs...), "fresh-1", "late-1")
	require.Eventually(t, func() bool { return len(s.got()) >= len(want) }, 20*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // room for anything that should not come
	assert.ElementsMatch(t, want, s.got(), "each once; no other type, nothing before since, nothing invalid or too large")
	j := status()
	assert.Equal(t, StatusFollowing, j["status"])
	assert.EqualValues(t, 0, j["lag_seconds"], "caught up")
	assert.EqualValues(t, len(want), j["delivered"])

	// Another worker takes over, and misses nothing produced meanwhile.
	stop()
	produce(event("fresh-2", "send.email.delivered", time.Now()), event("fresh-3", "send.email.opened", since.Add(2*time.Hour)))
	e.worker(WorkerConfig{PageSize: 50, Kafka: kafka})
	want = append(want, "fresh-2", "fresh-3")
	require.Eventually(t, func() bool { return len(s.got()) >= len(want) }, 30*time.Second, 20*time.Millisecond)
	assert.ElementsMatch(t, want, s.got())

	// Its endpoint disabled, it pauses; enabled again, it goes on from its
	// offsets, with what arrived meanwhile.
	require.Equal(t, http.StatusOK, e.call("PATCH", "/v1/endpoints/"+ep, map[string]any{"enabled": false}, nil))
	require.Eventually(t, func() bool { return status()["status"] == StatusPaused }, 10*time.Second, 20*time.Millisecond)
	produce(event("fresh-4", "send.email.sent", time.Now()))
	time.Sleep(300 * time.Millisecond)
	assert.Len(t, s.got(), len(want), "nothing is sent while paused")
	require.Equal(t, http.StatusOK, e.call("PATCH", "/v1/endpoints/"+ep, map[string]any{"enabled": true}, nil))
	want = append(want, "fresh-4")
	require.Eventually(t, func() bool { return len(s.got()) >= len(want) }, 20*time.Second, 20*time.Millisecond)
	assert.ElementsMatch(t, want, s.got())
	assert.Equal(t, StatusFollowing, status()["status"])

	require.Equal(t, http.StatusOK, e.call("POST", "/v1/replays/"+id+"/cancel", nil, nil))
	assert.Equal(t, StatusCancelled, e.waitDone(id)["status"])
}
