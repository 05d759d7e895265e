//go:build faults

package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/internal/sample"
)

// The stream's range for the API's counts: October 2026, the sample's month.
const from, to = "2026-10-01T00:00:00Z", "2026-11-02T00:00:00Z"

// TestCrashLoop SIGKILLs `hindsight ingest`, started with its default flags,
// every 1.5 to 4 s for two minutes while producers send a stream with
// producer retries and invalid records, and stops ClickHouse for 20 s in
// the middle. A last process then has to store everything within the
// session timeout plus a rebalance.
func TestCrashLoop(t *testing.T) {
	r := newRig(t, 4)
	r.stream = sample.NewStream(135_000, streamOptions(1, 0.02))
	produced := r.produceInBackground(r.stream.Values, 2_000, 600*time.Millisecond) // about 45 s
	rng := rand.New(rand.NewPCG(5, 5))
	start := time.Now()
	outage := false
	kills := 0
	loop := 2 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("HINDSIGHT_FAULTS_LOOP")); err == nil {
		loop = d // shorter, to look into a failure
	}
	for time.Since(start) < loop {
		p := r.start("ingest")
		time.Sleep(jitter(rng, 1500*time.Millisecond, 4*time.Second))
		kill(p, syscall.SIGKILL)
		kills++
		if !outage && time.Since(start) > loop*2/5 {
			outage = true
			go clickHouseOutage(t, 20*time.Second)
		}
	}
	<-produced
	before := r.stored()
	last := time.Now()
	r.start("ingest")
	// The dead members hold their partitions until the group expires them:
	// one session timeout (45 s, the broker's consumer-group default), then
	// one rebalance (20 s, ingest's default) at most.
	require.Eventually(t, func() bool { return r.stored() > before }, 65*time.Second, 100*time.Millisecond,
		"the last ingest process stored nothing within a session timeout and a rebalance")
	resumed := time.Since(last)
	took, ok := r.waitStored(3 * time.Minute)
	require.True(t, ok, "the last ingest process stored %d of %d within %s of the last kill", r.distinct(), len(r.stream.Valid), took)
	r.check("crash loop", fmt.Sprintf("`hindsight ingest` (default flags) SIGKILLed %d times in %s, 1.5-4 s apart; ClickHouse down for 20 s in the middle; 2%% producer retries; the last process resumed after %.1f s", kills, loop, resumed.Seconds()),
		time.Since(last), from, to)
}

// TestClickHouseOutage stops ClickHouse for 20 s under a steady stream.
func TestClickHouseOutage(t *testing.T) {
	r := newRig(t, 4)
	r.stream = sample.NewStream(60_000, streamOptions(2, 0.02))
	r.start("ingest")
	go func() {
		time.Sleep(3 * time.Second)
		clickHouseOutage(t, 20*time.Second)
	}()
	require.NoError(t, r.produce(r.stream.Values, 1_000, 400*time.Millisecond)) // about 25 s, across the outage
	took, ok := r.waitStored(2 * time.Minute)
	require.True(t, ok, "stored %d of %d", r.distinct(), len(r.stream.Valid))
	r.check("ClickHouse outage", "ClickHouse stopped for 20 s while a stream was produced", took, from, to)
}

// TestTopicRecreated deletes and recreates the topic under a running ingest
// process: offsets start again at 0, below those already stored.
func TestTopicRecreated(t *testing.T) {
	r := newRig(t, 4)
	r.stream = sample.NewStream(20_000, streamOptions(3, 0.02))
	half := len(r.stream.Values) / 2
	r.start("ingest")
	require.NoError(t, r.produce(r.stream.Values[:half], 1_000, 0))
	require.Eventually(t, func() bool { return r.stored() > half*9/10 }, time.Minute, 100*time.Millisecond)
	time.Sleep(2 * time.Second)

	cl, err := kgo.NewClient(kgo.SeedBrokers(r.broker.ListenAddrs()...))
	require.NoError(t, err)
	adm := kadm.NewClient(cl)
	_, err = adm.DeleteTopic(context.Background(), "events")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := adm.CreateTopic(context.Background(), 4, 1, nil, "events")
		return err == nil || strings.Contains(err.Error(), "TOPIC_ALREADY_EXISTS")
	}, 10*time.Second, 50*time.Millisecond)
	cl.Close()
	recreated := time.Now()
	require.NoError(t, r.produce(r.stream.Values[half:], 1_000, 0))
	_, ok := r.waitStored(2 * time.Minute)
	require.True(t, ok, "stored %d of %d", r.distinct(), len(r.stream.Valid))
	r.check("topic recreated", "topic deleted and recreated under a running ingest; the second half produced to the new topic",
		time.Since(recreated), from, to)
}

// TestBackfill ingests ten years of months in one go.
func TestBackfill(t *testing.T) {
	r := newRig(t, 4)
	opts := streamOptions(4, 0.02)
	opts.Start = time.Date(2016, 10, 1, 0, 0, 0, 0, time.UTC)
	opts.Span = 10 * 365 * 24 * time.Hour
	r.stream = sample.NewStream(60_000, opts)
	r.start("ingest")
	require.NoError(t, r.produce(r.stream.Values, 10_000, 0))
	took, ok := r.waitStored(2 * time.Minute)
	require.True(t, ok, "stored %d of %d", r.distinct(), len(r.stream.Valid))
	require.Equal(t, 120, r.count("SELECT uniqExact(toYYYYMM(toDateTime(intDiv(created_at, 1000), 'UTC'))) FROM "+r.db+".events"))
	r.check("ten-year backfill", "60k events over 120 months, produced at once", took, "2016-10-01T00:00:00Z", "2026-10-01T00:00:00Z")
}

// TestOversizedInvalidRecord sends a 1 MB invalid record amid valid ones.
func TestOversizedInvalidRecord(t *testing.T) {
	r := newRig(t, 1)
	r.stream = sample.NewStream(10_000, streamOptions(5, 0.02))
	huge := []byte(`{"eventId":"huge","type":"send.email.sent","service":"send","data":{"pad":"` + strings.Repeat("x", 1_040_000) + `"}}`)
	half := len(r.stream.Values) / 2
	values := append(append(append([][]byte{}, r.stream.Values[:half]...), huge), r.stream.Values[half:]...)
	r.stream.Values = values
	r.stream.Invalid[string(huge)] = true
	r.start("ingest")
	require.NoError(t, r.produce(values, 500, 0))
	took, ok := r.waitStored(2 * time.Minute)
	require.True(t, ok, "stored %d of %d", r.distinct(), len(r.stream.Valid))
	r.check("1 MB invalid record", fmt.Sprintf("a %d-byte invalid record in the middle of a stream", len(huge)), took, from, to)
}

// TestRebalanceStorm runs three ingest processes that keep joining and
// leaving (SIGTERM, then a new one) while a stream is produced.
func TestRebalanceStorm(t *testing.T) {
	r := newRig(t, 4)
	r.stream = sample.NewStream(100_000, streamOptions(6, 0.02))
	produced := r.produceInBackground(r.stream.Values, 2_000, 500*time.Millisecond)
	rng := rand.New(rand.NewPCG(6, 6))
	procs := []*exec.Cmd{r.start("ingest"), r.start("ingest"), r.start("ingest")}
	moves := 0
	for done := false; !done; {
		select {
		case <-produced:
			done = true
		case <-time.After(jitter(rng, time.Second, 3*time.Second)):
			i := rng.IntN(len(procs))
			kill(procs[i], syscall.SIGTERM)
			procs[i] = r.start("ingest")
			moves++
		}
	}
	end := time.Now()
	_, ok := r.waitStored(2 * time.Minute)
	require.True(t, ok, "stored %d of %d", r.distinct(), len(r.stream.Valid))
	r.check("rebalance storm", fmt.Sprintf("three ingest processes, one replaced by SIGTERM and a new start %d times", moves), time.Since(end), from, to)
}
