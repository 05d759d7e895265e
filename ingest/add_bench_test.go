package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/internal/recent"
	"github.com/dodev/hindsight/internal/sample"
)

// BenchmarkAdd measures what ingest spends on each record between Kafka and
// the insert: validation (schema.Parse), the recent-eventId table and the
// batch's columns, over 1M sample records in batches of the default size.
// Each fetched batch's records come in one array, as franz-go makes them.
func BenchmarkAdd(b *testing.B) {
	const n = 1 << 20
	opts := sample.TestdataOptions(7)
	opts.Duplicates, opts.Unknown = 0, 0
	values := sample.Generate(n, opts)
	recs := make([]kgo.Record, len(values))
	for i, v := range values {
		recs[i] = kgo.Record{Topic: "events", Partition: int32(i % 4), Offset: int64(i), Value: v}
	}
	cfg := Config{Brokers: []string{"127.0.0.1:9092"}}
	cfg.ApplyDefaults()
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		in := newAdder(cfg)
		for i := range recs {
			if err := in.add(ctx, &recs[i], now); err != nil {
				b.Fatal(err)
			}
			if i%500 == 499 { // a poll's records
				in.addValid()
			}
			if in.rows.len() >= cfg.BatchSize {
				in.rows.reset()
				clear(in.last)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}

// newAdder is an Ingester that only adds: every partition counts as resumed.
func newAdder(cfg Config) *Ingester {
	in := &Ingester{cfg: cfg, recent: recent.New(cfg.RecentIDs), resumed: map[int32]bool{0: true, 1: true, 2: true, 3: true}}
	in.parser.Shared = true
	in.last = map[int32]*kgo.Record{}
	return in
}
