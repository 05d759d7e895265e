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
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/bareloop"
	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/replay/webhook"
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
			r := newReplayRig(b, tc.n)
			for b.Loop() {
				took, peak := r.replay(b, tc.ordered, tc.concurrency)
				b.ReportMetric(float64(tc.n)/took.Seconds(), "deliveries/s")
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
				b.Logf("%s: %d deliveries in %s: %.0f/s, peak heap %.0f MiB", tc.name, tc.n, took.Round(time.Millisecond),
					float64(tc.n)/took.Seconds(), float64(peak)/(1<<20))
			}
		})
	}
}

// BenchmarkReplayVsBareLoop replays 100k events unordered with 64 in flight,
// and sends the same 100k stored bodies to the same receiver from a bare
// net/http loop of 64 goroutines (no reading, signing or delivery log), in
// turns, and reports replay's rate as a ratio of the loop's.
func BenchmarkReplayVsBareLoop(b *testing.B) {
	const n, concurrency = 100_000, 64
	r := newReplayRig(b, n)
	bodies := r.bodies(b)
	for b.Loop() {
		cpu0 := cpuTime()
		bare := r.bareLoop(b, bodies, concurrency)
		cpu1 := cpuTime()
		took, _ := r.replay(b, false, concurrency)
		cpu2 := cpuTime()
		b.ReportMetric(float64(n)/took.Seconds(), "deliveries/s")
		b.ReportMetric(float64(n)/bare.Seconds(), "bare-loop-bodies/s")
		b.ReportMetric(bare.Seconds()/took.Seconds(), "ratio")
		b.Logf("replay %.0f/s (%.1f µs CPU each, receiver included), bare loop %.0f/s (%.1f µs): %.2f×",
			float64(n)/took.Seconds(), float64((cpu2-cpu1).Microseconds())/n,
			float64(n)/bare.Seconds(), float64((cpu1-cpu0).Microseconds())/n, bare.Seconds()/took.Seconds())
	}
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// replayRig is n stored events, an endpoint and a receiver that counts.
type replayRig struct {
	n      int
	db     string
	conn   driver.Conn
	store  *Store
	ep     Endpoint
	sender *webhook.Sender
	recv   *httptest.Server
	got    atomic.Int64
}

func newReplayRig(b *testing.B, n int) *replayRig {
	r := &replayRig{n: n, db: fillEvents(b, n), conn: chtest.Open(b)}
	r.recv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(r.recv.Close)
	r.store = NewStore(r.conn, r.db)
	secret, _ := webhook.NewSecret()
	r.ep = Endpoint{ID: newID("whep_"), URL: r.recv.URL + "/hook", EnabledEvents: []string{"*"}, Secret: secret, CreatedAt: time.Now()}
	require.NoError(b, r.store.SaveEndpoint(context.Background(), r.ep))
	r.sender = webhook.NewSender(webhook.Policy{AllowPrivate: true}, "bench")
	return r
}

// replay runs one job over every event and returns how long it took from
// its start to its completion, and the peak heap meanwhile. Only that span
// is timed.
func (r *replayRig) replay(b *testing.B, ordered bool, concurrency int) (time.Duration, uint64) {
	b.StopTimer()
	defer b.StartTimer()
	r.got.Store(0)
	job := Job{ID: newID("rpl_"), EndpointID: r.ep.ID, Since: time.Unix(0, 0), EnabledEvents: []string{"*"}, Livemode: "all",
		Ordered: ordered, Concurrency: concurrency, Status: StatusPending, CreatedAt: time.Now()}
	require.NoError(b, r.store.SaveJob(context.Background(), job))
	w, err := NewWorker(WorkerConfig{Database: r.db, Poll: 100 * time.Millisecond}, r.conn, r.sender, nil)
	require.NoError(b, err)
	runtime.GC()
	var peak atomic.Uint64
	stopSampling := sampleHeap(&peak)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.StartTimer()
	start := time.Now()
	go func() { defer close(done); _ = w.Run(ctx) }()
	// A read of the job costs ClickHouse about 4 ms of CPU: it is read
	// once a second until the receiver has every event, then every 20 ms.
	var read time.Time
	for {
		if received := r.got.Load() >= int64(r.n); received || time.Since(read) >= time.Second {
			read = time.Now()
			j, err := r.store.Job(context.Background(), job.ID)
			require.NoError(b, err)
			if j.Done() {
				require.Equal(b, StatusCompleted, j.Status, j.LastError)
				require.EqualValues(b, r.n, j.Delivered)
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	stopSampling()
	return took, peak.Load()
}

// bodies reads every stored event's bytes, as the bare loop sends them.
func (r *replayRig) bodies(b *testing.B) [][]byte {
	rows, err := r.conn.Query(context.Background(), "SELECT raw FROM `"+r.db+"`.events ORDER BY created_at")
	require.NoError(b, err)
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var raw string
		require.NoError(b, rows.Scan(&raw))
		out = append(out, []byte(raw))
	}
	require.NoError(b, rows.Err())
	require.Len(b, out, r.n)
	return out
}

// bareLoop posts every body to the receiver from concurrency goroutines
// (bareloop.Post) and returns how long that took.
func (r *replayRig) bareLoop(b *testing.B, bodies [][]byte, concurrency int) time.Duration {
	b.StopTimer()
	defer b.StartTimer()
	r.got.Store(0)
	b.StartTimer()
	took, err := bareloop.Post(context.Background(), r.recv.URL+"/hook", bodies, concurrency)
	b.StopTimer()
	require.NoError(b, err)
	require.EqualValues(b, len(bodies), r.got.Load())
	return took
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
	sender := webhook.NewSender(webhook.Policy{AllowPrivate: true}, "bench")
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
		secret, _ := webhook.NewSecret()
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

// BenchmarkReplayPages10M times one page (the default size: 20,000 events
// of every type) of a replay of a month of 10M events (chtest.Fill10M) at
// its first cursor, in the middle and at the last page, each the median of
// 5 reads: a page's cost must not depend on where it is in the range. Run
// it with `make bench-replay`.
func BenchmarkReplayPages10M(b *testing.B) {
	conn, db := chtest.Database(b)
	chtest.Fill10M(b, db)
	patterns, err := schema.ParsePatterns([]string{"*"})
	require.NoError(b, err)
	since := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	until := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	last := time.Date(2026, 10, 30, 22, 34, 0, 0, time.UTC) // about 20,000 events before the last, 10M over 30 days
	ctx := context.Background()
	var cfg WorkerConfig
	cfg.ApplyDefaults()
	read := func(at time.Time) time.Duration {
		job := Job{ID: "bench", Since: since, Until: until, Livemode: "all", CursorAt: at.UnixMilli()}
		var times []time.Duration
		for range 5 {
			t0 := time.Now()
			page, err := readPage(ctx, conn, db, job, patterns, cfg.PageSize, cfg.PageBytes, schema.FirstPageWindow)
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
