// Package host is Hindsight's one HTTP host, as Grafana Tempo's app is for
// its modules: the Gin engine and its middleware (request ids, recovery,
// request logs and metrics, the strict query string, the API key check, the
// cap on requests in flight, the ClickHouse limits every /v1 query carries),
// the probes, GET /metrics, the OpenAPI document of every route, and the
// HTTP server's own bounds. It owns no route of the product: cmd builds a
// Host and mounts query's, replay's and the dashboard's on it. The keys
// routes are mounted here, since checking keys is the host's.
package host
