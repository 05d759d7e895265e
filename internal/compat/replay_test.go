//go:build chdb

package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/keys"
	"github.com/dodev/hindsight/replay"
	"github.com/dodev/hindsight/replay/webhook"
	"github.com/dodev/hindsight/schema"
)

// TestReplaySQLCompatibility sends every statement package replay issues to
// both engines: endpoints and jobs written and read back, cancels, leases,
// the delivery log and its stats, and a whole replay run by a real worker,
// whose receiver must get the same events in the same order from each.
func TestReplaySQLCompatibility(t *testing.T) {
	ctx := context.Background()
	old, db := chtest.Database(t)
	cur := &chdbConn{s: session(t), version: newVersion}
	events := fixture(t)
	for _, e := range []struct {
		name string
		conn schema.Conn
	}{{"18.16", old}, {"chDB 26.7", cur}} {
		_, err := schema.Migrate(ctx, e.conn, db)
		require.NoError(t, err, "migrate on %s", e.name)
	}
	loadOld(t, old, db, events)
	loadCur(t, cur, db, events)

	type result struct {
		endpoints []replay.Endpoint
		jobs      []replay.Job
		leases    [2]bool
		received  []string
		final     replay.Job
		dry       string
		dryFailed string
		dryFilter string
		attempts  []string
		health    replay.Health
		stats     string
	}
	run := func(name string, conn replay.Conn) result {
		var r result
		store := replay.NewStore(conn, db)
		at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
		ep := replay.Endpoint{ID: "whep_compat", URL: "https://example.com/h", EnabledEvents: []string{"send.email.*", "voip.*"},
			Description: "d", RateLimit: 5, Secret: mustSecret(t), PreviousSecret: "whsec_old", PreviousUntil: at.Add(24 * time.Hour), CreatedAt: at,
			RetrySchedule: []time.Duration{time.Second, 3 * time.Second}, Headers: map[string]string{"X-A": "1", "X-B": "it's"},
			DisableAfter: time.Hour} // its replay's failures ask the log how long the endpoint has failed
		require.NoError(t, store.SaveEndpoint(ctx, ep), name)
		ep.Description = "changed"
		require.NoError(t, store.SaveEndpoint(ctx, ep), name)
		gone := ep
		gone.ID = "whep_gone"
		require.NoError(t, store.SaveEndpoint(ctx, gone), name)
		require.NoError(t, store.DeleteEndpoint(ctx, gone), name)
		// Disabled, enabled, disabled again: the endpoint reads disabled.
		for i, change := range []string{replay.ChangeDisabled, replay.ChangeEnabled, replay.ChangeDisabled} {
			require.NoError(t, store.RecordChange(ctx, replay.Change{EndpointID: ep.ID, At: at.Add(time.Duration(i) * time.Minute),
				Change: change, Reason: "why " + change}), name)
		}
		var err error
		r.endpoints, err = store.Endpoints(ctx, "")
		require.NoError(t, err, name)

		job := replay.Job{ID: "rpl_compat_cancelled", EndpointID: ep.ID, Since: at.Add(-30 * 24 * time.Hour), EnabledEvents: []string{"*"},
			Livemode: "all", Ordered: true, Concurrency: 1, Status: replay.StatusPending, CreatedAt: at}
		require.NoError(t, store.SaveJob(ctx, job), name)
		require.NoError(t, store.Cancel(ctx, job.ID), name)
		r.jobs, err = store.Jobs(ctx, "", 10)
		require.NoError(t, err, name)
		r.leases[0], err = store.TryLease(ctx, "rpl_lease", "w1", time.Minute)
		require.NoError(t, err, name)
		r.leases[1], err = store.TryLease(ctx, "rpl_lease", "w2", time.Minute)
		require.NoError(t, err, name)
		require.NoError(t, store.PruneLeases(ctx, time.Now().Add(-time.Hour)), name)

		// A whole replay to a receiver on loopback.
		var mu sync.Mutex
		recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r2 *http.Request) {
			_, _ = io.Copy(io.Discard, r2.Body)
			mu.Lock()
			id := r2.Header.Get("webhook-id")
			r.received = append(r.received, id)
			mu.Unlock()
			if strings.HasSuffix(id, "7") {
				w.WriteHeader(http.StatusBadRequest) // failed at once: a known subset for only_failed
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		defer recv.Close()
		ep.ID, ep.URL, ep.RateLimit = "whep_recv", recv.URL, 0
		require.NoError(t, store.SaveEndpoint(ctx, ep), name)
		sender := webhook.NewSender(webhook.Policy{AllowPrivate: true}, "compat")
		run := replay.Job{ID: "rpl_compat_run", EndpointID: ep.ID, Since: time.Date(2026, 10, 29, 0, 0, 0, 0, time.UTC),
			Until: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), EnabledEvents: []string{"send.email.*", "voip.call.missed"},
			Livemode: "true", Ordered: true, Concurrency: 1, Status: replay.StatusPending, CreatedAt: at}
		require.NoError(t, store.SaveJob(ctx, run), name)
		// A statement the worker finds refused is a warning in its log.
		var logs bytes.Buffer
		w, err := replay.NewWorker(replay.WorkerConfig{Database: db, Poll: 20 * time.Millisecond, PageSize: 50}, conn, sender,
			slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
		require.NoError(t, err, name)
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = w.Run(wctx) }()
		require.Eventually(t, func() bool {
			j, err := store.Job(ctx, run.ID)
			require.NoError(t, err, name)
			r.final = j
			return j.Done()
		}, 60*time.Second, 20*time.Millisecond, "%s: replay did not end", name)
		cancel()
		<-done
		assert.Empty(t, logs.String(), "%s: the worker's warnings", name)

		api := gin.New()
		replay.NewAPI(db, conn, sender, apiKey, nil).Register(api.Group("/v1", keys.NewChecker(keys.NewStore(conn, db), apiKey, nil).Authenticate))
		r.dry = serve(t, api, http.MethodPost, "/v1/replays",
			`{"endpoint_id":"whep_recv","since":"2026-10-28T00:00:00Z","until":1793836800000,"livemode":"all","enabled_events":["send.*","telco.lookup.completed"],"dry_run":true}`)
		r.dryFailed = serve(t, api, http.MethodPost, "/v1/replays",
			`{"endpoint_id":"whep_recv","since":"2026-10-28T00:00:00Z","only_failed":true,"dry_run":true}`)
		r.dryFilter = serve(t, api, http.MethodPost, "/v1/replays",
			`{"endpoint_id":"whep_recv","since":"2026-10-28T00:00:00Z","filters":{"bounce_type":"hard,soft"},"dry_run":true}`)
		// The attempt log, page by page: (eventId, attempt, outcome, status,
		// type) of each, sorted, as the two runs' times differ.
		for cursor := ""; ; {
			var page struct {
				Data []struct {
					EventID, Outcome, Type string
					Attempt, Status        int
				}
				NextCursor *string `json:"next_cursor"`
			}
			path := "/v1/replays/" + run.ID + "/attempts?limit=7&from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z"
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			require.NoError(t, json.Unmarshal([]byte(serve(t, api, http.MethodGet, path, "")), &page), name)
			for _, a := range page.Data {
				r.attempts = append(r.attempts, fmt.Sprint(a.EventID, a.Attempt, a.Outcome, a.Status, a.Type))
			}
			if page.NextCursor == nil {
				break
			}
			cursor = *page.NextCursor
		}
		sort.Strings(r.attempts)
		h, err := store.Health(ctx, "whep_recv", time.Now())
		require.NoError(t, err, name)
		require.NotNil(t, h.LastSuccessAt, name)
		h.LastSuccessAt, h.LastFailureAt = nil, nil // the runs' times differ
		r.health = h
		var stats struct {
			Totals struct {
				Attempts, Delivered, Failed uint64
			}
			Series []struct{ Bucket string }
		}
		require.NoError(t, json.Unmarshal([]byte(serve(t, api, http.MethodGet,
			"/v1/stats/deliveries?endpoint_id=whep_recv&from=2026-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&granularity=month&tz=America/New_York", "")), &stats))
		stats.Series = nil // buckets depend on when the test ran
		b, _ := json.Marshal(stats)
		r.stats = string(b) + serve(t, api, http.MethodGet, "/v1/stats/deliveries?endpoint_id=whep_compat&from=2026-01-01T00:00:00Z&to=2030-01-01T00:00:00Z", "")
		return r
	}
	a, b := run("18.16", old), run("chDB 26.7", cur)
	for _, r := range []*result{&a, &b} {
		r.final.StartedAt, r.final.FinishedAt = time.Time{}, time.Time{}
	}
	require.NotEmpty(t, a.received)
	assert.Equal(t, a.endpoints, b.endpoints, "endpoints")
	assert.Equal(t, a.jobs, b.jobs, "jobs")
	assert.Equal(t, [2]bool{true, false}, a.leases)
	assert.Equal(t, a.leases, b.leases, "leases")
	assert.Equal(t, a.received, b.received, "the same events, in the same order")
	assert.Equal(t, a.final, b.final, "the finished job")
	assert.Equal(t, replay.StatusCompleted, a.final.Status)
	assert.Equal(t, a.dry, b.dry, "dry run")
	assert.Equal(t, a.dryFailed, b.dryFailed, "dry run of only the failed")
	assert.Len(t, a.attempts, int(a.final.Attempts), "the attempt log holds every attempt")
	assert.Equal(t, a.attempts, b.attempts, "the attempt log")
	assert.Equal(t, a.health, b.health, "endpoint health")
	assert.NotZero(t, a.health.LastDay.Failures)
	assert.NotContains(t, a.dryFailed, `"matched":0`)
	assert.Equal(t, a.dryFilter, b.dryFilter, "dry run with filters")
	assert.Contains(t, a.dryFilter, `"by_type":{"send.email.bounced":`)
	assert.Equal(t, a.stats, b.stats, "delivery stats")
	assert.Contains(t, a.stats, `"Attempts":`+jsonInt(len(a.received)))
	assert.Contains(t, a.stats, `"endpoint_changes":{"disabled":2,"enabled":1}`)
	if assert.NotEmpty(t, a.endpoints) {
		assert.Equal(t, "why disabled", a.endpoints[0].DisabledReason, "the latest change holds")
	}
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

func mustSecret(t *testing.T) string {
	// A fixed secret: both engines must store the same value.
	return "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
}

func serve(t *testing.T, h http.Handler, method, path, body string) string {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Less(t, rec.Code, 300, "%s %s: %s", method, path, rec.Body.String())
	return rec.Body.String()
}
