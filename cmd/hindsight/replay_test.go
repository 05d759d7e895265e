package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/proctest"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/replay"
	"github.com/dodev/hindsight/replay/webhook"
	"github.com/dodev/hindsight/schema"
)

// TestReplayWorkerKilled SIGKILLs a `hindsight replay-worker` in the middle
// of a job: it neither saves nor releases anything. A second worker takes
// the job once the lease expires and resumes from the saved cursor: no event
// is skipped and at most one page is sent twice.
func TestReplayWorkerKilled(t *testing.T) {
	conn, db, events := killSample(t, 21, 1200)
	ctx := context.Background()
	chtest.InsertEvents(t, conn, db, events)

	var mu sync.Mutex
	got := map[string]int{}
	total := 0
	firstKill := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		total++
		if total == 300 {
			close(firstKill)
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()

	store := replay.NewStore(conn, db)
	secret, err := webhook.NewSecret()
	require.NoError(t, err)
	ep := replay.Endpoint{ID: "whep_kill", URL: recv.URL, EnabledEvents: []string{"*"}, Secret: secret, CreatedAt: time.Now()}
	require.NoError(t, store.SaveEndpoint(ctx, ep))
	job := replay.Job{ID: "rpl_kill", EndpointID: ep.ID, Since: time.Unix(0, 0), EnabledEvents: []string{"*"}, Livemode: "all",
		Ordered: true, Concurrency: 1, Status: replay.StatusPending, CreatedAt: time.Now()}
	require.NoError(t, store.SaveJob(ctx, job))

	bin := binary(t)
	const page = 50
	worker := func() *exec.Cmd { return startWorker(t, bin, db) }
	first := worker()
	select {
	case <-firstKill:
	case <-time.After(60 * time.Second):
		t.Fatal("the first worker delivered nothing")
	}
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()

	second := worker()
	defer func() {
		_ = second.Process.Signal(os.Interrupt)
		_ = second.Wait()
	}()
	require.Eventually(t, func() bool {
		j, err := store.Job(ctx, job.ID)
		return err == nil && j.Status == replay.StatusCompleted
	}, 90*time.Second, 100*time.Millisecond, "the second worker did not finish the job")

	mu.Lock()
	defer mu.Unlock()
	repeats := noneSkipped(t, events, got, page)
	t.Logf("%d events, %d sent twice after the kill", len(events), repeats)
	j, err := store.Job(ctx, job.ID)
	require.NoError(t, err)
	assert.EqualValues(t, len(events), j.Matched)
}

// TestFollowWorkerKilled SIGKILLs a `hindsight replay-worker --kafka` while
// it follows: a second worker takes the follow once the lease expires and
// goes on from the offsets it saved. No event is skipped, and at most one
// page is sent twice.
func TestFollowWorkerKilled(t *testing.T) {
	conn, db, events := killSample(t, 23, 1000)
	ctx := context.Background()
	stored, fresh := events[:200], events[200:]
	chtest.InsertEvents(t, conn, db, stored)

	// Ingest's history: the stored events read from the topic, their
	// offsets committed.
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events"))
	require.NoError(t, err)
	defer broker.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker.ListenAddrs()...), kgo.DefaultProduceTopic("events"))
	require.NoError(t, err)
	defer cl.Close()
	produce := func(evs []schema.Event) {
		var recs []*kgo.Record
		for _, ev := range evs {
			recs = append(recs, &kgo.Record{Value: ev.Raw})
		}
		require.NoError(t, cl.ProduceSync(ctx, recs...).FirstErr())
	}
	produce(stored)
	require.NoError(t, proctest.CommitEnd(broker.ListenAddrs(), "events", "hindsight-ingest"))

	var mu sync.Mutex
	got := map[string]int{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(2 * time.Millisecond) // so the kill lands while events remain
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	received := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	store := replay.NewStore(conn, db)
	secret, err := webhook.NewSecret()
	require.NoError(t, err)
	ep := replay.Endpoint{ID: "whep_follow", URL: recv.URL, EnabledEvents: []string{"*"}, Secret: secret, CreatedAt: time.Now()}
	require.NoError(t, store.SaveEndpoint(ctx, ep))
	job := replay.Job{ID: "rpl_follow", EndpointID: ep.ID, Since: time.Unix(0, 0), EnabledEvents: []string{"*"}, Livemode: "all",
		Ordered: true, Concurrency: 1, Follow: true, Status: replay.StatusPending, CreatedAt: time.Now()}
	require.NoError(t, store.SaveJob(ctx, job))

	bin := binary(t)
	const page = 50
	worker := func() *exec.Cmd { return startWorker(t, bin, db, "--kafka", strings.Join(broker.ListenAddrs(), ",")) }
	first := worker()
	require.Eventually(t, func() bool {
		j, err := store.Job(ctx, job.ID)
		return err == nil && j.Status == replay.StatusFollowing
	}, 60*time.Second, 50*time.Millisecond, "the follow did not finish its range")
	assert.Equal(t, len(stored), received(), "the range")

	// New events while it follows; killed in the middle of them.
	go produce(fresh)
	require.Eventually(t, func() bool { return received() >= len(stored)+200 }, 60*time.Second, 10*time.Millisecond)
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()
	atKill := received()
	require.Less(t, atKill, len(events), "killed before the end")

	second := worker()
	defer func() {
		_ = second.Process.Signal(os.Interrupt)
		_ = second.Wait()
	}()
	require.Eventually(t, func() bool { return received() == len(events) }, 90*time.Second, 100*time.Millisecond,
		"the second worker did not deliver every event")

	mu.Lock()
	defer mu.Unlock()
	repeats := noneSkipped(t, events, got, page)
	t.Logf("%d events, %d delivered when the first worker was killed, %d sent twice after", len(events), atKill, repeats)
}

// killSample is a migrated database and n sample events (none stored yet)
// for the kill tests.
func killSample(t *testing.T, seed uint64, n int) (driver.Conn, string, []schema.Event) {
	t.Helper()
	conn, db := chtest.MigratedDatabase(t)
	opts := sample.TestdataOptions(seed)
	opts.Duplicates = 0
	events, err := sample.Events(n, opts)
	require.NoError(t, err)
	return conn, db, events
}

// startWorker starts `hindsight replay-worker` on db with a 2 s lease and
// pages of 50, and args.
func startWorker(t *testing.T, bin, db string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"replay-worker", "--allow-private-endpoints", "--lease-ttl", "2s", "--page-size", "50"}, args...)...)
	cmd.Env = append(os.Environ(), "HINDSIGHT_CLICKHOUSE="+chtest.Addr(t), "HINDSIGHT_DATABASE="+db, "HINDSIGHT_LOG_LEVEL=warn")
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	return cmd
}

// noneSkipped checks every event was delivered and at most one page of them
// twice, and returns how many were sent twice.
func noneSkipped(t *testing.T, events []schema.Event, got map[string]int, page int) int {
	t.Helper()
	repeats := 0
	for _, ev := range events {
		assert.GreaterOrEqual(t, got[ev.ID], 1, "event %s was skipped", ev.ID)
		repeats += max(got[ev.ID]-1, 0)
	}
	assert.LessOrEqual(t, repeats, page, "at most one page is sent twice")
	return repeats
}

// TestAPIAnnouncesReplaysToWorkers: `hindsight api --kafka` and `hindsight
// replay-worker --kafka` in two processes, the worker polling hourly. Each
// replay created through the API is delivered at once: the API announced
// it on the wake topic.
func TestAPIAnnouncesReplaysToWorkers(t *testing.T) {
	conn, db, events := killSample(t, 25, 200)
	chtest.InsertEvents(t, conn, db, events)
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, replay.DefaultWakeTopic))
	require.NoError(t, err)
	defer broker.Close()
	kafka := strings.Join(broker.ListenAddrs(), ",")

	var mu sync.Mutex
	got := map[string]int{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()

	bin := binary(t)
	worker := startWorker(t, bin, db, "--kafka", kafka, "--poll", "1h")
	defer func() {
		_ = worker.Process.Signal(os.Interrupt)
		_ = worker.Wait()
	}()
	const key = "announce-test-key-0123456789"
	base := apiProcess(t, bin, append(os.Environ(), "HINDSIGHT_CLICKHOUSE="+chtest.Addr(t), "HINDSIGHT_DATABASE="+db, "HINDSIGHT_API_KEY="+key,
		"HINDSIGHT_LOG_LEVEL=warn"), os.Stderr, "--allow-private-endpoints", "--kafka", kafka)
	call := func(method, path, body string) map[string]any {
		t.Helper()
		code, out := apiCall(t, base, method, path, key, body)
		require.Less(t, code, 300, "%s %s: %v", method, path, out)
		return out
	}
	ep := call("POST", "/v1/endpoints", `{"url":"`+recv.URL+`","enabled_events":["*"]}`)
	for round := 1; round <= 2; round++ {
		job := call("POST", "/v1/replays", `{"endpoint_id":"`+ep["id"].(string)+`","since":"2020-01-01T00:00:00Z","livemode":"all","ordered":false}`)
		require.Eventually(t, func() bool {
			return call("GET", "/v1/replays/"+job["id"].(string), "")["status"] == replay.StatusCompleted
		}, 20*time.Second, 50*time.Millisecond, "replay %d did not end: the worker polls hourly, so only an announcement starts it", round)
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, got, len(events))
	for id, n := range got {
		assert.Equal(t, 2, n, "event %s: once per replay", id)
	}
}
