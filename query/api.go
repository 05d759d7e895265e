package query

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/gin-gonic/gin"

	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/internal/keys"
)

// Conn is the part of a ClickHouse connection the API needs.
type Conn interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

var _ Conn = (driver.Conn)(nil)

// API serves stats, the events listing and export, event and message
// lookups, event types and dead letters. It is mounted on the host's /v1
// group, which checks keys and binds the ClickHouse limits every query
// here runs under.
type API struct {
	cfg     Config
	conn    Conn
	log     *slog.Logger
	cursors httpapi.Cursors // the events listing's
}

// New builds the API's routes.
func New(cfg Config, conn Conn, log *slog.Logger) (*API, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("query config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{cfg: cfg, conn: conn, log: log, cursors: httpapi.NewCursors("events", cfg.CursorKey)}, nil
}

// Register adds the routes to the host's /v1 group, each behind the scope
// it needs.
func (s *API) Register(v1 *gin.RouterGroup) {
	v1.GET("/stats/:service", keys.Require(keys.StatsRead), s.stats)
	v1.GET("/events", keys.Require(keys.EventsRead), s.listEvents)
	v1.GET("/events/:eventId", keys.Require(keys.EventsRead), s.getEvent)
	v1.GET("/messages/:messageId", keys.Require(keys.EventsRead), s.getMessage)
	v1.GET("/event-types", keys.Require(keys.StatsRead), s.eventTypes)
	v1.GET("/dead-letters", keys.Require(keys.StatsRead), s.deadLetters)
}

func abort(c *gin.Context, status int, code, msg string) { httpapi.Abort(c, status, code, msg) }

func (s *API) fail(c *gin.Context, err error) { httpapi.Fail(c, s.log, err, nil) }
