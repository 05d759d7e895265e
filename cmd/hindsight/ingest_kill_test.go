package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/sample"
)

// TestIngestKilled SIGKILLs `hindsight ingest` while it drains a backlog,
// twice, at whatever point it has reached: between an insert and its
// commit or anywhere else. The last run must leave every event stored
// exactly once.
func TestIngestKilled(t *testing.T) {
	conn, db := chtest.Database(t)
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events"), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer broker.Close()

	opts := sample.TestdataOptions(33)
	opts.Duplicates = 0.01 // producer retries on top of the crashes
	values := sample.Generate(150_000, opts)
	unique := map[string]bool{}
	for _, v := range values {
		unique[string(v[strings.Index(string(v), `"eventId":"`)+11:][:20])] = true
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker.ListenAddrs()...), kgo.DefaultProduceTopic("events"))
	require.NoError(t, err)
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Value: v}
	}
	require.NoError(t, cl.ProduceSync(context.Background(), recs...).FirstErr())
	cl.Close()

	bin := binary(t)
	start := func() *exec.Cmd {
		// A static member: each restart takes the killed process's place at
		// once instead of waiting out its session.
		cmd := exec.Command(bin, "ingest", "--batch-size", "5000", "--flush-interval", "100ms", "--instance-id", "ingest-0")
		cmd.Env = append(os.Environ(), "HINDSIGHT_KAFKA="+strings.Join(broker.ListenAddrs(), ","),
			"HINDSIGHT_CLICKHOUSE="+chtest.Addr(t), "HINDSIGHT_DATABASE="+db, "HINDSIGHT_LOG_LEVEL=error")
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		return cmd
	}
	count := func() uint64 {
		var n uint64
		if conn.QueryRow(context.Background(), "SELECT count() FROM "+db+".events").Scan(&n) != nil {
			return 0
		}
		return n
	}
	for _, killAt := range []uint64{20_000, 70_000} {
		cmd := start()
		require.Eventually(t, func() bool { return count() >= killAt }, 60*time.Second, 5*time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		t.Logf("killed at %d stored rows", count())
	}
	last := start()
	defer func() {
		_ = last.Process.Signal(os.Interrupt)
		_ = last.Wait()
	}()
	require.Eventually(t, func() bool { return count() >= uint64(len(unique)) }, 120*time.Second, 50*time.Millisecond,
		"want %d events stored", len(unique))
	time.Sleep(500 * time.Millisecond) // anything still to come would be a duplicate
	assert.Equal(t, uint64(len(unique)), count(), "every event once: no loss, no double count")
	var distinct uint64
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT uniqExact(event_id) FROM "+db+".events").Scan(&distinct))
	assert.Equal(t, uint64(len(unique)), distinct, fmt.Sprintf("%d distinct eventIds", len(unique)))
}
