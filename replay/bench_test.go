package replay

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/schema"
)

// fillEvents inserts n small events (about 120 B each) of October 2026 with
// ClickHouse's numbers().
func fillEvents(b *testing.B, n int) string {
	conn, db := chtest.Database(b)
	ctx := context.Background()
	_, err := schema.Migrate(ctx, conn, db)
	require.NoError(b, err)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	require.NoError(b, conn.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.events (event_id, type, service, created_at, livemode, known,
		message_id, message_hash, recipient_domain, sender_domain, bounce_type, has_carrier, has_inventory, npa, voice, format,
		text_length, duration_sec, raw, kafka_topic, kafka_partition, kafka_offset, ingested_at)
	SELECT concat('evt_', toString(number)), 'send.email.delivered', 'send', %d + number, 1, 1, '', 0, '', '', '', 0, 0, '', '', '',
		0, 0, concat('{"eventId":"evt_', toString(number), '","type":"send.email.delivered","service":"send","data":{"messageId":"m"},"createdAt":', toString(%d + number), '}'),
		'events', 0, number, now()
	FROM system.numbers LIMIT %d`, db, start, start, n)))
	return db
}

// BenchmarkReplay measures deliveries per second to a receiver on loopback
// that answers 204 at once, and the worker's peak heap, for ordered and
// unordered (64 in flight) replays of 100k and 1M events. Run it with
// `make bench-replay`.
func BenchmarkReplay(b *testing.B) {
	for _, tc := range []struct {
		name        string
		n           int
		ordered     bool
		concurrency int
	}{
		{"unordered-64/100k", 100_000, false, 64},
		{"unordered-64/1M", 1_000_000, false, 64},
		{"ordered/100k", 100_000, true, 1},
	} {
		b.Run(tc.name, func(b *testing.B) {
			db := fillEvents(b, tc.n)
			conn := chtest.Open(b)
			var got atomic.Int64
			recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				got.Add(1)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer recv.Close()
			store := NewStore(conn, db)
			secret, _ := NewSecret()
			ep := Endpoint{ID: newID("whep_"), URL: recv.URL + "/hook", EnabledEvents: []string{"*"}, Secret: secret, CreatedAt: time.Now()}
			require.NoError(b, store.SaveEndpoint(context.Background(), ep))
			sender := NewSender(Policy{AllowPrivate: true}, "bench", 256)

			for b.Loop() {
				b.StopTimer()
				got.Store(0)
				job := Job{ID: newID("rpl_"), EndpointID: ep.ID, Since: time.Unix(0, 0), EnabledEvents: []string{"*"}, Livemode: "all",
					Ordered: tc.ordered, Concurrency: tc.concurrency, Status: StatusPending, CreatedAt: time.Now()}
				require.NoError(b, store.SaveJob(context.Background(), job))
				w, err := NewWorker(WorkerConfig{Database: db, Poll: 10 * time.Millisecond}, conn, sender, nil)
				require.NoError(b, err)
				runtime.GC()
				var peak atomic.Uint64
				stopSampling := sampleHeap(&peak)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				b.StartTimer()
				start := time.Now()
				go func() { defer close(done); _ = w.Run(ctx) }()
				for {
					j, err := store.Job(context.Background(), job.ID)
					require.NoError(b, err)
					if j.Done() {
						require.Equal(b, StatusCompleted, j.Status, j.LastError)
						require.EqualValues(b, tc.n, j.Delivered)
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				took := time.Since(start)
				b.StopTimer()
				cancel()
				<-done
				stopSampling()
				b.ReportMetric(float64(tc.n)/took.Seconds(), "deliveries/s")
				b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
				b.Logf("%s: %d deliveries in %s: %.0f/s, peak heap %.0f MiB", tc.name, tc.n, took.Round(time.Millisecond),
					float64(tc.n)/took.Seconds(), float64(peak.Load())/(1<<20))
				b.StartTimer()
			}
		})
	}
}

// sampleHeap records the largest heap in use seen every 20 ms.
func sampleHeap(peak *atomic.Uint64) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-quit:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(quit); <-done }
}

// BenchmarkReplayRetries replays 8,005 events, unordered with 16 in flight,
// to a receiver that answers 200, and to one that answers 500 to the first
// attempt of every tenth event. Retries wait 1 s (±20%) and must not hold a
// delivery slot meanwhile, so the second replay should take about the first's
// time plus one backoff, not a backoff per slot's share of the failures.
func BenchmarkReplayRetries(b *testing.B) {
	const n = 8005
	db := fillEvents(b, n)
	conn := chtest.Open(b)
	store := NewStore(conn, db)
	sender := NewSender(Policy{AllowPrivate: true}, "bench", 256)
	run := func(failEvery int) time.Duration {
		var tried sync.Map
		recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			id := r.Header.Get("webhook-id")
			var num int
			_, _ = fmt.Sscanf(id, "evt_%d", &num)
			if _, again := tried.LoadOrStore(id, true); !again && failEvery > 0 && num%failEvery == 0 {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		defer recv.Close()
		secret, _ := NewSecret()
		ep := Endpoint{ID: newID("whep_"), URL: recv.URL + "/hook", EnabledEvents: []string{"*"}, Secret: secret, CreatedAt: time.Now()}
		require.NoError(b, store.SaveEndpoint(context.Background(), ep))
		job := Job{ID: newID("rpl_"), EndpointID: ep.ID, Since: time.Unix(0, 0), EnabledEvents: []string{"*"}, Livemode: "all",
			Concurrency: 16, Status: StatusPending, CreatedAt: time.Now()}
		require.NoError(b, store.SaveJob(context.Background(), job))
		w, err := NewWorker(WorkerConfig{Database: db, Poll: 10 * time.Millisecond}, conn, sender, nil)
		require.NoError(b, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		start := time.Now()
		go func() { defer close(done); _ = w.Run(ctx) }()
		defer func() { cancel(); <-done }()
		for {
			j, err := store.Job(context.Background(), job.ID)
			require.NoError(b, err)
			if j.Done() {
				require.Equal(b, StatusCompleted, j.Status, j.LastError)
				require.EqualValues(b, n, j.Delivered)
				return time.Since(start)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for b.Loop() {
		clean := run(0)
		failing := run(10)
		b.ReportMetric(clean.Seconds(), "clean-s")
		b.ReportMetric(failing.Seconds(), "failing-s")
		b.Logf("8,005 events, 16 in flight: %.2f s clean, %.2f s with every tenth first attempt failing (+%.2f s; the target is at most +3 s: the first backoff and 2 s)",
			clean.Seconds(), failing.Seconds(), (failing - clean).Seconds())
	}
}

// BenchmarkReplayPages10M times one page (5,000 events of every type) of a
// replay of a month of 10M events (chtest.Fill10M) at its first cursor, in
// the middle and at the last page, each the median of 5 reads: a page's cost
// must not depend on where it is in the range. Run it with
// `make bench-replay`.
func BenchmarkReplayPages10M(b *testing.B) {
	conn, db := chtest.Database(b)
	chtest.Fill10M(b, conn, db)
	patterns, err := schema.ParsePatterns([]string{"*"})
	require.NoError(b, err)
	since := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	until := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	last := time.Date(2026, 10, 30, 23, 26, 0, 0, time.UTC) // about 5,000 events before the last
	ctx := context.Background()
	var cfg WorkerConfig
	cfg.ApplyDefaults()
	read := func(at time.Time) time.Duration {
		job := Job{ID: "bench", Since: since, Until: until, Livemode: "all", CursorAt: at.UnixMilli()}
		var times []time.Duration
		for range 5 {
			t0 := time.Now()
			page, err := readPage(ctx, conn, db, job, patterns, cfg.PageSize, cfg.PageBytes)
			times = append(times, time.Since(t0))
			require.NoError(b, err)
			require.NotEmpty(b, page)
		}
		slices.Sort(times)
		return times[len(times)/2]
	}
	for b.Loop() {
		first, middle, end := read(since), read(since.Add(15*24*time.Hour)), read(last)
		b.ReportMetric(float64(first.Microseconds())/1000, "first-ms")
		b.ReportMetric(float64(middle.Microseconds())/1000, "middle-ms")
		b.ReportMetric(float64(end.Microseconds())/1000, "last-ms")
		b.Logf("a page of a 10M-event replay: first %s, middle %s, last %s (last/first %.2f)",
			first.Round(time.Millisecond), middle.Round(time.Millisecond), end.Round(time.Millisecond), end.Seconds()/first.Seconds())
	}
}
