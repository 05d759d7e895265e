package host_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/apitest"
	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/host"
	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/query"
	"github.com/dodev/hindsight/replay"
	"github.com/dodev/hindsight/replay/webhook"
	"github.com/dodev/hindsight/schema"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

const key = "test-key-0123456789abcdef"

// mount builds a host of cfg over conn and mounts query's and replay's
// routes on it, as cmd does.
func mount(t *testing.T, conn driver.Conn, cfg host.Config, log *slog.Logger, ready ...host.ReadyFunc) (*httptest.Server, *host.Host) {
	t.Helper()
	h, err := host.New(cfg, conn, log, ready...)
	require.NoError(t, err)
	q, err := query.New(query.Config{Database: cfg.Database, CursorKey: cfg.APIKey}, conn, log)
	require.NoError(t, err)
	q.Register(h.V1())
	replay.NewAPI(cfg.Database, conn, webhook.NewSender(webhook.Policy{}, "test"), cfg.APIKey, log).Register(h.V1())
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(srv.Close)
	return srv, h
}

// fullAPI is the API as cmd mounts it on a migrated database, logging into
// logs.
func fullAPI(t *testing.T, logs *bytes.Buffer, ready ...host.ReadyFunc) (*httptest.Server, *host.Host, string) {
	t.Helper()
	conn, db := chtest.MigratedDatabase(t)
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, h := mount(t, conn, host.Config{Database: db, APIKey: key}, log, ready...)
	return srv, h, db
}

func get(t *testing.T, srv *httptest.Server, path, bearer string) (int, map[string]any) {
	t.Helper()
	var body map[string]any
	code := apitest.Get(t, srv.URL+path, bearer, &body) // every response is JSON
	return code, body
}

func TestAuth(t *testing.T) {
	srv, _, _ := fullAPI(t, &bytes.Buffer{})
	for name, bearer := range map[string]string{"missing": "", "wrong": "not-the-key-at-all"} {
		t.Run(name, func(t *testing.T) {
			for _, p := range []string{"/v1/stats/send", "/v1/replays", "/v1/keys", "/v1/openapi.json"} {
				code, body := get(t, srv, p, bearer)
				assert.Equal(t, http.StatusUnauthorized, code, p)
				e := body["error"].(map[string]any)
				assert.Equal(t, "unauthorized", e["code"], p)
				assert.NotEmpty(t, e["message"], p)
			}
		})
	}
	code, _ := get(t, srv, "/healthz", "")
	assert.Equal(t, http.StatusOK, code, "health needs no key")
}

func TestReadyz(t *testing.T) {
	var ingestErr atomic.Pointer[error]
	srv, _, _ := fullAPI(t, &bytes.Buffer{}, func() error {
		if p := ingestErr.Load(); p != nil {
			return *p
		}
		return nil
	})
	code, _ := get(t, srv, "/readyz", "")
	assert.Equal(t, http.StatusOK, code)
	notRunning := errors.New("ingest is not running: clickhouse 10.0.0.7:9000 refused")
	ingestErr.Store(&notRunning)
	code, body := get(t, srv, "/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	msg := body["error"].(map[string]any)["message"].(string)
	assert.Contains(t, msg, "not ready")
	assert.NotContains(t, msg, "10.0.0.7", "readyz answers anyone: no reasons, no addresses")
}

// TestUnknownPathsNeedAKey: without a key, an unknown /v1 path answers as a
// real one does (401), so routes cannot be mapped.
func TestUnknownPathsNeedAKey(t *testing.T) {
	srv, _, _ := fullAPI(t, &bytes.Buffer{})
	for _, p := range []string{"/v1/nothing", "/v1/stats", "/v1", "/v1/admin/keys"} {
		code, _ := get(t, srv, p, "")
		assert.Equal(t, http.StatusUnauthorized, code, p)
		code, _ = get(t, srv, p, "wrong-key-0123456789")
		assert.Equal(t, http.StatusUnauthorized, code, p)
		code, _ = get(t, srv, p, key)
		assert.Equal(t, http.StatusNotFound, code, p)
	}
	code, _ := get(t, srv, "/nothing", "")
	assert.Equal(t, http.StatusNotFound, code, "outside /v1 there is nothing to hide")
}

func TestConfigValidate(t *testing.T) {
	for name, cfg := range map[string]host.Config{
		"no key":         {},
		"short key":      {APIKey: "short"},
		"bad db":         {APIKey: key, Database: "x-y"},
		"negative cap":   {APIKey: key, MaxConcurrent: -1},
		"sub-second cap": {APIKey: key, Limits: httpapi.Limits{MaxExecutionTime: time.Millisecond}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.ApplyDefaults()
			assert.Error(t, cfg.Validate())
		})
	}
	ok := host.Config{APIKey: key}
	ok.ApplyDefaults()
	assert.NoError(t, ok.Validate())
	assert.Equal(t, "hindsight", ok.Database)
	assert.Equal(t, 16, ok.MaxConcurrent)
	assert.Equal(t, 30*time.Second, ok.MaxExecutionTime)
}

// TestConcurrencyCap: more requests at once than MaxConcurrent are 429
// with Retry-After, on any module's route.
func TestConcurrencyCap(t *testing.T) {
	conn, db := chtest.MigratedDatabase(t)
	_, h := mount(t, conn, host.Config{Database: db, APIKey: key, MaxConcurrent: 1}, nil)
	release, entered := make(chan struct{}), make(chan struct{})
	h.V1().GET("/block", func(c *gin.Context) { close(entered); <-release; c.JSON(http.StatusOK, gin.H{}) })
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(srv.Close)

	blocked := make(chan int, 1)
	go func() { // no require here: it may only stop the test's own goroutine
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/block", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			blocked <- 0
			return
		}
		resp.Body.Close()
		blocked <- resp.StatusCode
	}()
	<-entered
	for _, p := range []string{"/v1/event-types", "/v1/replays"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+p, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, p)
		assert.Equal(t, "1", resp.Header.Get("Retry-After"), p)
	}
	// The request holding the one slot is a query in flight; /metrics,
	// outside /v1, takes no slot.
	resp, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(scrape), "\nhindsight_api_queries_in_flight 1\n")
	close(release)
	assert.Equal(t, http.StatusOK, <-blocked)
}

// slowConn answers every query but the keys' as a ClickHouse server whose
// query ran past max_execution_time does, and records the limits each
// query's context carried.
type slowConn struct {
	driver.Conn
	mu     sync.Mutex
	limits []httpapi.Limits
}

func (c *slowConn) Query(ctx context.Context, q string, args ...any) (driver.Rows, error) {
	if strings.Contains(q, "api_keys") {
		return c.Conn.Query(ctx, q, args...)
	}
	c.mu.Lock()
	c.limits = append(c.limits, httpapi.LimitsOf(ctx))
	c.mu.Unlock()
	return nil, &clickhouse.Exception{Code: 159, Message: "Timeout exceeded: elapsed 2 seconds, maximum: 1"}
}

func (c *slowConn) QueryRow(ctx context.Context, q string, args ...any) driver.Row {
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		return errRow{err}
	}
	rows.Close()
	return errRow{errors.New("unexpected row")}
}

type errRow struct{ err error }

func (r errRow) Err() error           { return r.err }
func (r errRow) Scan(...any) error    { return r.err }
func (r errRow) ScanStruct(any) error { return r.err }

// TestOneLimitsOneMapping: the host's ClickHouse limits reach the queries of
// every module's routes, and a query that runs past them is a 503 on each
// (replay's routes once answered 500 and ran under limits of their own).
func TestOneLimitsOneMapping(t *testing.T) {
	real, db := chtest.Database(t)
	_, err := schema.Migrate(context.Background(), real, db)
	require.NoError(t, err)
	conn := &slowConn{Conn: real}
	srv, _ := mount(t, conn, host.Config{Database: db, APIKey: key, Limits: httpapi.Limits{MaxExecutionTime: 7 * time.Second, MaxResultRows: 1234}}, nil)
	for _, p := range []string{"/v1/stats/send", "/v1/events", "/v1/event-types", "/v1/dead-letters", "/v1/messages/m1",
		"/v1/replays", "/v1/endpoints", "/v1/stats/deliveries", "/v1/replays/rpl_x/attempts"} {
		conn.mu.Lock()
		conn.limits = nil
		conn.mu.Unlock()
		code, body := get(t, srv, p, key)
		assert.Equal(t, http.StatusServiceUnavailable, code, "%s: %v", p, body)
		if e, ok := body["error"].(map[string]any); assert.True(t, ok, p) {
			assert.Equal(t, "query_timeout", e["code"], p)
		}
		conn.mu.Lock()
		if assert.NotEmpty(t, conn.limits, p) {
			for _, l := range conn.limits {
				assert.Equal(t, httpapi.Limits{MaxExecutionTime: 7 * time.Second, MaxResultRows: 1234}, l, p)
			}
		}
		conn.mu.Unlock()
	}
}
