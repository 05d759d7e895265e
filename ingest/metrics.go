package ingest

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// deadKind is why a record was dead-lettered: the reason label of
// hindsight_ingest_dead_lettered_total.
type deadKind int

const (
	deadInvalid  deadKind = iota // not a valid event
	deadTooLarge                 // over MaxEventBytes
	deadRefused                  // ClickHouse refused its row
	deadKinds
)

var deadKindNames = [deadKinds]string{"invalid", "too_large", "refused"}

// metrics are an Ingester's Prometheus metrics, in a registry of their own
// (Metrics). The counters are read from the Ingester's own at scrape time,
// so the hot path pays for none of them; the insert histogram is observed
// once per insert.
type metrics struct {
	reg           *prometheus.Registry
	insertSeconds prometheus.Histogram
	kafka         *kprom.Metrics // the consumer client's own (franz-go's kprom)

	mu  sync.Mutex
	lag map[int32]int64 // partition → records behind its high watermark
}

func newMetrics(in *Ingester) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		insertSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hindsight_ingest_insert_duration_seconds",
			Help:    "Time ClickHouse took to acknowledge an insert of events.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		lag: map[int32]int64{},
	}
	m.kafka = kprom.NewMetrics("hindsight_kafka", kprom.Registerer(m.reg))
	m.reg.MustRegister(m.insertSeconds, &statsCollector{in: in, m: m})
	return m
}

// observeLag records how far a fetched partition's last record is behind
// its high watermark.
func (m *metrics) observeLag(p kgo.FetchTopicPartition) {
	if n := len(p.Records); n > 0 {
		m.mu.Lock()
		m.lag[p.Partition] = max(p.HighWatermark-p.Records[n-1].Offset-1, 0)
		m.mu.Unlock()
	}
}

// forgetLag drops the partitions this process no longer consumes.
func (m *metrics) forgetLag(partitions []int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range partitions {
		delete(m.lag, p)
	}
}

// Metrics gathers the Ingester's metrics: records and their bytes, rows, duplicates and
// dead letters (by reason), flushes, insert latency, consumer lag per
// partition, and franz-go's client metrics (hindsight_kafka_*).
func (in *Ingester) Metrics() prometheus.Gatherer { return in.metrics.reg }

var (
	consumedDesc = prometheus.NewDesc("hindsight_ingest_records_total", "Records read from Kafka.", nil, nil)
	bytesDesc    = prometheus.NewDesc("hindsight_ingest_bytes_total", "Bytes of the values of the records read from Kafka.", nil, nil)
	insertedDesc = prometheus.NewDesc("hindsight_ingest_rows_inserted_total", "Event rows ClickHouse acknowledged.", nil, nil)
	dupsDesc     = prometheus.NewDesc("hindsight_ingest_duplicates_dropped_total", "Records dropped as already stored.", nil, nil)
	twiceDesc    = prometheus.NewDesc("hindsight_ingest_stored_twice_total", "Keys found stored more than once, recorded so counts read them once.", nil, nil)
	deadDesc     = prometheus.NewDesc("hindsight_ingest_dead_lettered_total", "Records sent to the dead-letter topic, by reason.", []string{"reason"}, nil)
	flushesDesc  = prometheus.NewDesc("hindsight_ingest_flushes_total", "Batches stored and committed.", nil, nil)
	lagDesc      = prometheus.NewDesc("hindsight_ingest_consumer_lag_records", "Records behind the high watermark, per partition this process consumes.", []string{"partition"}, nil)
	runningDesc  = prometheus.NewDesc("hindsight_ingest_up", "1 while ingest consumes.", nil, nil)
)

type statsCollector struct {
	in *Ingester
	m  *metrics
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{consumedDesc, bytesDesc, insertedDesc, dupsDesc, twiceDesc, deadDesc, flushesDesc, lagDesc, runningDesc} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.in.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(consumedDesc, s.Consumed)
	counter(bytesDesc, s.Bytes)
	counter(insertedDesc, s.Inserted)
	counter(dupsDesc, s.Duplicates)
	counter(twiceDesc, s.StoredTwice)
	counter(flushesDesc, s.Flushes)
	for k, name := range deadKindNames {
		counter(deadDesc, c.in.deadBy[k].Load(), name)
	}
	up := 0.0
	if c.in.running.Load() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, up)
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for p, lag := range c.m.lag {
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(lag), strconv.Itoa(int(p)))
	}
}
