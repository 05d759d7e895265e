package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dodev/hindsight/internal/apiclient"
	"github.com/dodev/hindsight/internal/bareloop"
	"github.com/dodev/hindsight/internal/chtest"
)

// replayConcurrency is the deliveries in flight, for the replay and for
// the bare loop.
const replayConcurrency = 64

// replayRounds is how many times each mode runs, the modes in turn: a
// replay takes a few seconds on a shared machine, and what failing first
// attempts add is a difference of two of them.
const replayRounds = 3

// replayResult is the replay section: each mode's replay beside a bare
// net/http loop sending the same bodies to the same receiver.
type replayResult struct {
	Events      int
	Rounds      int
	Runs        []replayRun   // each mode's medians
	Added       time.Duration // median of the rounds' failing replay minus clean replay
	WorkerPeak  int64         // the replay worker's peak RSS
	Concurrency int
}

type replayRun struct {
	Mode         string
	Replay, Bare time.Duration
	First        time.Duration // from the replay's creation to the first request received
	FromFirst    time.Duration // from that request to the replay's completion
}

// receiver answers 204, or, while failing, 500 to the first attempt of
// one event in ten (by the hash of its webhook-id).
type receiver struct {
	url     string
	failing atomic.Bool
	got     atomic.Int64
	first   atomic.Int64 // when the first request since reset came, in Unix ns
	mu      sync.Mutex
	tried   map[string]bool
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if rc.first.Load() == 0 {
		rc.first.CompareAndSwap(0, time.Now().UnixNano())
	}
	_, _ = io.Copy(io.Discard, req.Body)
	if rc.failing.Load() {
		id := req.Header.Get("webhook-id")
		h := fnv.New32a()
		h.Write([]byte(id))
		rc.mu.Lock()
		first := !rc.tried[id]
		rc.tried[id] = true
		rc.mu.Unlock()
		if first && h.Sum32()%10 == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
	}
	rc.got.Add(1)
	w.WriteHeader(http.StatusNoContent)
}

// reset starts a mode: failing or not, nothing received or tried.
func (rc *receiver) reset(failing bool) {
	rc.failing.Store(failing)
	rc.got.Store(0)
	rc.first.Store(0)
	rc.mu.Lock()
	rc.tried = map[string]bool{}
	rc.mu.Unlock()
}

func (r *rig) replay(ctx context.Context, n int) (replayResult, error) {
	res := replayResult{Events: n, Rounds: replayRounds, Concurrency: replayConcurrency}
	const db, key = "bench_replay", "bench-key-0123456789abcdef"
	if err := chtest.Fill(ctx, r.conn, db, n, time.Duration(n)*259*time.Millisecond); err != nil {
		return res, err
	}
	bodies, err := r.bodies(ctx, db)
	if err != nil {
		return res, err
	}
	rc := &receiver{tried: map[string]bool{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	srv := &http.Server{Handler: rc}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	rc.url = "http://" + l.Addr().String() + "/hook"

	addr, err := freeAddr()
	if err != nil {
		return res, err
	}
	env := []string{"HINDSIGHT_DATABASE=" + db, "HINDSIGHT_API_KEY=" + key}
	// Both on the broker: the API announces each new replay there, and the
	// worker starts it at once rather than at its next poll.
	kafka := strings.Join(r.brokers, ",")
	api, err := r.child("replay-api", env, "api", "--http", addr, "--allow-private-endpoints", "--kafka", kafka)
	if err != nil {
		return res, err
	}
	defer api.stop()
	worker, err := r.child("replay-worker", env, "replay-worker", "--allow-private-endpoints", "--kafka", kafka)
	if err != nil {
		return res, err
	}
	defer worker.stop()
	if err := waitReady(ctx, "http://"+addr+"/readyz", api); err != nil {
		return res, fmt.Errorf("%w\n%s", err, r.logTail("replay-api"))
	}
	c, err := apiclient.NewClientWithResponses("http://"+addr, apiclient.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+key)
		return nil
	}))
	if err != nil {
		return res, err
	}
	all := []string{"*"}
	ep, err := c.CreateEndpointWithResponse(ctx, apiclient.CreateEndpointJSONRequestBody{Url: &rc.url, EnabledEvents: &all})
	switch {
	case err != nil:
		return res, fmt.Errorf("create the endpoint: %w", err)
	case ep.JSON201 == nil:
		return res, fmt.Errorf("create the endpoint: %s: %s", ep.Status(), ep.Body)
	}
	modes := []struct {
		name    string
		failing bool
	}{{"every first attempt answered", false}, {"one event in ten answered 500 at its first attempt", true}}
	took, bare := make([][]time.Duration, len(modes)), make([][]time.Duration, len(modes))
	first, fromFirst := make([][]time.Duration, len(modes)), make([][]time.Duration, len(modes))
	for range replayRounds {
		for i, mode := range modes {
			rc.reset(mode.failing)
			b, err := bareLoop(ctx, rc, bodies)
			if err != nil {
				return res, err
			}
			rc.reset(mode.failing)
			t, f, err := replayAll(ctx, c, ep.JSON201.Id, n, worker, rc)
			if err != nil {
				return res, fmt.Errorf("%w\n%s", err, r.logTail("replay-worker"))
			}
			r.log.Info("replayed", "mode", mode.name, "took", t.Round(time.Millisecond), "first", f.Round(time.Millisecond), "bare", b.Round(time.Millisecond))
			took[i], bare[i] = append(took[i], t), append(bare[i], b)
			first[i], fromFirst[i] = append(first[i], f), append(fromFirst[i], t-f)
		}
	}
	var added []time.Duration // each round's failing replay minus its clean one
	for round := range replayRounds {
		added = append(added, took[1][round]-took[0][round])
	}
	for i, mode := range modes {
		res.Runs = append(res.Runs, replayRun{Mode: mode.name, Replay: latenciesOf(took[i]).P50, Bare: latenciesOf(bare[i]).P50,
			First: latenciesOf(first[i]).P50, FromFirst: latenciesOf(fromFirst[i]).P50})
	}
	res.Added = latenciesOf(added).P50
	if err := worker.sample(); err != nil {
		return res, err
	}
	res.WorkerPeak = worker.peak
	return res, nil
}

// bodies reads every stored event's bytes, as the bare loop sends them.
func (r *rig) bodies(ctx context.Context, db string) ([][]byte, error) {
	rows, err := r.conn.Query(ctx, "SELECT raw FROM `"+db+"`.events ORDER BY created_at")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		out = append(out, []byte(raw))
	}
	return out, rows.Err()
}

// bareLoop posts every body to the receiver, replayConcurrency at a time,
// each again at once when it is answered 500 (bareloop.Post), and returns
// how long that took, checking the receiver got them all.
func bareLoop(ctx context.Context, rc *receiver, bodies [][]byte) (time.Duration, error) {
	took, err := bareloop.Post(ctx, rc.url, bodies, replayConcurrency)
	if err != nil {
		return took, err
	}
	if got := rc.got.Load(); got != int64(len(bodies)) {
		return took, fmt.Errorf("the bare loop delivered %d of %d", got, len(bodies))
	}
	return took, nil
}

// replayAll creates an unordered replay of every event to endpoint ep and
// returns the time from its creation to its completion, with all n
// delivered to rc, and to the first request rc received.
//
// Reading a replay costs ClickHouse 18.16 about 4 ms of CPU (a FINAL read
// and the cancellations), so reading it every 20 ms would take a fifth of a
// core from the replay being timed. Until rc has every event the replay is
// read once a second, as the console does while one runs; then every 20 ms
// until it is recorded completed.
func replayAll(ctx context.Context, c *apiclient.ClientWithResponses, ep string, n int, worker *childProc, rc *receiver) (took, first time.Duration, err error) {
	in := apiclient.CreateReplayJSONRequestBody{EndpointId: ep, Ordered: new(false), Concurrency: new(int32(replayConcurrency))}
	var until apiclient.ReplayInput_Until
	in.Livemode = new(apiclient.ReplayInput_Livemode)
	if err := errors.Join(in.Since.FromReplayInputSince0("2026-01-01T00:00:00Z"), until.FromReplayInputUntil0("2027-01-01T00:00:00Z"),
		in.Livemode.FromReplayInputLivemode1(apiclient.ReplayInputLivemode1All)); err != nil {
		return 0, 0, err
	}
	in.Until = &until
	start := time.Now()
	job, err := c.CreateReplayWithResponse(ctx, in)
	switch {
	case err != nil:
		return 0, 0, fmt.Errorf("create the replay: %w", err)
	case job.JSON202 == nil:
		return 0, 0, fmt.Errorf("create the replay: %s: %s", job.Status(), job.Body)
	}
	id := job.JSON202.Id
	var read time.Time
	for {
		received := rc.got.Load() >= int64(n)
		if received || time.Since(read) >= time.Second {
			read = time.Now()
			got, err := c.GetReplayWithResponse(ctx, id)
			switch {
			case err != nil:
				return 0, 0, fmt.Errorf("replay %s: %w", id, err)
			case got.JSON200 == nil:
				return 0, 0, fmt.Errorf("replay %s: %s: %s", id, got.Status(), got.Body)
			}
			state := got.JSON200
			switch state.Status {
			case apiclient.ReplayStatusCompleted:
				if state.Delivered != int64(n) {
					return 0, 0, fmt.Errorf("replay %s delivered %d of %d (matched %d)", id, state.Delivered, n, state.Matched)
				}
				return time.Since(start), time.Duration(rc.first.Load() - start.UnixNano()), nil
			case apiclient.ReplayStatusFailed, apiclient.ReplayStatusCancelled:
				return 0, 0, fmt.Errorf("replay %s %s: %s", id, state.Status, got.Body)
			}
			if time.Since(start) > 30*time.Minute {
				return 0, 0, fmt.Errorf("replay %s not done in 30 minutes: %s", id, got.Body)
			}
		}
		if err := worker.sample(); err != nil {
			return 0, 0, err
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return 0, 0, err
		}
	}
}
