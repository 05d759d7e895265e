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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/proctest"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/replay"
	"github.com/dodev/hindsight/schema"
)

// TestReplayWorkerKilled SIGKILLs a `hindsight replay-worker` in the middle
// of a job: it neither saves nor releases anything. A second worker takes
// the job once the lease expires and resumes from the saved cursor: no event
// is skipped and at most one page is sent twice.
func TestReplayWorkerKilled(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()
	_, err := schema.Migrate(ctx, conn, db)
	require.NoError(t, err)
	opts := sample.TestdataOptions(21)
	opts.Duplicates = 0
	events, err := sample.Events(1200, opts)
	require.NoError(t, err)
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
	secret, err := replay.NewSecret()
	require.NoError(t, err)
	ep := replay.Endpoint{ID: "whep_kill", URL: recv.URL, EnabledEvents: []string{"*"}, Secret: secret, CreatedAt: time.Now()}
	require.NoError(t, store.SaveEndpoint(ctx, ep))
	job := replay.Job{ID: "rpl_kill", EndpointID: ep.ID, Since: time.Unix(0, 0), EnabledEvents: []string{"*"}, Livemode: "all",
		Ordered: true, Concurrency: 1, Status: replay.StatusPending, CreatedAt: time.Now()}
	require.NoError(t, store.SaveJob(ctx, job))

	bin := binary(t)
	const page = 50
	worker := func() *exec.Cmd {
		cmd := exec.Command(bin, "replay-worker", "--allow-private-endpoints", "--lease-ttl", "2s", "--page-size", "50")
		cmd.Env = append(os.Environ(), "HINDSIGHT_CLICKHOUSE="+chtest.Addr(t), "HINDSIGHT_DATABASE="+db, "HINDSIGHT_LOG_LEVEL=warn")
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		return cmd
	}
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
	repeats := 0
	for _, ev := range events {
		assert.GreaterOrEqual(t, got[ev.ID], 1, "event %s was skipped", ev.ID)
		repeats += max(got[ev.ID]-1, 0)
	}
	t.Logf("%d events, %d sent twice after the kill", len(events), repeats)
	assert.LessOrEqual(t, repeats, page, "at most one page is sent twice")
	j, err := store.Job(ctx, job.ID)
	require.NoError(t, err)
	assert.EqualValues(t, len(events), j.Matched)
}

// TestFollowWorkerKilled SIGKILLs a `hindsight replay-worker --kafka` while
// it follows: a second worker takes the follow once the lease expires and
// goes on from the offsets it saved. No event is skipped, and at most one
// page is sent twice.
func TestFollowWorkerKilled(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()
	_, err := schema.Migrate(ctx, conn, db)
	require.NoError(t, err)
	opts := sample.TestdataOptions(23)
	opts.Duplicates = 0
	events, err := sample.Events(1000, opts)
	require.NoError(t, err)
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
	secret, err := replay.NewSecret()
	require.NoError(t, err)
	ep := replay.Endpoint{ID: "whep_follow", URL: recv.URL, EnabledEvents: []string{"*"}, Secret: secret, CreatedAt: time.Now()}
	require.NoError(t, store.SaveEndpoint(ctx, ep))
	job := replay.Job{ID: "rpl_follow", EndpointID: ep.ID, Since: time.Unix(0, 0), EnabledEvents: []string{"*"}, Livemode: "all",
		Ordered: true, Concurrency: 1, Follow: true, Status: replay.StatusPending, CreatedAt: time.Now()}
	require.NoError(t, store.SaveJob(ctx, job))

	bin := binary(t)
	const page = 50
	worker := func() *exec.Cmd {
		cmd := exec.Command(bin, "replay-worker", "--allow-private-endpoints", "--lease-ttl", "2s", "--page-size", "50",
			"--kafka", strings.Join(broker.ListenAddrs(), ","))
		cmd.Env = append(os.Environ(), "HINDSIGHT_CLICKHOUSE="+chtest.Addr(t), "HINDSIGHT_DATABASE="+db, "HINDSIGHT_LOG_LEVEL=warn")
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		return cmd
	}
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
	repeats := 0
	for _, ev := range events {
		assert.GreaterOrEqual(t, got[ev.ID], 1, "event %s was skipped", ev.ID)
		repeats += max(got[ev.ID]-1, 0)
	}
	t.Logf("%d events, %d delivered when the first worker was killed, %d sent twice after", len(events), atKill, repeats)
	assert.LessOrEqual(t, repeats, page, "at most one page is sent twice")
}
