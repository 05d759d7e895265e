package host

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/gin-gonic/gin"

	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/internal/keys"
	"github.com/dodev/hindsight/schema"
)

// openAPI documents every route of every module; a test keeps it and the
// mounted routes in step.
//
//go:embed openapi.json
var openAPI []byte

// Config is the host's configuration.
type Config struct {
	// Addr is the address the API listens on. Default DefaultAddr.
	Addr string
	// Database holds the API keys. Default schema.DefaultDatabase.
	Database string
	// APIKey is the bootstrap key, holding every scope. Required.
	APIKey string
	// Limits bound each ClickHouse query a /v1 request runs, whichever
	// module's route it is.
	httpapi.Limits
	// MaxConcurrent bounds the /v1 requests served at once; more are
	// answered 429. Default 16, the API's ClickHouse connections.
	MaxConcurrent int
	// Server bounds what a client can hold of the HTTP server.
	Server ServerConfig
}

// DefaultAddr is where the API listens unless told otherwise: this machine
// only.
const DefaultAddr = "127.0.0.1:8080"

// DefaultMaxConcurrent is the /v1 requests served at once: the API's
// ClickHouse connections.
const DefaultMaxConcurrent = 16

// ApplyDefaults fills zero fields with their defaults.
func (c *Config) ApplyDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Database == "" {
		c.Database = schema.DefaultDatabase
	}
	c.Limits.ApplyDefaults()
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	c.Server.ApplyDefaults()
}

// RegisterFlagsAndApplyDefaults applies the defaults, then registers a flag
// for each setting an operator tunes, bound to its field with that default
// (see ingest.Config's). Database is the caller's.
func (c *Config) RegisterFlagsAndApplyDefaults(fs *flag.FlagSet) {
	c.ApplyDefaults()
	fs.StringVar(&c.Addr, "http", c.Addr, "HTTP listen address")
	fs.StringVar(&c.APIKey, "api-key", c.APIKey, "bootstrap bearer key for /v1 requests, holding every scope (at least 16 characters)")
	fs.IntVar(&c.MaxConcurrent, "max-concurrent", c.MaxConcurrent, "/v1 requests served at once; more are answered 429 with Retry-After")
	fs.DurationVar(&c.MaxExecutionTime, "query-timeout", c.MaxExecutionTime, "longest a ClickHouse query of an API request may run; past it the request is a 503")
	fs.IntVar(&c.MaxResultRows, "max-result-rows", c.MaxResultRows, "most rows a ClickHouse query of an API request may return")
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	if err := schema.ValidateDatabase(c.Database); err != nil {
		return err
	}
	if c.APIKey == "" {
		return errors.New("api key: empty (set HINDSIGHT_API_KEY)")
	}
	if len(c.APIKey) < 16 {
		return fmt.Errorf("api key: %d characters, want at least 16", len(c.APIKey))
	}
	if c.MaxConcurrent < 1 {
		return fmt.Errorf("max concurrent requests %d: want at least 1", c.MaxConcurrent)
	}
	return c.Limits.Validate()
}

// Conn is the part of a ClickHouse connection the host needs: the keys
// store's reads and writes, and the readiness ping.
type Conn interface {
	Exec(ctx context.Context, query string, args ...any) error
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
	Ping(ctx context.Context) error
}

var _ Conn = (driver.Conn)(nil)

// ReadyFunc reports nil when a component the API depends on is working.
type ReadyFunc func() error

// Host is the HTTP host.
type Host struct {
	cfg     Config
	conn    Conn
	log     *slog.Logger
	ready   []ReadyFunc
	engine  *gin.Engine
	v1      *gin.RouterGroup
	keys    *keys.Checker
	slots   chan struct{} // one per request in flight under /v1
	metrics *metrics
}

// New builds the host. ready lists extra readiness checks (ingest, when it
// runs in the same process); ClickHouse is always checked.
func New(cfg Config, conn Conn, log *slog.Logger, ready ...ReadyFunc) (*Host, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("api config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gin.SetMode(gin.ReleaseMode)
	h := &Host{cfg: cfg, conn: conn, log: log, ready: ready, engine: gin.New(), slots: make(chan struct{}, cfg.MaxConcurrent),
		keys: keys.NewChecker(keys.NewStore(conn, cfg.Database), cfg.APIKey, log.With("component", "keys"))}
	h.metrics = newMetrics(func() int { return len(h.slots) })
	h.engine.Use(httpapi.RequestIDs, h.recoverJSON, h.logRequests, h.metrics.observe, strictQuery)
	h.engine.NoRoute(func(c *gin.Context) {
		// Unknown /v1 paths answer like real ones to a caller without a key,
		// so the routes cannot be mapped without one.
		if p := c.Request.URL.Path; p == "/v1" || strings.HasPrefix(p, "/v1/") {
			if h.keys.Authenticate(c); c.IsAborted() {
				return
			}
		}
		httpapi.Abort(c, http.StatusNotFound, "not_found", "no such route: "+c.Request.URL.Path)
	})
	h.engine.HandleMethodNotAllowed = true
	h.engine.NoMethod(func(c *gin.Context) {
		httpapi.Abort(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	h.engine.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	h.engine.GET("/readyz", h.readyz)
	h.engine.GET("/metrics", h.metrics.serve)
	h.v1 = h.engine.Group("/v1", h.keys.Authenticate, h.limitConcurrency, h.bindLimits)
	// Any key may read the document.
	h.v1.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", openAPI) })
	keys.NewAPI(h.keys, log.With("component", "keys")).Register(h.v1)
	return h, nil
}

// V1 is the /v1 group, behind the key check, the cap on requests in flight
// and the ClickHouse limits, for the modules' routes; each route adds the
// keys.Require it needs.
func (h *Host) V1() *gin.RouterGroup { return h.v1 }

// Root is the engine outside /v1, without the key check, for pages (cmd
// mounts the dashboard there).
func (h *Host) Root() gin.IRoutes { return h.engine }

// Handler returns the host's http.Handler.
func (h *Host) Handler() http.Handler { return h.engine }

// Routes lists the method and path of every route, for documentation checks.
func (h *Host) Routes() gin.RoutesInfo { return h.engine.Routes() }

// Listen opens the Config's address for the host, with its server bounds.
func (h *Host) Listen() (*http.Server, net.Listener, error) {
	return Listen(h.cfg.Addr, h.engine, h.cfg.Server)
}

// limitConcurrency answers 429 to a request beyond MaxConcurrent in flight,
// rather than queueing it behind slow ones for a connection.
func (h *Host) limitConcurrency(c *gin.Context) {
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
		c.Next()
	default:
		c.Header("Retry-After", "1")
		httpapi.Abort(c, http.StatusTooManyRequests, "too_many_requests",
			fmt.Sprintf("more than %d requests at once; retry after a second", cap(h.slots)))
	}
}

// bindLimits gives the request's context the ClickHouse limits, so every
// query a route runs with it carries them.
func (h *Host) bindLimits(c *gin.Context) {
	c.Request = c.Request.WithContext(h.cfg.Limits.Bind(c.Request.Context()))
	c.Next()
}

func (h *Host) recoverJSON(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r) // a handler cutting its connection on purpose
			}
			h.log.Error("panic in handler", "path", c.Request.URL.Path, "request_id", httpapi.RequestID(c), "panic", r)
			httpapi.Abort(c, http.StatusInternalServerError, "internal", "internal error; the server log has details (request "+httpapi.RequestID(c)+")")
		}
	}()
	c.Next()
}

// strictQuery refuses a malformed query string: net/url drops the pairs it
// cannot decode, which would silently run a request without them (a cursor
// of "%%%" would restart a listing from its first page).
func strictQuery(c *gin.Context) {
	if _, err := url.ParseQuery(c.Request.URL.RawQuery); err != nil {
		httpapi.Abort(c, http.StatusBadRequest, "invalid_parameter", "query string: "+err.Error())
		return
	}
	c.Next()
}

func (h *Host) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	h.log.Debug("http", "method", c.Request.Method, "path", c.Request.URL.Path, "status", c.Writer.Status(), "took", time.Since(start),
		"request_id", httpapi.RequestID(c))
}

func (h *Host) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	// /readyz answers without a key, so it says ready or not and nothing
	// more: the reason (with internal addresses in it) goes to the log.
	err := h.conn.Ping(ctx)
	if err != nil {
		err = fmt.Errorf("clickhouse: %w", err)
	}
	for _, r := range h.ready {
		if err == nil {
			err = r()
		}
	}
	if err != nil {
		h.log.Warn("not ready", "err", err)
		httpapi.Abort(c, http.StatusServiceUnavailable, "not_ready", "not ready; the server log says why")
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}
