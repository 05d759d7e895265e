package ingest

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/sample"
)

// BenchmarkIngest measures events/s from a kfake broker to rows ClickHouse
// acknowledged: a backlog of 1M sample events (about 200 B each) is produced
// first, then one ingester with default settings drains it. It reports
// events/s, the heap in use at the end, and the bytes allocated per event
// and the GCs while draining (the in-process broker's included). Run it
// with `make bench-ingest`.
func BenchmarkIngest(b *testing.B) {
	const n = 1_000_000
	opts := sample.TestdataOptions(7)
	opts.Duplicates, opts.Unknown = 0, 0
	values := sample.Generate(n, opts)

	for b.Loop() {
		b.StopTimer()
		f := newFixture(b)
		f.produce(values...)
		cfg := f.config()
		cfg.FlushInterval = 0 // the default
		cfg.ApplyDefaults()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()

		start := time.Now()
		in, stop := f.run(cfg, testHooks{})
		for in.Stats().Inserted < int64(len(values)) {
			time.Sleep(5 * time.Millisecond)
		}
		took := time.Since(start)

		b.StopTimer()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		require.NoError(b, stop())
		var stored uint64
		require.NoError(b, f.conn.QueryRow(context.Background(), "SELECT count() FROM "+f.db+".events").Scan(&stored))
		require.Equal(b, uint64(len(values)), stored)
		b.ReportMetric(float64(len(values))/took.Seconds(), "events/s")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
		allocated := float64(ms.TotalAlloc-before.TotalAlloc) / float64(len(values))
		b.ReportMetric(allocated, "alloc-B/event")
		b.ReportMetric(float64(ms.NumGC-before.NumGC), "GCs")
		b.Logf("%d events in %s: %.0f events/s, heap in use %.0f MiB, %.0f B allocated per event (the broker's included), %d GCs",
			len(values), took.Round(time.Millisecond), float64(len(values))/took.Seconds(), float64(ms.HeapInuse)/(1<<20),
			allocated, ms.NumGC-before.NumGC)
		b.StartTimer()
	}
}
