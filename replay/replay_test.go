package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/gin-gonic/gin"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/keys"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/replay/webhook"
	"github.com/dodev/hindsight/schema"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

// env is a migrated database with sample events, the replay API on an HTTP
// server, and a sender that may reach loopback receivers.
type env struct {
	t      *testing.T
	conn   driver.Conn
	db     string
	events []schema.Event
	api    *httptest.Server
	sender *webhook.Sender
	routes *API      // the API behind api
	notify *Notifier // what workers notify; nil none
}

// testKey is the bootstrap key the tests' API takes: every scope.
const testKey = "replay-test-key-0123456789"

func newEnv(t *testing.T, n int) *env {
	t.Helper()
	conn, db := chtest.MigratedDatabase(t)
	opts := sample.TestdataOptions(3)
	opts.Duplicates = 0
	events, err := sample.Events(n, opts)
	require.NoError(t, err)
	chtest.InsertEvents(t, conn, db, events)
	sender := webhook.NewSender(webhook.Policy{AllowPrivate: true}, "test")
	gin.SetMode(gin.ReleaseMode)
	g := gin.New()
	routes := NewAPI(db, conn, sender, testKey, nil)
	routes.Register(g.Group("/v1", keys.NewChecker(keys.NewStore(conn, db), testKey, nil).Authenticate))
	api := httptest.NewServer(g)
	t.Cleanup(api.Close)
	return &env{t: t, conn: conn, db: db, events: events, api: api, sender: sender, routes: routes}
}

func (e *env) call(method, path string, body any, into any) int {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(e.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.api.URL+path, rd)
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if into != nil {
		require.NoError(e.t, json.Unmarshal(raw, into), string(raw))
	}
	return resp.StatusCode
}

// worker runs a replay worker until the test ends or stop is called.
func (e *env) worker(cfg WorkerConfig) (stop func()) {
	_, stop = e.runWorker(cfg)
	return stop
}

// runWorker is worker, with the worker.
func (e *env) runWorker(cfg WorkerConfig) (_ *Worker, stop func()) {
	cfg.Database = e.db
	if cfg.Poll == 0 {
		cfg.Poll = 50 * time.Millisecond
	}
	w, err := NewWorker(cfg, e.conn, e.sender, nil)
	require.NoError(e.t, err)
	w.NotifyTo(e.notify)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return w, stop
}

// sink is a webhook receiver that verifies signatures with the reference
// library and records what it got.
type sink struct {
	mu     sync.Mutex
	ids    []string
	bodies map[string][]byte
	bad    int
	fn     func(id string) int // status to answer; nil is 200
	secret atomic.Pointer[string]
	srv    *httptest.Server
}

func newSink(t *testing.T) *sink {
	s := &sink{bodies: map[string][]byte{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get("webhook-id")
		if sec := s.secret.Load(); sec != nil {
			wh, _ := standardwebhooks.NewWebhook(*sec)
			if wh.Verify(body, r.Header) != nil || r.Header.Get("Hindsight-Replay-Id") == "" {
				s.mu.Lock()
				s.bad++
				s.mu.Unlock()
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		status := http.StatusOK
		if s.fn != nil {
			status = s.fn(id)
		}
		if status < 300 {
			s.mu.Lock()
			s.ids = append(s.ids, id)
			s.bodies[id] = body
			s.mu.Unlock()
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...)
}

func (e *env) endpoint(s *sink, events ...string) string {
	e.t.Helper()
	if len(events) == 0 {
		events = []string{"*"}
	}
	var ep map[string]any
	require.Equal(e.t, http.StatusCreated, e.call("POST", "/v1/endpoints", map[string]any{"url": s.srv.URL + "/hook", "enabled_events": events}, &ep))
	secret := ep["secret"].(string)
	s.secret.Store(&secret)
	return ep["id"].(string)
}

// endpointRetrying creates an endpoint of every event type for s that
// retries after each wait of schedule (seconds) and returns its id.
func (e *env) endpointRetrying(s *sink, schedule ...int) string {
	e.t.Helper()
	var ep map[string]any
	require.Equal(e.t, http.StatusCreated, e.call("POST", "/v1/endpoints", map[string]any{"url": s.srv.URL + "/hook",
		"enabled_events": []string{"*"}, "retry_schedule": schedule}, &ep))
	secret := ep["secret"].(string)
	s.secret.Store(&secret)
	return ep["id"].(string)
}

// want lists, in (createdAt, eventId) order, the events a replay of
// [since, until) with these patterns must send.
func (e *env) want(since, until time.Time, patterns ...string) []string {
	ps, err := schema.ParsePatterns(patterns)
	require.NoError(e.t, err)
	var evs []schema.Event
	for _, ev := range e.events {
		match := false
		for _, p := range ps {
			match = match || p.Match(ev.Type)
		}
		if match && ev.CreatedAt >= since.UnixMilli() && ev.CreatedAt < until.UnixMilli() {
			evs = append(evs, ev)
		}
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].CreatedAt != evs[j].CreatedAt {
			return evs[i].CreatedAt < evs[j].CreatedAt
		}
		return evs[i].ID < evs[j].ID
	})
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	return ids
}

func (e *env) waitDone(id string) map[string]any {
	e.t.Helper()
	var job map[string]any
	require.Eventually(e.t, func() bool {
		e.call("GET", "/v1/replays/"+id, nil, &job)
		s := job["status"]
		return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
	}, 60*time.Second, 20*time.Millisecond, "replay %s did not end", id)
	return job
}

var (
	since = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	until = time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC)
)

func TestOrderedReplayDeliversEachEventOnceInOrder(t *testing.T) {
	e := newEnv(t, 1500)
	s := newSink(t)
	ep := e.endpoint(s, "send.email.*", "voip.call.missed")
	e.worker(WorkerConfig{PageSize: 100})

	var dry map[string]any
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": since.Format(time.RFC3339),
		"until": until.UnixMilli(), "dry_run": true}, &dry))
	want := e.want(since, until, "send.email.*", "voip.call.missed")
	require.NotEmpty(t, want)
	assert.EqualValues(t, len(want), dry["matched"])
	assert.Empty(t, s.got(), "a dry run sends nothing")

	var job map[string]any
	require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": since.Format(time.RFC3339),
		"until": until.UnixMilli()}, &job))
	assert.Equal(t, StatusPending, job["status"])
	job = e.waitDone(job["id"].(string))
	assert.Equal(t, StatusCompleted, job["status"], job)
	assert.EqualValues(t, len(want), job["matched"])
	assert.EqualValues(t, len(want), job["delivered"])
	assert.EqualValues(t, 1, job["progress"])
	assert.Equal(t, want, s.got(), "every matching event once, in (createdAt, eventId) order")
	assert.Zero(t, s.bad, "every signature verified")
	for _, ev := range e.events {
		if b, ok := s.bodies[ev.ID]; ok {
			require.Equal(t, string(ev.Raw), string(b), "the body is the original record")
		}
	}
}

// TestCreatedReplayWakesWorker: a worker that looks for jobs once an hour
// still starts each replay the API beside it creates, woken by it. The
// first replay may be found by the worker's look at its start; the second
// comes after that.
func TestCreatedReplayWakesWorker(t *testing.T) {
	e := newEnv(t, 100)
	s := newSink(t)
	ep := e.endpoint(s)
	w, _ := e.runWorker(WorkerConfig{Poll: time.Hour})
	e.routes.OnCreate(func(string) { w.Wake() })
	e.replayTwice(ep, s)
}

// replayTwice creates two replays of every event to ep, one after the
// other, and requires each to complete and s to have got every event
// twice. It waits for each as long as waitDone does: with a worker that
// polls hourly, only a wake starts them in time.
func (e *env) replayTwice(ep string, s *sink) {
	e.t.Helper()
	for range 2 {
		var job map[string]any
		require.Equal(e.t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": since.Format(time.RFC3339),
			"until": until.UnixMilli(), "ordered": false}, &job))
		job = e.waitDone(job["id"].(string))
		assert.Equal(e.t, StatusCompleted, job["status"], job)
	}
	assert.Len(e.t, s.got(), 2*len(e.want(since, until, "*")))
}

// TestRateLimitPacesDeliveries: a replay's rate_limit spaces its deliveries
// (a burst of one), so n of them take at least (n-1)/rate; each event is
// still delivered once, in order.
func TestRateLimitPacesDeliveries(t *testing.T) {
	e := newEnv(t, 300)
	s := newSink(t)
	ep := e.endpoint(s)
	e.worker(WorkerConfig{})
	want := e.want(since, until, "*")
	require.Greater(t, len(want), 100)
	rate := float64(len(want)) / 2 // about 2 s of deliveries
	var job map[string]any
	start := time.Now()
	require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": since.Format(time.RFC3339),
		"until": until.UnixMilli(), "rate_limit": rate}, &job))
	job = e.waitDone(job["id"].(string))
	took := time.Since(start)
	assert.Equal(t, StatusCompleted, job["status"], job)
	assert.Equal(t, want, s.got())
	assert.GreaterOrEqual(t, took, time.Duration(float64(len(want)-1)/rate*float64(time.Second)), "%d deliveries at %.0f/s", len(want), rate)
}

// TestPageSize: PageSize, or a minute of deliveries at the lower of the
// job's and the endpoint's rate limits if fewer, at least one.
func TestPageSize(t *testing.T) {
	w := &Worker{cfg: WorkerConfig{PageSize: 20_000}}
	for _, tc := range []struct {
		name    string
		job, ep float64
		want    int
	}{
		{"no limit", 0, 0, 20_000},
		{"the job's", 10, 0, 600},
		{"the endpoint's", 0, 2, 120},
		{"the endpoint's, lower", 10, 2, 120},
		{"the job's, lower", 10, 50, 600},
		{"slower than one a minute", 0.001, 0, 1},
		{"faster than a page a minute", 10_000, 0, 20_000},
	} {
		assert.Equal(t, tc.want, w.pageSize(Job{RateLimit: tc.job}, Endpoint{RateLimit: tc.ep}), tc.name)
	}
}

// TestReplayCopiesOnce stores more copies of some events, not merged: the
// dry run and the job count each event once, and each is sent once.
func TestReplayCopiesOnce(t *testing.T) {
	e := newEnv(t, 600)
	chtest.StoreCopies(t, e.conn, e.db, "cityHash64(event_id) % 5 = 0", "cityHash64(event_id) % 10 = 0")
	s := newSink(t)
	ep := e.endpoint(s)
	e.worker(WorkerConfig{PageSize: 50})
	want := e.want(since, until, "*")

	var dry map[string]any
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": since.UnixMilli(),
		"until": until.UnixMilli(), "dry_run": true}, &dry))
	assert.EqualValues(t, len(want), dry["matched"])
	var perType float64
	for _, n := range dry["by_type"].(map[string]any) {
		perType += n.(float64)
	}
	assert.EqualValues(t, len(want), perType)

	var job map[string]any
	require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": since.UnixMilli(),
		"until": until.UnixMilli()}, &job))
	job = e.waitDone(job["id"].(string))
	assert.EqualValues(t, len(want), job["matched"])
	assert.EqualValues(t, len(want), job["delivered"])
	assert.Equal(t, want, s.got())
}

func TestUnorderedReplayWithFailuresAndRetries(t *testing.T) {
	e := newEnv(t, 600)
	s := newSink(t)
	var tries sync.Map
	s.fn = func(id string) int {
		n, _ := tries.LoadOrStore(id, new(atomic.Int64))
		c := n.(*atomic.Int64).Add(1)
		switch {
		case strings.HasSuffix(id, "7"):
			return http.StatusGone // fails at once
		case strings.HasSuffix(id, "3") && c == 1:
			return http.StatusServiceUnavailable // retried, then delivered
		}
		return http.StatusOK
	}
	ep := e.endpoint(s)
	e.worker(WorkerConfig{PageSize: 50})
	var job map[string]any
	require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": since.UnixMilli(),
		"until": until.Format(time.RFC3339), "ordered": false, "concurrency": 16}, &job))
	job = e.waitDone(job["id"].(string))
	want := e.want(since, until, "*")
	var failing, retried int
	for _, id := range want {
		switch {
		case strings.HasSuffix(id, "7"):
			failing++
		case strings.HasSuffix(id, "3"):
			retried++
		}
	}
	require.NotZero(t, failing)
	require.NotZero(t, retried)
	assert.Equal(t, StatusCompleted, job["status"])
	assert.EqualValues(t, len(want)-failing, job["delivered"])
	assert.EqualValues(t, failing, job["failed"])
	assert.EqualValues(t, len(want)+retried, job["attempts"], "one attempt each, two for the retried")
	got := s.got()
	sort.Strings(got)
	var wantOK []string
	for _, id := range want {
		if !strings.HasSuffix(id, "7") {
			wantOK = append(wantOK, id)
		}
	}
	sort.Strings(wantOK)
	assert.Equal(t, wantOK, got, "each deliverable event once")
	assert.Contains(t, job["last_error"], "HTTP 410")

	var stats map[string]any
	require.Equal(t, http.StatusOK, e.call("GET", "/v1/stats/deliveries?endpoint_id="+ep+"&granularity=day", nil, &stats))
	totals := stats["totals"].(map[string]any)
	assert.EqualValues(t, len(want)+retried, totals["attempts"])
	assert.EqualValues(t, len(want)-failing, totals["delivered"])
	assert.EqualValues(t, failing, totals["failed"])
	assert.Equal(t, "delivered / attempts", totals["success_rate"].(map[string]any)["formula"])
	assert.NotNil(t, totals["latency_ms"].(map[string]any)["p95"])
	assert.NotEmpty(t, stats["series"])
}

// TestKillAndResume stops a worker in the middle of a job, as a crash
// would, and starts another: every event arrives, none is skipped, and at
// most one page is sent twice.
func TestKillAndResume(t *testing.T) {
	e := newEnv(t, 800)
	s := newSink(t)
	var served atomic.Int64
	gate := make(chan struct{})
	s.fn = func(string) int {
		if served.Add(1) == 250 {
			close(gate)
		}
		return http.StatusOK
	}
	ep := e.endpoint(s)
	const page = 40
	stop := e.worker(WorkerConfig{PageSize: page, LeaseTTL: 2 * time.Second})
	var job map[string]any
	require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": since.UnixMilli(),
		"until": until.UnixMilli()}, &job))
	<-gate
	stop()
	sent := len(s.got())
	want := e.want(since, until, "*")
	require.Less(t, sent, len(want), "stopped mid-job")

	e.worker(WorkerConfig{PageSize: page, LeaseTTL: 2 * time.Second})
	job = e.waitDone(job["id"].(string))
	assert.Equal(t, StatusCompleted, job["status"])
	got := s.got()
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	for _, id := range want {
		assert.GreaterOrEqual(t, seen[id], 1, "event %s was skipped", id)
	}
	assert.LessOrEqual(t, len(got)-len(want), page, "repeats at the resume point: at most one page")
}

// TestKillWhileRetriesWait stops a worker while every event of an
// unordered replay of several pages waits for its retry, as a crash would:
// no page was settled, so none may be counted or passed over. Another
// worker then delivers every event, and the counters end at what matched.
func TestKillWhileRetriesWait(t *testing.T) {
	e := newEnv(t, 400)
	s := newSink(t)
	var mu sync.Mutex
	tried, retried := map[string]bool{}, 0
	s.fn = func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		if !tried[id] {
			tried[id] = true
			return http.StatusServiceUnavailable
		}
		retried++
		return http.StatusOK
	}
	ep := e.endpointRetrying(s, 3)
	want := e.want(since, until, "*")
	page := (len(want) + 3) / 4
	stop := e.worker(WorkerConfig{PageSize: page})
	var job map[string]any
	require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": since.UnixMilli(),
		"until": until.UnixMilli(), "ordered": false, "concurrency": 8}, &job))
	id := job["id"].(string)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(tried) == len(want)
	}, 10*time.Second, 5*time.Millisecond, "every event attempted once")
	stop()
	mu.Lock()
	require.Zero(t, retried, "stopped while the retries wait")
	mu.Unlock()

	store := NewStore(e.conn, e.db)
	stopped, err := store.Job(context.Background(), id)
	require.NoError(t, err)
	assert.Zero(t, stopped.Delivered+stopped.Failed, "no page settled")
	assert.Empty(t, stopped.CursorID, "the cursor stays before every page in flight")

	e.worker(WorkerConfig{PageSize: page})
	job = e.waitDone(id)
	assert.Equal(t, StatusCompleted, job["status"])
	assert.EqualValues(t, len(want), job["matched"])
	assert.EqualValues(t, len(want), job["delivered"], "each event counted once")
	assert.EqualValues(t, 0, job["failed"])
	got := s.got()
	sort.Strings(got)
	sorted := slices.Clone(want)
	sort.Strings(sorted)
	assert.Equal(t, sorted, slices.Compact(got), "every event delivered")
}

// TestPagesWaitForAnEarlierRetry: while the first event of an unordered
// replay waits 3 s for its retry, the pages after its own are delivered,
// but none is counted and the cursor stays before them all, as pages settle
// in order; their attempts are logged meanwhile, a page's worth at a time,
// so waiting retries do not hold an unbounded attempt log in memory.
func TestPagesWaitForAnEarlierRetry(t *testing.T) {
	e := newEnv(t, 150)
	s := newSink(t)
	from, to := since, since.Add(10*24*time.Hour)
	want := e.want(from, to, "*")
	require.GreaterOrEqual(t, len(want), 30)
	var tried atomic.Bool
	s.fn = func(id string) int {
		if id == want[0] && !tried.Swap(true) {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	ep := e.endpointRetrying(s, 3)
	const page = 10
	e.worker(WorkerConfig{PageSize: page})
	var job map[string]any
	require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": from.UnixMilli(),
		"until": to.UnixMilli(), "ordered": false, "concurrency": 4}, &job))
	id := job["id"].(string)
	require.Eventually(t, func() bool { return len(s.got()) == len(want)-1 }, 2500*time.Millisecond, 5*time.Millisecond,
		"every other event delivered while the first waits")
	logged := func() uint64 {
		var n uint64
		require.NoError(t, e.conn.QueryRow(context.Background(), "SELECT count() FROM `"+e.db+"`.deliveries WHERE replay_id = ?", id).Scan(&n))
		return n
	}
	require.Eventually(t, func() bool { return logged() > uint64(len(want)-page) }, time.Second, 20*time.Millisecond,
		"attempts logged while the first page waits")
	require.Len(t, s.got(), len(want)-1, "checked before the retry")
	waiting, err := NewStore(e.conn, e.db).Job(context.Background(), id)
	require.NoError(t, err)
	assert.Zero(t, waiting.Delivered, "no page counted before the first settles")
	assert.Empty(t, waiting.CursorID, "the cursor stays before the first page")

	job = e.waitDone(id)
	assert.Equal(t, StatusCompleted, job["status"])
	assert.EqualValues(t, len(want), job["delivered"])
	assert.EqualValues(t, len(want)+1, job["attempts"])
	assert.EqualValues(t, len(want)+1, logged())
}

// TestWorkersShareJobs runs three workers on four jobs: each job runs on one
// worker at a time, so no event reaches a receiver twice.
func TestWorkersShareJobs(t *testing.T) {
	e := newEnv(t, 400)
	var sinks []*sink
	var jobs []string
	for range 4 {
		s := newSink(t)
		sinks = append(sinks, s)
		var job map[string]any
		require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": e.endpoint(s), "since": since.UnixMilli(),
			"until": until.UnixMilli()}, &job))
		jobs = append(jobs, job["id"].(string))
	}
	for range 3 {
		e.worker(WorkerConfig{PageSize: 25})
	}
	want := e.want(since, until, "*")
	for i, id := range jobs {
		job := e.waitDone(id)
		assert.Equal(t, StatusCompleted, job["status"])
		assert.Equal(t, want, sinks[i].got(), "job %d: once each, in order", i)
	}
}

// TestSlowEndpointHoldsUpNoOne: a receiver that never answers in time does
// not slow a replay to another endpoint.
func TestSlowEndpointHoldsUpNoOne(t *testing.T) {
	e := newEnv(t, 300)
	slow := newSink(t)
	slow.fn = func(string) int { time.Sleep(3 * time.Second); return http.StatusOK }
	fast := newSink(t)
	e.worker(WorkerConfig{PageSize: 50})
	var slowJob, fastJob map[string]any
	require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": e.endpoint(slow), "since": since.UnixMilli()}, &slowJob))
	require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": e.endpoint(fast), "since": since.UnixMilli()}, &fastJob))
	job := e.waitDone(fastJob["id"].(string))
	assert.Equal(t, StatusCompleted, job["status"])
	var cancelled map[string]any
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/replays/"+slowJob["id"].(string)+"/cancel", nil, &cancelled))
	assert.Equal(t, StatusCancelled, cancelled["status"])
	assert.Equal(t, StatusCancelled, e.waitDone(slowJob["id"].(string))["status"])
	// The worker notices within a second or so and records the end itself.
	require.Eventually(t, func() bool {
		j, err := NewStore(e.conn, e.db).Job(context.Background(), slowJob["id"].(string))
		return err == nil && !j.FinishedAt.IsZero()
	}, 10*time.Second, 100*time.Millisecond, "the worker stopped the cancelled job mid-page")
}

// TestCancelBeforeStart: a job cancelled while no worker runs is shown
// cancelled at once, and the next worker records its end without sending.
func TestCancelBeforeStart(t *testing.T) {
	e := newEnv(t, 50)
	s := newSink(t)
	var job map[string]any
	require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": e.endpoint(s), "since": since.UnixMilli()}, &job))
	id := job["id"].(string)
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/replays/"+id+"/cancel", nil, &job))
	assert.Equal(t, StatusCancelled, job["status"])
	e.worker(WorkerConfig{})
	store := NewStore(e.conn, e.db)
	require.Eventually(t, func() bool {
		ids, err := store.Unfinished(context.Background())
		return err == nil && len(ids) == 0
	}, 10*time.Second, 50*time.Millisecond, "the worker recorded the end")
	j, err := store.Job(context.Background(), id)
	require.NoError(t, err)
	assert.Equal(t, StatusCancelled, j.Status)
	assert.False(t, j.FinishedAt.IsZero())
	assert.Empty(t, s.got(), "nothing was sent")
}

func TestEndpointsAPI(t *testing.T) {
	e := newEnv(t, 10)
	s := newSink(t)
	var ep map[string]any
	require.Equal(t, http.StatusCreated, e.call("POST", "/v1/endpoints", map[string]any{"url": s.srv.URL + "/hook",
		"enabled_events": []string{"send.email.bounced", "send.email.complained"}, "description": "alerts", "rate_limit": 50}, &ep))
	id := ep["id"].(string)
	assert.True(t, strings.HasPrefix(id, "whep_"))
	assert.True(t, strings.HasPrefix(ep["secret"].(string), "whsec_"))
	assert.EqualValues(t, 50, ep["rate_limit"])
	assert.Equal(t, "alerts", ep["description"])

	var got map[string]any
	require.Equal(t, http.StatusOK, e.call("GET", "/v1/endpoints/"+id, nil, &got))
	assert.Nil(t, got["secret"], "the secret is shown at creation and rotation only")
	require.Equal(t, http.StatusOK, e.call("PATCH", "/v1/endpoints/"+id, map[string]any{"enabled_events": []string{"send.*"}}, &got))
	assert.Equal(t, []any{"send.*"}, got["enabled_events"])
	assert.Equal(t, "alerts", got["description"], "PATCH keeps what it does not set")

	// Rotation: both secrets sign for a day.
	oldSecret := ep["secret"].(string)
	var rot map[string]any
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/endpoints/"+id+"/secret/rotate", nil, &rot))
	newSecret := rot["secret"].(string)
	assert.NotEqual(t, oldSecret, newSecret)
	var headersSeen http.Header
	var bodySeen []byte
	s.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headersSeen, bodySeen = r.Header.Clone(), must(io.ReadAll(r.Body))
		w.WriteHeader(http.StatusNoContent)
	})
	var test map[string]any
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/endpoints/"+id+"/test", nil, &test))
	assert.Equal(t, "delivered", test["attempt"].(map[string]any)["outcome"])
	var sent map[string]any
	require.NoError(t, json.Unmarshal(bodySeen, &sent))
	assert.Equal(t, "platform.test", sent["type"])
	assert.Equal(t, false, sent["livemode"])
	assert.Equal(t, "This is a test webhook event from do.dev", sent["data"].(map[string]any)["message"])
	assert.Equal(t, id, sent["data"].(map[string]any)["endpoint_id"])
	for _, secret := range []string{oldSecret, newSecret} {
		wh, _ := standardwebhooks.NewWebhook(secret)
		assert.NoError(t, wh.Verify(bodySeen, headersSeen), "signed with both secrets during the rotation")
	}

	var list map[string]any
	require.Equal(t, http.StatusOK, e.call("GET", "/v1/endpoints", nil, &list))
	assert.Len(t, list["data"], 1)
	require.Equal(t, http.StatusOK, e.call("DELETE", "/v1/endpoints/"+id, nil, nil))
	assert.Equal(t, http.StatusNotFound, e.call("GET", "/v1/endpoints/"+id, nil, nil))
	require.Equal(t, http.StatusOK, e.call("GET", "/v1/endpoints", nil, &list))
	assert.Empty(t, list["data"])
}

func must[T any](v T, _ error) T { return v }

func TestBadRequests(t *testing.T) {
	e := newEnv(t, 10)
	s := newSink(t)
	ep := e.endpoint(s)
	strict := NewAPI(e.db, e.conn, webhook.NewSender(webhook.Policy{}, "test"), testKey, nil)
	g := gin.New()
	strict.Register(g.Group("/v1", keys.NewChecker(keys.NewStore(e.conn, e.db), testKey, nil).Authenticate))
	strictSrv := httptest.NewServer(g)
	defer strictSrv.Close()

	for _, tc := range []struct {
		path  string
		body  any
		param string
	}{
		{"/v1/endpoints", map[string]any{"enabled_events": []string{"*"}}, "url"},
		{"/v1/endpoints", map[string]any{"url": "ftp://x.example/", "enabled_events": []string{"*"}}, "url"},
		{"/v1/endpoints", map[string]any{"url": "http://169.254.169.254/", "enabled_events": []string{"*"}}, "url"},
		{"/v1/endpoints", map[string]any{"url": "https://example.com/h"}, "enabled_events"},
		{"/v1/endpoints", map[string]any{"url": "https://example.com/h", "enabled_events": []string{"send"}}, "enabled_events"},
		{"/v1/endpoints", map[string]any{"url": "https://example.com/h", "enabled_events": []string{}}, "enabled_events"},
		{"/v1/endpoints", map[string]any{"url": "https://example.com/h", "enabled_events": []string{"*"}, "rate_limit": -1}, "rate_limit"},
		{"/v1/endpoints", map[string]any{"url": "https://example.com/h", "enabled_events": []string{"*"}, "colour": "red"}, "body"},
		{"/v1/endpoints", map[string]any{"url": 7, "enabled_events": []string{"*"}}, "url"},
		{"/v1/replays", map[string]any{"since": 0}, "endpoint_id"},
		{"/v1/replays", map[string]any{"endpoint_id": "whep_nope", "since": 0}, "endpoint_id"},
		{"/v1/replays", map[string]any{"endpoint_id": ep}, "since"},
		{"/v1/replays", map[string]any{"endpoint_id": ep, "since": "yesterday"}, "since"},
		{"/v1/replays", map[string]any{"endpoint_id": ep, "since": 10, "until": 5}, "since"},
		{"/v1/replays", map[string]any{"endpoint_id": ep, "since": 0, "concurrency": 8}, "concurrency"},
		{"/v1/replays", map[string]any{"endpoint_id": ep, "since": 0, "ordered": false, "concurrency": 257}, "concurrency"},
		{"/v1/replays", map[string]any{"endpoint_id": ep, "since": 0, "livemode": "maybe"}, "livemode"},
		{"/v1/replays", map[string]any{"endpoint_id": ep, "since": 0, "enabled_events": []string{"*.email"}}, "enabled_events"},
	} {
		var body map[string]any
		code := e.call("POST", tc.path, tc.body, &body)
		if tc.path == "/v1/endpoints" && tc.param == "url" && strings.Contains(fmt.Sprint(tc.body), "169.254") {
			assert.Equal(t, http.StatusBadRequest, code, "dev refuses link-local too")
		}
		assert.Equal(t, http.StatusBadRequest, code, "%s %v: %v", tc.path, tc.body, body)
		if msg, ok := body["error"].(map[string]any)["message"].(string); assert.True(t, ok) {
			assert.True(t, strings.HasPrefix(msg, tc.param), "%s %v: %s", tc.path, tc.body, msg)
		}
	}
	// Under serve's policy a loopback receiver is refused at creation.
	req, _ := http.NewRequest(http.MethodPost, strictSrv.URL+"/v1/endpoints",
		strings.NewReader(`{"url":"http://127.0.0.1:9/hook","enabled_events":["*"]}`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Equal(t, http.StatusNotFound, e.call("GET", "/v1/replays/rpl_nope", nil, nil))
	assert.Equal(t, http.StatusNotFound, e.call("POST", "/v1/endpoints/whep_nope/test", nil, nil))
}

// TestLeaseFirstClaimWins: a claim that lands after the holder's, however
// slowly and however early it was stamped, does not take the job; releasing
// or expiring hands it on, and claims written before claims had trials hold.
func TestLeaseFirstClaimWins(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	s := NewStore(e.conn, e.db)
	ok, err := s.TryLease(ctx, "rpl_x", "a", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	holder, err := s.LeaseHolder(ctx, "rpl_x")
	require.NoError(t, err)
	assert.Equal(t, "a", holder)
	claims, err := s.liveClaims(ctx, "rpl_x")
	require.NoError(t, err)
	require.Len(t, claims, 1)
	claimedA := claims[0].claimedAt

	// b found the job free before a's claim was visible, stamped its trial
	// before a's, and the trial lands only now.
	require.NoError(t, s.writeLease(ctx, "rpl_x", "b", claimedA-1, time.Now().Add(time.Minute).UnixMilli(), false))
	holder, _ = s.LeaseHolder(ctx, "rpl_x")
	assert.Equal(t, "a", holder, "the confirmed claim keeps the job")
	ok, err = s.TryLease(ctx, "rpl_x", "b", time.Minute)
	require.NoError(t, err)
	assert.False(t, ok)
	ok, err = s.TryLease(ctx, "rpl_x", "a", time.Minute)
	require.NoError(t, err)
	assert.True(t, ok, "a renews")
	claims, _ = s.liveClaims(ctx, "rpl_x")
	assert.Equal(t, []claim{{"b", claimedA - 1, false}, {"a", claimedA, true}}, claims, "a renewal keeps the claim's place")

	require.NoError(t, s.ReleaseLease(ctx, "rpl_x", "a"))
	holder, _ = s.LeaseHolder(ctx, "rpl_x")
	assert.Empty(t, holder, "b's trial holds nothing")
	ok, err = s.TryLease(ctx, "rpl_x", "c", time.Minute)
	require.NoError(t, err)
	assert.False(t, ok, "nor does c take the job while b's trial is live")
	require.NoError(t, s.writeLease(ctx, "rpl_x", "b", claimedA-1, -1, false))
	ok, err = s.TryLease(ctx, "rpl_x", "c", time.Minute)
	require.NoError(t, err)
	assert.True(t, ok, "with b's trial released, c does")

	require.NoError(t, s.writeLease(ctx, "rpl_y", "c", 1, time.Now().Add(-time.Second).UnixMilli(), true))
	holder, _ = s.LeaseHolder(ctx, "rpl_y")
	assert.Empty(t, holder, "an expired claim holds nothing")
	ok, err = s.TryLease(ctx, "rpl_y", "d", time.Minute)
	require.NoError(t, err)
	assert.True(t, ok)

	// A claim of a worker from before trials (no confirmed column) holds.
	require.NoError(t, s.insert(ctx, "replay_leases", []string{"replay_id", "owner", "claimed_at", "until"},
		[]any{"rpl_z", "old", int64(1), time.Now().Add(time.Minute).UnixMilli()}))
	holder, _ = s.LeaseHolder(ctx, "rpl_z")
	assert.Equal(t, "old", holder)
}

// TestClaimsAtOnceOneHolder: workers claiming a job at the same moment, on
// one server with no settling, never both hold it, and one of them gets it.
func TestClaimsAtOnceOneHolder(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	s := NewStore(e.conn, e.db)
	const rounds, claimers = 40, 6
	for r := range rounds {
		id := fmt.Sprintf("rpl_race%d", r)
		var start sync.WaitGroup
		start.Add(1)
		var got [claimers]bool
		var wg sync.WaitGroup
		for c := range claimers {
			wg.Go(func() {
				start.Wait()
				ok, err := s.TryLease(ctx, id, fmt.Sprintf("w%d", c), time.Minute)
				assert.NoError(t, err)
				got[c] = ok
			})
		}
		start.Done()
		wg.Wait()
		var holders []string
		for c, ok := range got {
			if ok {
				holders = append(holders, fmt.Sprintf("w%d", c))
			}
		}
		require.Len(t, holders, 1, "round %d", r)
		holder, err := s.LeaseHolder(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, holders[0], holder, "round %d", r)
	}
}

// shortJobs saves n pending replays of a few events each to endpoint ep and
// returns their ids in id order.
func (e *env) shortJobs(n int, ep string) []string {
	e.t.Helper()
	store := NewStore(e.conn, e.db)
	var ids []string
	for i := range n {
		j := Job{ID: fmt.Sprintf("rpl_short_%04d", i), EndpointID: ep, Since: since, Until: since.Add(6 * time.Hour),
			EnabledEvents: []string{"*"}, Livemode: "all", Concurrency: 4, Status: StatusPending, CreatedAt: time.Now()}
		require.NoError(e.t, store.SaveJob(context.Background(), j))
		ids = append(ids, j.ID)
	}
	return ids
}

// TestIdleWorkerClaimsFreeJobs holds the first 64 of 300 jobs under another
// worker's live lease: an idle worker must run the other 236, not spend its
// slots on the held ones.
func TestIdleWorkerClaimsFreeJobs(t *testing.T) {
	e := newEnv(t, 100)
	s := newSink(t)
	ids := e.shortJobs(300, e.endpoint(s))
	store := NewStore(e.conn, e.db)
	until := time.Now().Add(10 * time.Minute).UnixMilli()
	for _, id := range ids[:64] {
		require.NoError(t, store.writeLease(context.Background(), id, "elsewhere", time.Now().UnixNano(), until, true))
	}
	e.worker(WorkerConfig{Owner: "idle"})
	require.Eventually(t, func() bool {
		done := 0
		for _, id := range ids[64:] {
			if j, err := store.Job(context.Background(), id); err == nil && j.Status == StatusCompleted {
				done++
			}
		}
		return done == len(ids)-64
	}, 90*time.Second, time.Second, "every free job completed")
	for _, id := range ids[:64] {
		j, err := store.Job(context.Background(), id)
		require.NoError(t, err)
		assert.Equal(t, StatusPending, j.Status, "a held job is left to its holder")
	}
}

// TestThreeWorkersShareManyJobs runs three workers over 300 short jobs:
// every job completes and every worker gets some.
func TestThreeWorkersShareManyJobs(t *testing.T) {
	e := newEnv(t, 100)
	s := newSink(t)
	ids := e.shortJobs(300, e.endpoint(s))
	for i := range 3 {
		e.worker(WorkerConfig{Owner: fmt.Sprintf("w%d", i), MaxJobs: 16})
	}
	store := NewStore(e.conn, e.db)
	require.Eventually(t, func() bool {
		left, err := store.Unfinished(context.Background())
		return err == nil && len(left) == 0
	}, 120*time.Second, time.Second, "every job finished")
	for _, id := range ids {
		j, err := store.Job(context.Background(), id)
		require.NoError(t, err)
		assert.Equal(t, StatusCompleted, j.Status, id)
	}
	rows, err := e.conn.Query(context.Background(), "SELECT owner, uniqExact(replay_id) FROM "+e.db+".replay_leases WHERE confirmed GROUP BY owner")
	require.NoError(t, err)
	defer rows.Close()
	per := map[string]uint64{}
	for rows.Next() {
		var owner string
		var n uint64
		require.NoError(t, rows.Scan(&owner, &n))
		per[owner] = n
	}
	t.Logf("jobs leased per worker: %v", per)
	for i := range 3 {
		assert.NotZero(t, per[fmt.Sprintf("w%d", i)], "worker w%d got work", i)
	}
}

// TestDeletedEndpointKeepsNoSecret: the row that marks an endpoint deleted
// carries neither its secret nor the previous one.
func TestDeletedEndpointKeepsNoSecret(t *testing.T) {
	e := newEnv(t, 10)
	id := e.endpoint(newSink(t))
	var rotated map[string]any
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/endpoints/"+id+"/secret/rotate", nil, &rotated))
	require.Equal(t, http.StatusOK, e.call("DELETE", "/v1/endpoints/"+id, nil, nil))
	var secret, previous string
	var deleted uint8
	require.NoError(t, e.conn.QueryRow(context.Background(), "SELECT secret, previous_secret, deleted FROM "+e.db+
		".endpoints FINAL WHERE id = ?", id).Scan(&secret, &previous, &deleted))
	assert.Equal(t, uint8(1), deleted)
	assert.Empty(t, secret)
	assert.Empty(t, previous)
}

// TestReadPageStopsAtItsByteBound: a page ends once it holds maxBytes of
// events (at least one), and the next page goes on from there.
func TestReadPageStopsAtItsByteBound(t *testing.T) {
	e := newEnv(t, 200)
	patterns, err := schema.ParsePatterns([]string{"*"})
	require.NoError(t, err)
	job := Job{ID: "rpl_bytes", Since: since, Livemode: "all"}
	var all []string
	for {
		page, err := readPage(context.Background(), e.conn, e.db, job, patterns, 1000, 2_000, schema.FirstPageWindow)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		size := 0
		for _, ev := range page[:len(page)-1] {
			size += len(ev.raw)
		}
		assert.Less(t, size, 2_000, "only the last event may cross the bound")
		for _, ev := range page {
			all = append(all, ev.id)
		}
		last := page[len(page)-1]
		job.CursorAt, job.CursorID = last.createdAt, last.id
	}
	assert.Equal(t, e.want(since, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), "*"), all, "every event once, in order")
}

// TestLargeEventsReplayUnderClickHouseMemoryLimit: 2,000 events of 200 KB
// (400 MB) replayed with the default page size by a worker whose
// connection lets a query use 250 MB. ClickHouse holds a page's rows, raw
// bytes included, to sort them whatever the client keeps, so a page of
// 20,000 such events cannot be read; the worker asks for as many as its
// page bytes hold.
func TestLargeEventsReplayUnderClickHouseMemoryLimit(t *testing.T) {
	conn, db := chtest.MigratedDatabase(t)
	const n = 2000
	start := since.UnixMilli()
	require.NoError(t, conn.Exec(context.Background(), fmt.Sprintf(`INSERT INTO %s.events (event_id, type, service, created_at, livemode,
		raw, kafka_topic, kafka_partition, kafka_offset, ingested_at)
	SELECT concat('big_', toString(10000 + number)), 'platform.test', 'platform', %d + number * 1000, 1,
		concat('{"eventId":"big_', toString(10000 + number), '","pad":"%s"}'), 'events', 0, number, now()
	FROM system.numbers LIMIT %d`, db, start, strings.Repeat("x", 200_000), n)))
	limited, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chtest.Addr(t)}, DialTimeout: 5 * time.Second, ReadTimeout: time.Minute,
		Settings: clickhouse.Settings{"max_memory_usage": 250_000_000}})
	require.NoError(t, err)
	t.Cleanup(func() { limited.Close() })
	var got atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
	t.Cleanup(recv.Close)
	store := NewStore(conn, db)
	secret, err := webhook.NewSecret()
	require.NoError(t, err)
	ep := Endpoint{ID: newID("whep_"), URL: recv.URL + "/hook", EnabledEvents: []string{"*"}, Secret: secret, CreatedAt: time.Now()}
	require.NoError(t, store.SaveEndpoint(context.Background(), ep))
	job := Job{ID: newID("rpl_"), EndpointID: ep.ID, Since: since, EnabledEvents: []string{"*"}, Livemode: "all",
		Concurrency: 16, Status: StatusPending, CreatedAt: time.Now()}
	require.NoError(t, store.SaveJob(context.Background(), job))
	w, err := NewWorker(WorkerConfig{Database: db, Poll: 50 * time.Millisecond}, limited, webhook.NewSender(webhook.Policy{AllowPrivate: true}, "test"), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	var final Job
	require.Eventually(t, func() bool {
		final, err = store.Job(context.Background(), job.ID)
		return err == nil && final.Done()
	}, 2*time.Minute, 100*time.Millisecond)
	assert.Equal(t, StatusCompleted, final.Status, final.LastError)
	assert.EqualValues(t, n, final.Delivered)
	assert.EqualValues(t, n, got.Load())
}

// TestPageLimit: size, or half again as many events as maxBytes holds at
// the page's mean size if fewer, at least one; before the first page, as
// many of the largest events ingest stores as maxBytes holds.
func TestPageLimit(t *testing.T) {
	of := func(n int, sizes ...int) []event {
		var page []event
		for i := range n {
			page = append(page, event{raw: make([]byte, sizes[i%len(sizes)])})
		}
		return page
	}
	for _, tc := range []struct {
		name     string
		page     []event
		size     int
		maxBytes int
		want     int
	}{
		{"small events", of(5000, 200, 240), 20_000, 16 << 20, 20_000},
		{"after a small page", of(64, 200, 240), 20_000, 16 << 20, 256}, // pageGrowth times as many
		{"large events", of(64, 256<<10), 20_000, 16 << 20, 96},         // 64 fit
		{"mixed", of(40, 1000, 3000), 20_000, 100_000, 75},              // 2,000 B each: 50 fit
		{"larger than the bound", of(1, 1<<20), 20_000, 100_000, 1},     // not even one fits
		{"no bytes", of(200, 0), 500, 100, 500},
		{"first page: the largest events", nil, 20_000, 16 << 20, 64},
		{"first page: fewer asked", nil, 10, 16 << 20, 10},
		{"first page: not even one fits", nil, 20_000, 1000, 1},
	} {
		assert.Equal(t, tc.want, pageLimit(tc.page, tc.size, tc.maxBytes), tc.name)
	}
}

// TestWaitingRetriesHoldNoSlot: in an unordered replay with 4 in flight,
// every event's first attempt fails with 503. An event waiting out its
// backoff must not hold one of the 4 slots, nor hold up the pages after its
// own, so every first attempt is made before the first retry (backoffs are
// 1 s; some 100 attempts on loopback take a fraction of that), whether the
// events fit one page or take four.
func TestWaitingRetriesHoldNoSlot(t *testing.T) {
	for _, pages := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d pages", pages), func(t *testing.T) {
			e := newEnv(t, 150)
			s := newSink(t)
			var mu sync.Mutex
			firsts, firstsBeforeRetry := map[string]bool{}, -1
			s.fn = func(id string) int {
				mu.Lock()
				defer mu.Unlock()
				if !firsts[id] {
					firsts[id] = true
					return http.StatusServiceUnavailable
				}
				if firstsBeforeRetry < 0 {
					firstsBeforeRetry = len(firsts)
				}
				return http.StatusOK
			}
			ep := e.endpoint(s)
			from, to := since, since.Add(10*24*time.Hour)
			want := e.want(from, to, "*")
			require.GreaterOrEqual(t, len(want), 20)
			e.worker(WorkerConfig{PageSize: (len(want) + pages - 1) / pages})
			var job map[string]any
			require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": from.UnixMilli(),
				"until": to.UnixMilli(), "ordered": false, "concurrency": 4}, &job))
			job = e.waitDone(job["id"].(string))
			assert.Equal(t, StatusCompleted, job["status"])
			assert.EqualValues(t, len(want), job["delivered"])
			assert.EqualValues(t, 2*len(want), job["attempts"])
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, len(want), firstsBeforeRetry, "first attempts made before the first retry")
		})
	}
}

// TestReadPageAcrossWindows: a page reads a window after its cursor at a
// time, widening it; events hours and weeks apart still come in order, each
// once, in full pages, whether each page starts from the first window, from
// the window nextWindow gives after the page before, or from 1 ms.
func TestReadPageAcrossWindows(t *testing.T) {
	conn, db := chtest.MigratedDatabase(t)
	t0 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	offsets := []time.Duration{0, time.Millisecond, 5 * time.Hour, 40 * 24 * time.Hour, 40*24*time.Hour + time.Millisecond, 300 * 24 * time.Hour}
	var p schema.Parser
	var events []schema.Event
	var want []string
	for i, off := range offsets {
		ev, err := p.Parse(fmt.Appendf(nil, `{"eventId":"w-%d","type":"platform.test","service":"platform","createdAt":%d,"data":{"message":"m","endpoint_id":"e"}}`,
			i, t0.Add(off).UnixMilli()))
		require.NoError(t, err)
		events = append(events, ev)
		want = append(want, ev.ID)
	}
	chtest.InsertEvents(t, conn, db, events)
	patterns, err := schema.ParsePatterns([]string{"*"})
	require.NoError(t, err)
	windows := map[string]func(page []event, size int) int64{
		"first":  func([]event, int) int64 { return schema.FirstPageWindow },
		"next":   nextWindow,
		"narrow": func([]event, int) int64 { return 1 },
	}
	for _, size := range []int{1, 2, 4, 100} {
		for name, windowAfter := range windows {
			job := Job{ID: "windows", Since: t0, Until: t0.Add(400 * 24 * time.Hour), Livemode: "all", CursorAt: t0.UnixMilli()}
			var got []string
			window := schema.FirstPageWindow
			for {
				page, err := readPage(context.Background(), conn, db, job, patterns, size, 1<<20, window)
				require.NoError(t, err)
				if len(page) == 0 {
					break
				}
				if len(got)+len(page) < len(want) {
					assert.Len(t, page, size, "a page before the last is full")
				}
				for _, ev := range page {
					got = append(got, ev.id)
				}
				last := page[len(page)-1]
				job.CursorAt, job.CursorID = last.createdAt, last.id
				window = windowAfter(page, size)
			}
			assert.Equal(t, want, got, "page size %d, windows %s", size, name)
		}
	}
}

// TestNextWindow: half again the span a page's size of events took, from
// the page's density; at least a second; the first window after an empty
// page.
func TestNextWindow(t *testing.T) {
	at := func(ms ...int64) []event {
		var page []event
		for _, m := range ms {
			page = append(page, event{createdAt: m})
		}
		return page
	}
	for _, tc := range []struct {
		name string
		page []event
		size int
		want int64
	}{
		{"empty", nil, 10, schema.FirstPageWindow},
		{"full", at(1_000_000, 1_004_999), 2, 7_500},           // 5,000 ms for 2 events
		{"half full", at(1_000_000, 1_004_999), 4, 15_000},     // the same density, a page of 4
		{"at least a second", at(7, 7, 8), 3, minPageWindow},   // 3 events in 2 ms
		{"sparse", at(0, 40*86_400_000-1), 2, 60 * 86_400_000}, // 40 days for 2 events
	} {
		assert.Equal(t, tc.want, nextWindow(tc.page, tc.size), tc.name)
	}
}

// TestResendOneEvent: POST /v1/events/{id}/resend sends the stored bytes,
// signed, to an endpoint that subscribes to the type, once, answers with the
// attempt and logs it; a failing receiver is one failed attempt, not retried.
func TestResendOneEvent(t *testing.T) {
	e := newEnv(t, 200)
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	status := http.StatusOK
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, body)
		code := status
		mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(recv.Close)
	var ep map[string]any
	require.Equal(t, http.StatusCreated, e.call("POST", "/v1/endpoints", map[string]any{"url": recv.URL, "enabled_events": []string{"send.*"}}, &ep))
	epID := ep["id"].(string)
	var sendEv, otherEv schema.Event
	for _, ev := range e.events {
		switch {
		case ev.Service == "send" && sendEv.ID == "":
			sendEv = ev
		case ev.Service != "send" && otherEv.ID == "":
			otherEv = ev
		}
	}
	require.NotEmpty(t, sendEv.ID)
	require.NotEmpty(t, otherEv.ID)

	var out map[string]any
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/events/"+sendEv.ID+"/resend", map[string]any{"endpoint_id": epID}, &out))
	assert.Equal(t, sendEv.ID, out["event_id"])
	assert.Equal(t, "delivered", out["attempt"].(map[string]any)["outcome"])
	require.Len(t, got, 1)
	assert.Equal(t, string(sendEv.Raw), string(bodies[0]), "the stored bytes")
	assert.Equal(t, sendEv.ID, got[0].Header.Get("webhook-id"))
	wh, err := standardwebhooks.NewWebhook(ep["secret"].(string))
	require.NoError(t, err)
	assert.NoError(t, wh.Verify(bodies[0], got[0].Header), "signed with the endpoint's secret")

	mu.Lock()
	status = http.StatusInternalServerError
	mu.Unlock()
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/events/"+sendEv.ID+"/resend", map[string]any{"endpoint_id": epID}, &out))
	attempt := out["attempt"].(map[string]any)
	assert.NotEqual(t, "delivered", attempt["outcome"])
	assert.EqualValues(t, 500, attempt["status"])
	assert.Len(t, got, 2, "sent once, not retried")
	var logged uint64
	require.NoError(t, e.conn.QueryRow(context.Background(), "SELECT count() FROM "+e.db+".deliveries WHERE endpoint_id = ? AND event_id = ?", epID, sendEv.ID).Scan(&logged))
	assert.Equal(t, uint64(2), logged, "both attempts are in the delivery log")

	var fail map[string]any
	assert.Equal(t, http.StatusBadRequest, e.call("POST", "/v1/events/"+otherEv.ID+"/resend", map[string]any{"endpoint_id": epID}, &fail), "a type the endpoint does not take")
	assert.Contains(t, fail["error"].(map[string]any)["message"], otherEv.Type)
	assert.Equal(t, http.StatusNotFound, e.call("POST", "/v1/events/no-such-event/resend", map[string]any{"endpoint_id": epID}, &fail))
	assert.Equal(t, http.StatusBadRequest, e.call("POST", "/v1/events/"+sendEv.ID+"/resend", map[string]any{"endpoint_id": "whep_none"}, &fail))
	assert.Equal(t, http.StatusBadRequest, e.call("POST", "/v1/events/"+sendEv.ID+"/resend", map[string]any{}, &fail))
	assert.Len(t, got, 2, "nothing sent for a refused request")
}

// TestPruneLeases: renewals of claims that expired over an hour ago are
// deleted; a live claim still holds its job and a released one stays
// released.
func TestPruneLeases(t *testing.T) {
	conn, db := chtest.MigratedDatabase(t)
	ctx := context.Background()
	s := NewStore(conn, db)
	now := time.Now()
	old, soon := now.Add(-2*time.Hour).UnixMilli(), now.Add(time.Minute).UnixMilli()
	for _, l := range []struct {
		job, owner       string
		claimedAt, until int64
	}{
		{"live", "w1", 1, old}, {"live", "w1", 1, soon}, // held since long ago, renewed
		{"released", "w2", 2, soon}, {"released", "w2", 2, -1}, // released before its renewal ran out
		{"expired", "w3", 3, old}, {"expired", "w3", 3, old + 10_000}, // its worker died
	} {
		require.NoError(t, s.writeLease(ctx, l.job, l.owner, l.claimedAt, l.until, true))
	}
	holders := func() []string {
		var out []string
		for _, job := range []string{"live", "released", "expired"} {
			h, err := s.LeaseHolder(ctx, job)
			require.NoError(t, err)
			out = append(out, h)
		}
		return out
	}
	require.Equal(t, []string{"w1", "", ""}, holders())

	require.NoError(t, s.PruneLeases(ctx, now.Add(-time.Hour)))
	require.Eventually(t, func() bool {
		var n uint64
		require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM "+db+".replay_leases").Scan(&n))
		return n == 3
	}, 30*time.Second, 50*time.Millisecond, "the three expired renewals are deleted, the other three kept")
	assert.Equal(t, []string{"w1", "", ""}, holders())
}

// TestEndpointScheduleAndHeaders: an endpoint's own retry schedule decides
// how many attempts an event gets, and its headers reach the receiver on
// every attempt beside a signature the reference library verifies.
func TestEndpointScheduleAndHeaders(t *testing.T) {
	e := newEnv(t, 60)
	from, to := since, since.Add(10*24*time.Hour)
	want := e.want(from, to, "send.*")
	require.NotEmpty(t, want)
	var mu sync.Mutex
	tries := map[string]int{}   // attempts per endpoint path and eventId
	headers := map[string]int{} // attempts that carried the custom headers
	recv := newSink(t)          // only for its server: every handler below replaces it
	recv.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		key := r.URL.Path + " " + r.Header.Get("webhook-id")
		tries[key]++
		if r.Header.Get("X-Tenant") == "acme" && r.Header.Get("Authorization") == "Bearer t0k" {
			headers[r.URL.Path]++
		}
		if sec := *recv.secret.Load(); r.URL.Path == "/three" {
			wh, _ := standardwebhooks.NewWebhook(sec)
			if wh.Verify(body, r.Header) != nil {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		if tries[key] <= 2 {
			w.WriteHeader(http.StatusInternalServerError) // the first two attempts of every event fail
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	make := func(path string, schedule []int) string {
		var ep map[string]any
		require.Equal(t, http.StatusCreated, e.call("POST", "/v1/endpoints", map[string]any{
			"url": recv.srv.URL + path, "enabled_events": []string{"send.*"}, "retry_schedule": schedule,
			"headers": map[string]string{"X-Tenant": "acme", "Authorization": "Bearer t0k"}}, &ep))
		assert.EqualValues(t, []any{1.0, 1.0}[:len(schedule)], ep["retry_schedule"])
		if path == "/three" {
			secret := ep["secret"].(string)
			recv.secret.Store(&secret)
		}
		return ep["id"].(string)
	}
	three := make("/three", []int{1, 1}) // three attempts: the third succeeds
	two := make("/two", []int{1})        // two attempts: every event fails
	e.worker(WorkerConfig{})
	for _, ep := range []string{three, two} {
		var job map[string]any
		require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": from.UnixMilli(),
			"until": to.UnixMilli(), "enabled_events": []string{"send.*"}, "ordered": false, "concurrency": 8}, &job))
		job = e.waitDone(job["id"].(string))
		if ep == three {
			assert.Equal(t, StatusCompleted, job["status"])
			assert.EqualValues(t, len(want), job["delivered"])
			assert.EqualValues(t, 3*len(want), job["attempts"])
		} else {
			assert.EqualValues(t, 0, job["delivered"])
			assert.EqualValues(t, len(want), job["failed"])
			assert.EqualValues(t, 2*len(want), job["attempts"])
			assert.Contains(t, job["last_error"], "gave up after 2 attempts")
		}
	}
	mu.Lock()
	assert.Equal(t, 3*len(want), headers["/three"], "custom headers on every attempt")
	assert.Equal(t, 2*len(want), headers["/two"])
	mu.Unlock()

	// The schedule in use is shown, the default when none was set; PATCH
	// changes headers and schedule.
	var ep map[string]any
	require.Equal(t, http.StatusCreated, e.call("POST", "/v1/endpoints", map[string]any{"url": recv.srv.URL, "enabled_events": []string{"*"}}, &ep))
	assert.EqualValues(t, []any{1.0, 5.0, 30.0, 120.0, 600.0}, ep["retry_schedule"])
	assert.Equal(t, map[string]any{}, ep["headers"])
	require.Equal(t, http.StatusOK, e.call("PATCH", "/v1/endpoints/"+ep["id"].(string), map[string]any{
		"retry_schedule": []int{2, 86400}, "headers": map[string]string{"X-A": "b"}}, &ep))
	assert.EqualValues(t, []any{2.0, 86400.0}, ep["retry_schedule"])
	assert.Equal(t, map[string]any{"X-A": "b"}, ep["headers"])

	// Bad settings are a 400 naming the field.
	many := map[string]string{}
	for i := range 21 {
		many[fmt.Sprintf("X-H%d", i)] = "v"
	}
	for _, body := range []map[string]any{
		{"headers": map[string]string{"webhook-id": "x"}},
		{"headers": map[string]string{"Webhook-Signature": "v1,x"}},
		{"headers": map[string]string{"content-type": "text/plain"}},
		{"headers": map[string]string{"Host": "evil.example"}},
		{"headers": map[string]string{"User-Agent": "x"}},
		{"headers": map[string]string{"bad name": "x"}},
		{"headers": map[string]string{"X-A": "a\r\nX-B: b"}},
		{"headers": map[string]string{"X-A": strings.Repeat("a", 1025)}},
		{"headers": map[string]string{"x-a": "1", "X-A": "2"}},
		{"headers": many},
		{"retry_schedule": []int{0}},
		{"retry_schedule": []int{86401}},
		{"retry_schedule": []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{"retry_schedule": []float64{1.5}},
	} {
		var out map[string]any
		assert.Equal(t, http.StatusBadRequest, e.call("PATCH", "/v1/endpoints/"+ep["id"].(string), body, &out), "%v", body)
		for field := range body {
			assert.True(t, strings.HasPrefix(out["error"].(map[string]any)["message"].(string), field), "%v: %v", body, out)
		}
	}
}

// TestOnlyFailed replays a range to a receiver that refuses a known subset
// (some at once with 400, some with 503 until the endpoint's one retry is
// spent), then, the receiver mended, replays only what failed: exactly that
// subset, each once, in a dry run and for real; a third time, nothing.
func TestOnlyFailed(t *testing.T) {
	e := newEnv(t, 120)
	s := newSink(t)
	from, to := since, since.Add(10*24*time.Hour)
	want := e.want(from, to, "*")
	refused := map[string]int{}
	for i, id := range want {
		switch i % 5 {
		case 1:
			refused[id] = http.StatusBadRequest
		case 3:
			refused[id] = http.StatusServiceUnavailable
		}
	}
	var mending atomic.Bool
	s.fn = func(id string) int {
		if code, ok := refused[id]; ok && !mending.Load() {
			return code
		}
		return http.StatusOK
	}
	var ep map[string]any
	require.Equal(t, http.StatusCreated, e.call("POST", "/v1/endpoints", map[string]any{"url": s.srv.URL + "/hook",
		"enabled_events": []string{"*"}, "retry_schedule": []int{1}}, &ep))
	secret := ep["secret"].(string)
	s.secret.Store(&secret)
	id := ep["id"].(string)
	e.worker(WorkerConfig{})
	run := func(body map[string]any) map[string]any {
		var job map[string]any
		require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", body, &job))
		assert.Equal(t, body["only_failed"] == true, job["only_failed"])
		return e.waitDone(job["id"].(string))
	}
	body := map[string]any{"endpoint_id": id, "since": from.UnixMilli(), "until": to.UnixMilli(), "ordered": false, "concurrency": 8}
	first := run(body)
	assert.EqualValues(t, len(want)-len(refused), first["delivered"])
	assert.EqualValues(t, len(refused), first["failed"])

	mending.Store(true)
	s.mu.Lock()
	s.ids = nil
	s.mu.Unlock()
	body["only_failed"] = true
	var dry map[string]any
	body["dry_run"] = true
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/replays", body, &dry))
	assert.EqualValues(t, len(refused), dry["matched"])
	delete(body, "dry_run")
	second := run(body)
	assert.Equal(t, StatusCompleted, second["status"])
	assert.EqualValues(t, len(refused), second["matched"])
	assert.EqualValues(t, len(refused), second["delivered"])
	got := s.got()
	sort.Strings(got)
	var wantIDs []string
	for id := range refused {
		wantIDs = append(wantIDs, id)
	}
	sort.Strings(wantIDs)
	assert.Equal(t, wantIDs, got, "exactly the events that failed, each once")

	third := run(body)
	assert.EqualValues(t, 0, third["matched"])
	assert.EqualValues(t, 0, third["delivered"])
}

// TestAttemptLog pages a replay's attempts and an endpoint's, with filters:
// newest first, each attempt once, with its type, status, outcome and the
// start of the answer; new attempts logged while paging change no later
// page; bad parameters are a 400 naming them.
func TestAttemptLog(t *testing.T) {
	e := newEnv(t, 80)
	from, to := since, since.Add(10*24*time.Hour)
	want := e.want(from, to, "*")
	refused := map[string]bool{}
	for i, id := range want {
		if i%4 == 2 {
			refused[id] = true
		}
	}
	recv := newSink(t)
	recv.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("webhook-id")
		if refused[id] {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, "no: "+id+" "+strings.Repeat("x", 3000))
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	var ep map[string]any
	require.Equal(t, http.StatusCreated, e.call("POST", "/v1/endpoints", map[string]any{"url": recv.srv.URL, "enabled_events": []string{"*"}}, &ep))
	epID := ep["id"].(string)
	e.worker(WorkerConfig{})
	var job map[string]any
	require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": epID, "since": from.UnixMilli(),
		"until": to.UnixMilli(), "ordered": false, "concurrency": 8}, &job))
	job = e.waitDone(job["id"].(string))
	require.EqualValues(t, len(want), job["attempts"])
	var resent map[string]any
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/events/"+want[0]+"/resend", map[string]any{"endpoint_id": epID}, &resent))

	types := map[string]string{}
	for _, ev := range e.events {
		types[ev.ID] = ev.Type
	}
	window := "&from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z"
	// pages reads a whole log, limit at a time; between the first and the
	// second page, more attempts are logged (at now, so newer than all).
	pages := func(path string, limit int, between func()) []map[string]any {
		var all []map[string]any
		cursor := ""
		for n := 0; ; n++ {
			var page struct {
				Data       []map[string]any `json:"data"`
				NextCursor *string          `json:"next_cursor"`
			}
			q := fmt.Sprintf("%s?limit=%d%s", path, limit, window)
			if cursor != "" {
				q += "&cursor=" + cursor
			}
			require.Equal(t, http.StatusOK, e.call("GET", q, nil, &page))
			assert.LessOrEqual(t, len(page.Data), limit)
			all = append(all, page.Data...)
			if n == 0 && between != nil {
				between()
			}
			if page.NextCursor == nil {
				return all
			}
			cursor = *page.NextCursor
		}
	}
	store := NewStore(e.conn, e.db)
	later := func() {
		var recs []Record
		for i := range 30 {
			recs = append(recs, Record{EndpointID: epID, ReplayID: job["id"].(string), EventID: fmt.Sprintf("late-%d", i), EventType: "platform.test",
				Attempt: 1, Result: webhook.Attempt{Outcome: webhook.Delivered, Status: 200}, At: time.Now()})
		}
		require.NoError(t, store.RecordAttempts(context.Background(), recs))
	}
	log := pages("/v1/replays/"+job["id"].(string)+"/attempts", 7, later)
	require.Len(t, log, len(want), "each attempt of the replay once, none of those logged meanwhile")
	seen := map[string]bool{}
	for i, a := range log {
		id := a["event_id"].(string)
		assert.False(t, seen[id], "%s twice", id)
		seen[id] = true
		assert.Equal(t, types[id], a["type"])
		assert.Equal(t, job["id"], a["replay_id"])
		if refused[id] {
			assert.Equal(t, "failed", a["outcome"])
			assert.EqualValues(t, 400, a["status"])
			assert.Len(t, a["response"], 1024, "the first 1 KiB of the answer")
			assert.True(t, strings.HasPrefix(a["response"].(string), "no: "+id))
		} else {
			assert.Equal(t, "delivered", a["outcome"])
			assert.Equal(t, "ok", a["response"])
		}
		if i > 0 {
			prev := log[i-1]
			assert.GreaterOrEqual(t, prev["at"], a["at"], "newest first")
			if prev["at"] == a["at"] {
				assert.Greater(t, prev["event_id"], a["event_id"])
			}
		}
	}

	// Filters: the failed ones; one event's attempts to the endpoint, the
	// resend among them (no replay).
	failed := pages("/v1/replays/"+job["id"].(string)+"/attempts", 100, nil)
	n := 0
	for _, a := range failed {
		if a["outcome"] == "failed" {
			n++
		}
	}
	var onlyFailed struct{ Data []map[string]any }
	require.Equal(t, http.StatusOK, e.call("GET", "/v1/replays/"+job["id"].(string)+"/attempts?outcome=failed&limit=1000"+window, nil, &onlyFailed))
	assert.Len(t, onlyFailed.Data, len(refused))
	assert.Equal(t, len(refused), n)
	var one struct{ Data []map[string]any }
	require.Equal(t, http.StatusOK, e.call("GET", "/v1/endpoints/"+epID+"/attempts?event_id="+want[0]+window, nil, &one))
	require.Len(t, one.Data, 2, "the replay's attempt and the resend")
	assert.Nil(t, one.Data[0]["replay_id"], "the resend is the newest")
	assert.Equal(t, job["id"], one.Data[1]["replay_id"])

	for path, param := range map[string]string{
		"/v1/endpoints/" + epID + "/attempts?outcome=retry":       "outcome",
		"/v1/endpoints/" + epID + "/attempts?limit=0":             "limit",
		"/v1/endpoints/" + epID + "/attempts?cursor=AAAAAAAAAAAA": "cursor",
		"/v1/endpoints/" + epID + "/attempts?from=yesterday":      "from",
	} {
		var out map[string]any
		assert.Equal(t, http.StatusBadRequest, e.call("GET", path, nil, &out), path)
		assert.True(t, strings.HasPrefix(out["error"].(map[string]any)["message"].(string), param), "%s: %v", path, out)
	}
	assert.Equal(t, http.StatusNotFound, e.call("GET", "/v1/replays/rpl_nope/attempts", nil, nil))
	assert.Equal(t, http.StatusNotFound, e.call("GET", "/v1/endpoints/whep_nope/attempts", nil, nil))
}

// TestEndpointHealth logs attempts at known times and reads the health
// GET /v1/endpoints/{id} reports.
func TestEndpointHealth(t *testing.T) {
	e := newEnv(t, 1)
	s := newSink(t)
	id := e.endpoint(s)
	var ep map[string]any
	require.Equal(t, http.StatusOK, e.call("GET", "/v1/endpoints/"+id, nil, &ep))
	assert.Equal(t, map[string]any{"last_hour": map[string]any{"attempts": 0.0, "failures": 0.0},
		"last_day": map[string]any{"attempts": 0.0, "failures": 0.0}, "consecutive_failures": 0.0,
		"last_success_at": nil, "last_failure_at": nil}, ep["health"], "no attempts yet")

	now := time.Now().UTC().Truncate(time.Millisecond)
	log := func(ago time.Duration, outcome webhook.Outcome, err string) Record {
		return Record{EndpointID: id, EventID: fmt.Sprintf("evt_%d", ago), Attempt: 1,
			Result: webhook.Attempt{Outcome: outcome, Status: 200, Err: err}, At: now.Add(-ago)}
	}
	recs := []Record{
		log(30*time.Hour, webhook.Failed, "HTTP 410"),           // outside the day
		log(5*time.Hour, webhook.Delivered, ""),                 // the day
		log(3*time.Hour, webhook.Delivered, ""),                 // the last success
		log(2*time.Hour, webhook.Retry, "connection failed"),    // failures since
		log(50*time.Minute, webhook.Retry, "HTTP 503"),          // the hour
		log(10*time.Minute, webhook.Failed, "HTTP 500 at last"), // the last failure
	}
	require.NoError(t, NewStore(e.conn, e.db).RecordAttempts(context.Background(), recs))
	// Another endpoint's attempts count for nothing here.
	other := log(time.Minute, webhook.Failed, "not ours")
	other.EndpointID = "whep_other"
	require.NoError(t, NewStore(e.conn, e.db).RecordAttempts(context.Background(), []Record{other}))

	require.Equal(t, http.StatusOK, e.call("GET", "/v1/endpoints/"+id, nil, &ep))
	h := ep["health"].(map[string]any)
	assert.Equal(t, map[string]any{"attempts": 2.0, "failures": 2.0}, h["last_hour"])
	assert.Equal(t, map[string]any{"attempts": 5.0, "failures": 3.0}, h["last_day"])
	assert.EqualValues(t, 3, h["consecutive_failures"])
	assert.Equal(t, now.Add(-3*time.Hour).Format("2006-01-02T15:04:05.000Z"), h["last_success_at"])
	assert.Equal(t, now.Add(-10*time.Minute).Format("2006-01-02T15:04:05.000Z"), h["last_failure_at"])
	assert.Equal(t, "HTTP 500 at last", h["last_error"])
}

// TestReplayListPages pages GET /v1/replays: newest first, each once,
// replays created between pages in none of the later ones.
func TestReplayListPages(t *testing.T) {
	e := newEnv(t, 5)
	ep := e.endpoint(newSink(t))
	create := func() string {
		var job map[string]any
		require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": 0}, &job))
		return job["id"].(string)
	}
	var made []string
	for range 12 {
		made = append(made, create())
	}
	var got []map[string]any
	cursor := ""
	for n := 0; ; n++ {
		var page struct {
			Data       []map[string]any `json:"data"`
			NextCursor *string          `json:"next_cursor"`
		}
		path := "/v1/replays?limit=5"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		require.Equal(t, http.StatusOK, e.call("GET", path, nil, &page))
		assert.LessOrEqual(t, len(page.Data), 5)
		got = append(got, page.Data...)
		if n == 0 {
			create() // newer than every listed one: on no later page
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	var ids []string
	for i, j := range got {
		ids = append(ids, j["id"].(string))
		if i > 0 {
			prev := got[i-1]
			newer := prev["created_at"].(string) > j["created_at"].(string) ||
				prev["created_at"] == j["created_at"] && prev["id"].(string) > j["id"].(string)
			assert.True(t, newer, "newest first: %v then %v", prev, j)
		}
	}
	sort.Strings(ids)
	sort.Strings(made)
	assert.Equal(t, made, ids, "each of the replays made before the first page, once")
	var out map[string]any
	assert.Equal(t, http.StatusBadRequest, e.call("GET", "/v1/replays?cursor=nope", nil, &out))
	assert.Equal(t, http.StatusBadRequest, e.call("GET", "/v1/replays?limit=1001", nil, &out))
}

// TestWorkerAppliesRetention: a worker lets attempts older than its
// retention go when it starts (on 18.16, the months wholly older).
func TestWorkerAppliesRetention(t *testing.T) {
	e := newEnv(t, 1)
	now := time.Now()
	store := NewStore(e.conn, e.db)
	require.NoError(t, store.RecordAttempts(context.Background(), []Record{
		{EndpointID: "whep_1", EventID: "old", Attempt: 1, At: now.AddDate(0, -4, 0)},
		{EndpointID: "whep_1", EventID: "new", Attempt: 1, At: now.Add(-time.Hour)},
	}))
	e.worker(WorkerConfig{DeliveriesRetention: 30 * 24 * time.Hour})
	require.Eventually(t, func() bool {
		var n uint64
		require.NoError(t, e.conn.QueryRow(context.Background(), "SELECT count() FROM `"+e.db+"`.deliveries").Scan(&n))
		return n == 1
	}, 30*time.Second, 50*time.Millisecond, "the four-month-old attempt goes")
}

// TestReplayFilters: a replay with dimension filters, dry run and real,
// sends exactly the events whose dimensions hold the values; bad filters
// are a 400 naming filters.
func TestReplayFilters(t *testing.T) {
	e := newEnv(t, 300)
	s := newSink(t)
	ep := e.endpoint(s)
	from, to := since, since.Add(10*24*time.Hour)
	// The two most common recipient domains of the range, computed from the
	// events as stored.
	count := map[string]int{}
	for _, ev := range e.events {
		if ev.Service == "send" && ev.CreatedAt >= from.UnixMilli() && ev.CreatedAt < to.UnixMilli() {
			count[ev.Dims.RecipientDomain]++
		}
	}
	var domains []string
	for d := range count {
		if d != "" {
			domains = append(domains, d)
		}
	}
	sort.Slice(domains, func(i, j int) bool { return count[domains[i]] > count[domains[j]] })
	require.GreaterOrEqual(t, len(domains), 2)
	keep := domains[:2]
	var want []string
	for _, id := range e.want(from, to, "*") {
		for _, ev := range e.events {
			if ev.ID == id && slices.Contains(keep, ev.Dims.RecipientDomain) {
				want = append(want, id)
			}
		}
	}
	require.NotEmpty(t, want)
	body := map[string]any{"endpoint_id": ep, "since": from.UnixMilli(), "until": to.UnixMilli(),
		"filters": map[string]string{"recipient_domain": strings.ToUpper(keep[0]) + "," + keep[1]}}
	var dry map[string]any
	body["dry_run"] = true
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/replays", body, &dry))
	assert.EqualValues(t, len(want), dry["matched"])
	delete(body, "dry_run")
	e.worker(WorkerConfig{})
	var job map[string]any
	require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", body, &job))
	assert.Equal(t, map[string]any{"recipient_domain": []any{keep[0], keep[1]}}, job["filters"])
	job = e.waitDone(job["id"].(string))
	assert.EqualValues(t, len(want), job["delivered"])
	assert.Equal(t, want, s.got(), "exactly the filtered events, in order")

	// recipient: an address among data.to, string or list, its domain in
	// any case; computed from the original JSON.
	var addr string
	var wantRcpt int
	for _, ev := range e.events {
		var env struct {
			Data struct{ To any } `json:"data"`
		}
		require.NoError(t, json.Unmarshal(ev.Raw, &env))
		list, ok := env.Data.To.([]any)
		if ev.Service != "send" || !ok || len(list) < 2 {
			continue
		}
		if addr == "" {
			addr = list[1].(string)
		}
	}
	require.NotEmpty(t, addr, "the sample has emails to several recipients")
	for _, ev := range e.events {
		if ev.Service != "send" || ev.CreatedAt < from.UnixMilli() || ev.CreatedAt >= to.UnixMilli() {
			continue
		}
		var env struct {
			Data struct{ To any } `json:"data"`
		}
		require.NoError(t, json.Unmarshal(ev.Raw, &env))
		list, ok := env.Data.To.([]any)
		if !ok {
			list = []any{env.Data.To}
		}
		if slices.Contains(list, any(addr)) {
			wantRcpt++
		}
	}
	require.Positive(t, wantRcpt)
	at := strings.LastIndex(addr, "@")
	body = map[string]any{"endpoint_id": ep, "since": from.UnixMilli(), "until": to.UnixMilli(), "dry_run": true,
		"filters": map[string]string{"recipient": addr[:at+1] + strings.ToUpper(addr[at+1:])}}
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/replays", body, &dry))
	assert.EqualValues(t, wantRcpt, dry["matched"], "recipient %s", addr)

	for _, f := range []map[string]string{{"raw": "x"}, {"npa": ""}, {"voice": manyValues(101)}} {
		var out map[string]any
		require.Equal(t, http.StatusBadRequest, e.call("POST", "/v1/replays", map[string]any{"endpoint_id": ep, "since": 0, "filters": f}, &out), "%v", f)
		assert.True(t, strings.HasPrefix(out["error"].(map[string]any)["message"].(string), "filters"), "%v", out)
	}
}

// manyValues is a filter's value list of n distinct values.
func manyValues(n int) string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprint("v", i)
	}
	return strings.Join(vs, ",")
}

// TestAnnouncedReplayWakesWorkerElsewhere: a worker in another process than
// the API's (here one that polls hourly) starts a new replay at once when
// the API's Announcer produces it to the wake topic.
func TestAnnouncedReplayWakesWorkerElsewhere(t *testing.T) {
	for _, seeded := range []bool{true, false} {
		t.Run(fmt.Sprintf("topic there before: %v", seeded), func(t *testing.T) { announcedReplayWakes(t, seeded) })
	}
}

// announcedReplayWakes runs TestAnnouncedReplayWakesWorkerElsewhere on a
// broker that does not create topics as they are first used (as kfake by
// default, and many a production cluster): with the wake topic there
// before, or left to the listening worker to create.
func announcedReplayWakes(t *testing.T, seeded bool) {
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	if seeded {
		opts = append(opts, kfake.SeedTopics(1, DefaultWakeTopic))
	}
	cluster, err := kfake.NewCluster(opts...)
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	e := newEnv(t, 100)
	s := newSink(t)
	ep := e.endpoint(s)
	e.runWorker(WorkerConfig{Poll: time.Hour, Wakes: &WakeSource{Brokers: cluster.ListenAddrs(), Topic: DefaultWakeTopic}})
	ann, err := NewAnnouncer(cluster.ListenAddrs(), DefaultWakeTopic, nil)
	require.NoError(t, err)
	t.Cleanup(ann.Close)
	e.routes.OnCreate(ann.Announce)
	e.replayTwice(ep, s)
}
