package query

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/internal/keys"
)

// openAPI documents every route; a test keeps it and the router in step.
//
//go:embed openapi.json
var openAPI []byte

// Conn is the part of a ClickHouse connection the API needs.
type Conn interface {
	Exec(ctx context.Context, query string, args ...any) error // keys
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
	Ping(ctx context.Context) error
}

var _ Conn = (driver.Conn)(nil)

// ReadyFunc reports nil when a component the API depends on is working.
type ReadyFunc func() error

// Server is the HTTP API.
type Server struct {
	cfg     Config
	conn    Conn
	log     *slog.Logger
	ready   []ReadyFunc
	engine  *gin.Engine
	v1      *gin.RouterGroup
	keys    *keys.Checker
	slots   chan struct{}   // one per request in flight under /v1
	cursors httpapi.Cursors // the events listing's
	metrics *httpMetrics
	// gatherers are what GET /metrics serves: the API's own, then AddMetrics'.
	gatherers prometheus.Gatherers
}

// New builds the API. ready lists extra readiness checks (ingest, when it
// runs in the same process); ClickHouse is always checked.
func New(cfg Config, conn Conn, log *slog.Logger, ready ...ReadyFunc) (*Server, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("api config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gin.SetMode(gin.ReleaseMode)
	s := &Server{cfg: cfg, conn: conn, log: log, ready: ready, engine: gin.New(),
		keys: keys.NewChecker(keys.NewStore(conn, cfg.Database), cfg.APIKey, log.With("component", "keys"))}
	s.cursors = httpapi.NewCursors("events", cfg.APIKey)
	s.metrics = newHTTPMetrics()
	s.gatherers = prometheus.Gatherers{s.metrics.reg}
	s.engine.Use(httpapi.RequestIDs, s.recoverJSON, s.logRequests, s.metrics.observe, strictQuery)
	s.engine.NoRoute(func(c *gin.Context) {
		// Unknown /v1 paths answer like real ones to a caller without a key,
		// so the routes cannot be mapped without one.
		if p := c.Request.URL.Path; p == "/v1" || strings.HasPrefix(p, "/v1/") {
			if s.keys.Authenticate(c); c.IsAborted() {
				return
			}
		}
		abort(c, http.StatusNotFound, "not_found", "no such route: "+c.Request.URL.Path)
	})
	s.engine.HandleMethodNotAllowed = true
	s.engine.NoMethod(func(c *gin.Context) {
		abort(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	s.engine.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	s.engine.GET("/readyz", s.readyz)
	s.engine.GET("/metrics", s.serveMetrics)
	s.slots = make(chan struct{}, cfg.MaxConcurrent)
	v1 := s.engine.Group("/v1", s.keys.Authenticate, s.limitConcurrency)
	s.v1 = v1
	v1.GET("/stats/:service", keys.Require(keys.StatsRead), s.stats)
	v1.GET("/events", keys.Require(keys.EventsRead), s.listEvents)
	v1.GET("/events/:eventId", keys.Require(keys.EventsRead), s.getEvent)
	v1.GET("/messages/:messageId", keys.Require(keys.EventsRead), s.getMessage)
	v1.GET("/event-types", keys.Require(keys.StatsRead), s.eventTypes)
	v1.GET("/dead-letters", keys.Require(keys.StatsRead), s.deadLetters)
	// Any key may read the document.
	v1.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", openAPI) })
	keys.NewAPI(s.keys, log.With("component", "keys")).Register(v1)
	return s, nil
}

// Root is the engine's group outside /v1, without the key check, for pages
// other packages serve (cmd mounts the dashboard there).
func (s *Server) Root() gin.IRoutes { return s.engine }

// Handler returns the API's http.Handler.
func (s *Server) Handler() http.Handler { return s.engine }

// V1 is the /v1 group, behind the key check, for other packages' routes
// (cmd mounts replay's there); each route adds the keys.Require it needs.
func (s *Server) V1() *gin.RouterGroup { return s.v1 }

// Routes lists the method and path of every route, for documentation checks.
func (s *Server) Routes() gin.RoutesInfo { return s.engine.Routes() }

func abort(c *gin.Context, status int, code, msg string) { httpapi.Abort(c, status, code, msg) }

func (s *Server) fail(c *gin.Context, err error) { httpapi.Fail(c, s.log, err, nil) }

// limitConcurrency answers 429 to a request beyond MaxConcurrent in flight,
// rather than queueing it behind slow ones for a connection.
func (s *Server) limitConcurrency(c *gin.Context) {
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
		c.Next()
	default:
		c.Header("Retry-After", "1")
		abort(c, http.StatusTooManyRequests, "too_many_requests",
			fmt.Sprintf("more than %d requests at once; retry after a second", cap(s.slots)))
	}
}

func (s *Server) recoverJSON(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r) // a handler cutting its connection on purpose
			}
			s.log.Error("panic in handler", "path", c.Request.URL.Path, "request_id", httpapi.RequestID(c), "panic", r)
			abort(c, http.StatusInternalServerError, "internal", "internal error; the server log has details (request "+httpapi.RequestID(c)+")")
		}
	}()
	c.Next()
}

// strictQuery refuses a malformed query string: net/url drops the pairs it
// cannot decode, which would silently run a request without them (a cursor
// of "%%%" would restart a listing from its first page).
func strictQuery(c *gin.Context) {
	if _, err := url.ParseQuery(c.Request.URL.RawQuery); err != nil {
		abort(c, http.StatusBadRequest, "invalid_parameter", "query string: "+err.Error())
		return
	}
	c.Next()
}

func (s *Server) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	s.log.Debug("http", "method", c.Request.Method, "path", c.Request.URL.Path, "status", c.Writer.Status(), "took", time.Since(start),
		"request_id", httpapi.RequestID(c))
}

func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	// /readyz answers without a key, so it says ready or not and nothing
	// more: the reason (with internal addresses in it) goes to the log.
	err := s.conn.Ping(ctx)
	if err != nil {
		err = fmt.Errorf("clickhouse: %w", err)
	}
	for _, r := range s.ready {
		if err == nil {
			err = r()
		}
	}
	if err != nil {
		s.log.Warn("not ready", "err", err)
		abort(c, http.StatusServiceUnavailable, "not_ready", "not ready; the server log says why")
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// queryContext carries the ClickHouse limits every query runs under, and
// extra settings of the caller's.
func (s *Server) queryContext(ctx context.Context, extra ...clickhouse.Settings) context.Context {
	return s.cfg.Limits.Context(ctx, extra...)
}
