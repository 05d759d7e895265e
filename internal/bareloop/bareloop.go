// Package bareloop is what a replay is measured against: a plain net/http
// client posting bodies to a receiver, with none of a replay's reading,
// signing, retry schedule or attempt log. make bench (cmd/bench) and the
// replay package's benchmarks both run it.
package bareloop

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Post posts every body to url from concurrency goroutines, each with the
// header webhook-id: bare_<its index>, again at once while it is answered
// anything but 2xx, and returns how long that took.
func Post(ctx context.Context, url string, bodies [][]byte, concurrency int) (time.Duration, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	defer client.CloseIdleConnections()
	var next atomic.Int64
	errs := make([]error, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for g := range concurrency {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(bodies)); i = next.Add(1) - 1 {
				if errs[g] = post(ctx, client, url, bodies[i], "bare_"+strconv.FormatInt(i, 10)); errs[g] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// post sends body until it is answered 2xx.
func post(ctx context.Context, client *http.Client, url string, body []byte, id string) error {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("webhook-id", id)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return nil
		}
	}
}
