package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/dodev/hindsight/internal/host"
)

// runHealthcheck is the image's HEALTHCHECK: it asks this container's
// process whether it is up, and fails unless it answers 200 within 3 s. A
// role serving the API is asked GET /healthz on --http; one that serves
// only --metrics (ingest, replay-worker) is asked GET /metrics there. Both
// come from the role's own environment (HINDSIGHT_HTTP, HINDSIGHT_METRICS).
func runHealthcheck(ctx context.Context, args []string) error {
	fs := newFlags("healthcheck")
	httpAddr := fs.String("http", host.DefaultAddr, "the API's listen address")
	metricsAddr := fs.String("metrics", "", "the metrics listen address of a role without the API")
	if err := fs.parse(args); err != nil {
		return helpOK(err)
	}
	url := "http://" + loopback(*httpAddr) + "/healthz"
	if *metricsAddr != "" {
		url = "http://" + loopback(*metricsAddr) + "/metrics"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return usagef("healthcheck %s: %v", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return nil
}

// loopback turns a listen address into one to dial from the same host: a
// wildcard host (0.0.0.0, ::, none) becomes 127.0.0.1.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
