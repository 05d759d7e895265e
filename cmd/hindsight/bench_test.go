package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/proctest"
	"github.com/dodev/hindsight/internal/sample"
)

// BenchmarkIngestMemory runs the real `hindsight ingest` binary as a child
// process, so its memory and CPU are its own and not the in-process
// broker's, and drains backlogs of 1M, 3M and 6M events. It reports the
// child's peak RSS (VmHWM), which should not grow with the backlog, and the
// CPU time it spent per event. Run it with `make bench-ingest`.
func BenchmarkIngestMemory(b *testing.B) {
	bin := binary(b)
	for _, backlog := range []int{1_000_000, 3_000_000, 6_000_000} {
		b.Run(fmt.Sprintf("backlog=%d", backlog), func(b *testing.B) {
			opts := sample.TestdataOptions(11)
			opts.Duplicates, opts.Unknown = 0, 0
			values := sample.Generate(backlog, opts)
			for b.Loop() {
				peak, took, cpu := drainWithChild(b, bin, values)
				perEvent := float64(cpu.Microseconds()) / float64(len(values))
				b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
				b.ReportMetric(float64(len(values))/took.Seconds(), "events/s")
				b.ReportMetric(perEvent, "cpu-µs/event")
				b.Logf("backlog %d: peak RSS %d MiB, %.0f events/s, %.2f µs of CPU per event", len(values), peak>>20,
					float64(len(values))/took.Seconds(), perEvent)
			}
		})
	}
}

// BenchmarkIngestMemoryLargeEvents drains 2,000 events just under the
// maximum event size (250 KiB each, 500 MB in all) with default settings:
// the worst case for memory, where batches are bounded by bytes, not rows.
func BenchmarkIngestMemoryLargeEvents(b *testing.B) {
	bin := binary(b)
	pad := strings.Repeat("x", 250<<10)
	values := make([][]byte, 2000)
	for i := range values {
		values[i] = fmt.Appendf(nil, `{"eventId":"large-%d","type":"talk.speech.generated","service":"talk","createdAt":%d,"data":{"voice":"nova","format":"mp3","textLength":1,"speed":1,"text":%q}}`,
			i, time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC).UnixMilli()+int64(i), pad)
	}
	for b.Loop() {
		peak, took, _ := drainWithChild(b, bin, values)
		b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
		b.ReportMetric(float64(len(values))/took.Seconds(), "events/s")
		b.Logf("%d events of %d KiB: peak RSS %d MiB, %.0f events/s", len(values), len(values[0])>>10, peak>>20, float64(len(values))/took.Seconds())
	}
}

// drainWithChild has a child ingest drain values, and returns its peak RSS,
// the time to the last row stored and the CPU time it used until then.
func drainWithChild(b *testing.B, bin string, values [][]byte) (peak int64, took, cpu time.Duration) {
	b.StopTimer()
	defer b.StartTimer()
	conn, db := chtest.Database(b)
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events"), kfake.AllowAutoTopicCreation())
	require.NoError(b, err)
	defer broker.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker.ListenAddrs()...), kgo.DefaultProduceTopic("events"), kgo.ProducerBatchMaxBytes(1<<20))
	require.NoError(b, err)
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Value: v}
	}
	require.NoError(b, cl.ProduceSync(context.Background(), recs...).FirstErr())
	cl.Close()

	cmd := exec.Command(bin, "ingest")
	cmd.Env = append(os.Environ(),
		"HINDSIGHT_KAFKA="+strings.Join(broker.ListenAddrs(), ","),
		"HINDSIGHT_CLICKHOUSE="+chtest.Addr(b),
		"HINDSIGHT_DATABASE="+db,
		"HINDSIGHT_LOG_LEVEL=warn",
	)
	cmd.Stderr = os.Stderr
	start := time.Now()
	require.NoError(b, cmd.Start())
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	var n uint64
	for n < uint64(len(values)) {
		time.Sleep(20 * time.Millisecond)
		if conn.QueryRow(context.Background(), "SELECT count() FROM "+db+".events").Scan(&n) != nil {
			n = 0 // the table may not exist until the child migrated
		}
		rss, err := proctest.PeakRSS(cmd.Process.Pid)
		require.NoError(b, err)
		peak = max(peak, rss)
		require.Less(b, time.Since(start), 5*time.Minute, "ingest did not finish")
	}
	took = time.Since(start)
	cpu, err = proctest.CPUTime(cmd.Process.Pid)
	require.NoError(b, err)
	return peak, took, cpu
}
