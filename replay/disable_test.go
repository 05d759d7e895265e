package replay

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/replay/webhook"
)

// notices receives Hindsight's notifications, verifying each with the
// Standard Webhooks reference library.
type notices struct {
	mu   sync.Mutex
	got  []map[string]any
	bad  int
	url  string
	hook *standardwebhooks.Webhook
}

func newNotices(t *testing.T, secret string) *notices {
	n := &notices{}
	var err error
	n.hook, err = standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m map[string]any
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.hook.Verify(body, r.Header) != nil || json.Unmarshal(body, &m) != nil {
			n.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		n.got = append(n.got, m)
	}))
	t.Cleanup(srv.Close)
	n.url = srv.URL
	return n
}

// of returns the data of the notifications of type typ.
func (n *notices) of(typ string) []map[string]any {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []map[string]any
	for _, m := range n.got {
		if m["type"] == typ {
			out = append(out, m["data"].(map[string]any))
		}
	}
	return out
}

// TestAutoDisable: an endpoint that fails every attempt for its
// disable_after is disabled and its replays pause; one with disable_after 0
// keeps going. Enabled again, the replays resume from their cursors and
// every matching event ends delivered or failed for good, none skipped.
// Each change is notified (signed), logged in the delivery stats and counted
// in the worker's metrics.
func TestAutoDisable(t *testing.T) {
	e := newEnv(t, 400)
	secret, err := webhook.NewSecret()
	require.NoError(t, err)
	got := newNotices(t, secret)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notifier, err := NewNotifier(ctx, got.url, secret, e.sender, nil)
	require.NoError(t, err)
	go notifier.Run(ctx)
	e.notify = notifier
	e.routes.NotifyTo(notifier)

	var failing atomic.Bool
	failing.Store(true)
	answer := func(string) int {
		if failing.Load() {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	s, sNever := newSink(t), newSink(t)
	s.fn, sNever.fn = answer, answer
	// Three retries a second apart: an event fails for good after some 3 s,
	// longer than disable_after, however fast the replay gets through its
	// events.
	create := func(s *sink, disableAfter int) string {
		var ep map[string]any
		require.Equal(t, http.StatusCreated, e.call("POST", "/v1/endpoints", map[string]any{"url": s.srv.URL + "/hook",
			"enabled_events": []string{"send.*"}, "retry_schedule": []int{1, 1, 1}, "disable_after": disableAfter}, &ep))
		assert.Equal(t, true, ep["enabled"])
		assert.EqualValues(t, disableAfter, ep["disable_after"])
		assert.Nil(t, ep["disabled_at"])
		sec := ep["secret"].(string)
		s.secret.Store(&sec)
		return ep["id"].(string)
	}
	never := create(sNever, 0)
	ep := create(s, 2)
	var def map[string]any
	require.Equal(t, http.StatusCreated, e.call("POST", "/v1/endpoints", map[string]any{"url": s.srv.URL, "enabled_events": []string{"*"}}, &def))
	assert.EqualValues(t, 86400, def["disable_after"], "24 h unless the endpoint says otherwise")

	w, _ := e.runWorker(WorkerConfig{PageSize: 20})
	replay := func(endpoint string, ordered bool) string {
		var job map[string]any
		in := map[string]any{"endpoint_id": endpoint, "since": since, "until": until, "enabled_events": []string{"send.*"}, "ordered": ordered}
		if !ordered {
			in["concurrency"] = 8
		}
		require.Equal(t, http.StatusAccepted, e.call("POST", "/v1/replays", in, &job), "%v", job)
		return job["id"].(string)
	}
	unordered, ordered, other := replay(ep, false), replay(ep, true), replay(never, false)

	status := func(id string) string {
		var job map[string]any
		e.call("GET", "/v1/replays/"+id, nil, &job)
		return job["status"].(string)
	}
	require.Eventually(t, func() bool { return status(unordered) == StatusPaused && status(ordered) == StatusPaused },
		30*time.Second, 50*time.Millisecond, "both replays of the failing endpoint pause")
	var view map[string]any
	require.Equal(t, http.StatusOK, e.call("GET", "/v1/endpoints/"+ep, nil, &view))
	assert.Equal(t, false, view["enabled"])
	assert.NotNil(t, view["disabled_at"])
	assert.Contains(t, view["disabled_reason"], "every attempt failed for 2s")
	assert.Contains(t, view["disabled_reason"], "HTTP 500")
	// The other endpoint failed every attempt too, for longer than 2 s.
	job := e.waitDone(other)
	assert.Equal(t, StatusCompleted, job["status"])
	assert.EqualValues(t, 0, job["delivered"])
	var span int64
	require.NoError(t, e.conn.QueryRow(context.Background(), "SELECT max(at) - min(at) FROM `"+e.db+"`.deliveries WHERE endpoint_id = ?", never).Scan(&span))
	assert.Greater(t, span, int64(2000))
	require.Equal(t, http.StatusOK, e.call("GET", "/v1/endpoints/"+never, nil, &view))
	assert.Equal(t, true, view["enabled"], "disable_after 0 never disables")
	require.Eventually(t, func() bool { return len(got.of(NoticeEndpointDisabled)) == 1 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, ep, got.of(NoticeEndpointDisabled)[0]["endpoint_id"])
	assert.Equal(t, 1.0, testutil.ToFloat64(w.metrics.disabled))

	// A paused job counts the attempts it made, every one in the log.
	for _, id := range []string{unordered, ordered} {
		var job map[string]any
		e.call("GET", "/v1/replays/"+id, nil, &job)
		var logged uint64
		require.NoError(t, e.conn.QueryRow(context.Background(), "SELECT count() FROM `"+e.db+"`.deliveries WHERE replay_id = ?", id).Scan(&logged))
		assert.Positive(t, logged, id)
		assert.EqualValues(t, logged, job["attempts"], id)
	}

	// Paused, nothing is attempted.
	attempts := func() uint64 {
		var n uint64
		require.NoError(t, e.conn.QueryRow(context.Background(), "SELECT count() FROM `"+e.db+"`.deliveries WHERE endpoint_id = ?", ep).Scan(&n))
		return n
	}
	before := attempts()
	time.Sleep(1500 * time.Millisecond)
	assert.Equal(t, before, attempts(), "a paused replay makes no attempts")
	assert.Equal(t, StatusPaused, status(unordered))

	// Enabled again: both resume and end, every event accounted for.
	failing.Store(false)
	require.Equal(t, http.StatusOK, e.call("PATCH", "/v1/endpoints/"+ep, map[string]any{"enabled": true}, &view))
	assert.Equal(t, true, view["enabled"])
	assert.Nil(t, view["disabled_at"])
	want := e.want(since, until, "send.*")
	for _, id := range []string{unordered, ordered} {
		job := e.waitDone(id)
		assert.Equal(t, StatusCompleted, job["status"], id)
		assert.EqualValues(t, len(want), job["matched"], id)
		assert.EqualValues(t, len(want), job["delivered"].(float64)+job["failed"].(float64), "%s: each event delivered or failed for good", id)
	}
	// An event not delivered was failed for good before the pause: its
	// latest attempt in the log says so.
	delivered := map[string]bool{}
	for _, id := range s.got() {
		delivered[id] = true
	}
	rows, err := e.conn.Query(context.Background(), "SELECT event_id, argMax(CAST(outcome AS String), at) FROM `"+e.db+"`.deliveries WHERE endpoint_id = ? GROUP BY event_id", ep)
	require.NoError(t, err)
	latest := map[string]string{}
	for rows.Next() {
		var id, outcome string
		require.NoError(t, rows.Scan(&id, &outcome))
		latest[id] = outcome
	}
	require.NoError(t, rows.Err())
	for _, id := range want {
		if !delivered[id] {
			assert.Equal(t, "failed", latest[id], "event %s neither delivered nor failed for good", id)
		}
	}
	assert.NotEmpty(t, delivered, "the resumed replays delivered")
	require.Eventually(t, func() bool { return len(got.of(NoticeEndpointEnabled)) == 1 }, 10*time.Second, 20*time.Millisecond)
	assert.Zero(t, got.bad, "every notification verifies")

	var stats map[string]any
	require.Equal(t, http.StatusOK, e.call("GET", "/v1/stats/deliveries?endpoint_id="+ep+"&from="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), nil, &stats))
	assert.Equal(t, map[string]any{"disabled": 1.0, "enabled": 1.0}, stats["endpoint_changes"])
	require.Equal(t, http.StatusOK, e.call("GET", "/v1/stats/deliveries?endpoint_id="+never+"&from="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), nil, &stats))
	assert.Equal(t, map[string]any{"disabled": 0.0, "enabled": 0.0}, stats["endpoint_changes"])

	// Disabled on request, then a replay created meanwhile waits paused.
	require.Equal(t, http.StatusOK, e.call("PATCH", "/v1/endpoints/"+ep, map[string]any{"enabled": false}, &view))
	assert.Equal(t, "disabled by request", view["disabled_reason"])
	later := replay(ep, false)
	require.Eventually(t, func() bool { return status(later) == StatusPaused }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, http.StatusOK, e.call("POST", "/v1/replays/"+later+"/cancel", nil, nil))
	assert.Equal(t, StatusCancelled, e.waitDone(later)["status"], "a paused replay can be cancelled")
}
