package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/replay/webhook"
	"github.com/dodev/hindsight/schema"
)

// BenchmarkFollowLatency produces 1,000 events/s to the topic for a minute
// (HINDSIGHT_FOLLOW_SECONDS to change it), each stamped with its produce
// time as createdAt, while an ordered follow delivers them to a receiver on
// loopback, and reports the produce-to-delivery p50 and p99. Issue 11's
// target is a p50 of at most 1 s. Run it with `make bench-replay`.
func BenchmarkFollowLatency(b *testing.B) {
	seconds := 60
	if v := os.Getenv("HINDSIGHT_FOLLOW_SECONDS"); v != "" {
		var err error
		seconds, err = strconv.Atoi(v)
		require.NoError(b, err)
	}
	const rate = 1000
	for b.Loop() {
		b.StopTimer()
		conn, db := chtest.Database(b)
		ctx := context.Background()
		_, err := schema.Migrate(ctx, conn, db)
		require.NoError(b, err)
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events"))
		require.NoError(b, err)
		var mu sync.Mutex
		var latencies []time.Duration
		recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			at := time.Now()
			var ev struct{ CreatedAt int64 }
			if json.Unmarshal(body, &ev) == nil {
				mu.Lock()
				latencies = append(latencies, at.Sub(time.UnixMilli(ev.CreatedAt)))
				mu.Unlock()
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		store := NewStore(conn, db)
		secret, _ := webhook.NewSecret()
		ep := Endpoint{ID: newID("whep_"), URL: recv.URL, EnabledEvents: []string{"*"}, Secret: secret, CreatedAt: time.Now()}
		require.NoError(b, store.SaveEndpoint(ctx, ep))
		job := Job{ID: newID("rpl_"), EndpointID: ep.ID, Since: time.Now(), EnabledEvents: []string{"*"}, Livemode: schema.LiveAll,
			Ordered: true, Concurrency: 1, Follow: true, Status: StatusPending, CreatedAt: time.Now()}
		require.NoError(b, store.SaveJob(ctx, job))
		w, err := NewWorker(WorkerConfig{Database: db, Poll: 100 * time.Millisecond,
			Kafka: &KafkaSource{Brokers: cluster.ListenAddrs(), Topic: "events", Group: "hindsight-ingest"}}, conn, webhook.NewSender(webhook.Policy{AllowPrivate: true}, "bench"), slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		require.NoError(b, err)
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = w.Run(wctx) }()
		require.Eventually(b, func() bool {
			j, err := store.Job(ctx, job.ID)
			return err == nil && j.Status == StatusFollowing
		}, 30*time.Second, 10*time.Millisecond)

		cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("events"), kgo.ProducerLinger(0))
		require.NoError(b, err)
		b.StartTimer()
		tick := time.NewTicker(time.Second / 100)
		n := 0
		for n < rate*seconds {
			<-tick.C
			for range rate / 100 {
				v := fmt.Sprintf(`{"eventId":"evt_%d","type":"send.email.sent","service":"send","createdAt":%d,"data":{"messageId":"m-%d","from":"a@do.dev","to":"b@example.com","subject":"s"}}`,
					n, time.Now().UnixMilli(), n)
				cl.Produce(ctx, &kgo.Record{Value: []byte(v)}, func(_ *kgo.Record, err error) { require.NoError(b, err) })
				n++
			}
		}
		tick.Stop()
		require.Eventually(b, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(latencies) >= n
		}, 60*time.Second, 10*time.Millisecond, "delivered fewer than produced")
		b.StopTimer()
		stop()
		<-done
		cl.Close()
		recv.Close()
		cluster.Close()
		slices.Sort(latencies)
		p50, p99 := latencies[len(latencies)/2], latencies[len(latencies)*99/100]
		b.ReportMetric(float64(p50.Milliseconds()), "p50-ms")
		b.ReportMetric(float64(p99.Milliseconds()), "p99-ms")
		b.Logf("%d events at %d/s for %ds: produce-to-delivery p50 %s, p99 %s", n, rate, seconds, p50, p99)
		b.StartTimer()
	}
}
