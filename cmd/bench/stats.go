package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/host"
	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/query"
)

// statsClients is how many clients ask at once.
const statsClients = 8

// statsPath is the request timed: a day series over October 2026 in New
// York, all of the filled month.
const statsPath = "/v1/stats/send?from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z&granularity=day&tz=America/New_York"

// statsResult is the stats section: the same request from one client, one
// at a time, and from Clients at once.
type statsResult struct {
	Events, Clients, Requests int
	SingleAPI, SingleDirect   latencies
	API, Direct               latencies
	APIPeakRSS                int64
}

// latencies are the p50 and p99 of a set of request times.
type latencies struct{ P50, P99 time.Duration }

func latenciesOf(ds []time.Duration) latencies {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return latencies{P50: at(0.50), P99: at(0.99)}
}

func (r *rig) stats(ctx context.Context) (statsResult, error) {
	res := statsResult{Events: r.cfg.statsEvents, Clients: statsClients, Requests: statsClients * r.cfg.rounds}
	const db = "bench_stats"
	if err := chtest.Fill(ctx, r.conn, db, r.cfg.statsEvents, 30*24*time.Hour); err != nil {
		return res, err
	}
	const key = "bench-key-0123456789abcdef"
	stmt, args, err := r.statsStatement(ctx, db, key)
	if err != nil {
		return res, err
	}
	addr, err := freeAddr()
	if err != nil {
		return res, err
	}
	c, err := r.child("api", []string{"HINDSIGHT_DATABASE=" + db, "HINDSIGHT_API_KEY=" + key}, "api", "--http", addr)
	if err != nil {
		return res, err
	}
	defer c.stop()
	if err := waitReady(ctx, "http://"+addr+"/readyz", c); err != nil {
		return res, fmt.Errorf("%w\n%s", err, r.logTail("api"))
	}
	viaAPI := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+statsPath, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", statsPath, resp.Status)
		}
		return nil
	}
	direct := func() error {
		rows, err := r.conn.Query(httpapi.LimitsOf(ctx).Bind(ctx), stmt, args...) // the API's default limits
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
		}
		return rows.Err()
	}
	// Warm the caches both use, then take turns, a burst of each per
	// round, so a noisy neighbour slows both alike.
	if err := errors.Join(viaAPI(), direct()); err != nil {
		return res, err
	}
	// turns times rounds of a burst of clients requests each way.
	turns := func(clients int) (api, sent latencies, err error) {
		var apiTimes, directTimes []time.Duration
		for range r.cfg.rounds {
			ts, err := burst(clients, viaAPI)
			if err != nil {
				return api, sent, err
			}
			apiTimes = append(apiTimes, ts...)
			if ts, err = burst(clients, direct); err != nil {
				return api, sent, err
			}
			directTimes = append(directTimes, ts...)
		}
		return latenciesOf(apiTimes), latenciesOf(directTimes), nil
	}
	if res.SingleAPI, res.SingleDirect, err = turns(1); err != nil {
		return res, err
	}
	if res.API, res.Direct, err = turns(statsClients); err != nil {
		return res, err
	}
	if err := c.sample(); err != nil {
		return res, err
	}
	res.APIPeakRSS = c.peak
	return res, nil
}

// burst runs f from n goroutines at once and returns each call's time.
func burst(n int, f func() error) ([]time.Duration, error) {
	times := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			t0 := time.Now()
			errs[i] = f()
			times[i] = time.Since(t0)
		})
	}
	wg.Wait()
	return times, errors.Join(errs...)
}

// statsStatement serves statsPath from an API in this process and returns
// the statement it sent for the counts: what the peer sends directly.
func (r *rig) statsStatement(ctx context.Context, db, key string) (string, []any, error) {
	h, err := host.New(host.Config{Database: db, APIKey: key}, r.conn, nil)
	if err != nil {
		return "", nil, err
	}
	rec := &recorder{Conn: r.conn}
	api, err := query.New(query.Config{Database: db, CursorKey: key}, rec, nil)
	if err != nil {
		return "", nil, err
	}
	api.Register(h.V1())
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, statsPath, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	w := httptest.NewRecorder()
	h.Handler().ServeHTTP(w, req)
	switch {
	case w.Code != http.StatusOK:
		return "", nil, fmt.Errorf("GET %s in process: %d %s", statsPath, w.Code, w.Body)
	case rec.stmt == "":
		return "", nil, errors.New("the stats request sent no statement with its counts (\" AS kind\")")
	}
	return rec.stmt, rec.args, nil
}

// recorder passes queries on and keeps the stats statement: the one that
// names its parts' kind.
type recorder struct {
	query.Conn
	stmt string
	args []any
}

func (r *recorder) Query(ctx context.Context, q string, args ...any) (driver.Rows, error) {
	if strings.Contains(q, " AS kind") {
		r.stmt, r.args = q, args
	}
	return r.Conn.Query(ctx, q, args...)
}

// freeAddr returns a loopback address no one listens on.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitReady polls url until it answers 200, for a minute, as long as c
// runs.
func waitReady(ctx context.Context, url string, c *childProc) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if err := c.sample(); err != nil {
			return err
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s did not answer 200 within a minute", url)
}
