package query

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dodev/hindsight/schema"
)

// Totals are the counts over a range.
type Totals struct {
	Events uint64            `json:"events"`
	ByType map[string]uint64 `json:"by_type"`
}

// StatsResponse is the body of GET /v1/stats/{service}.
type StatsResponse struct {
	Service  string   `json:"service"`
	From     string   `json:"from"`
	To       string   `json:"to"`
	Livemode Livemode `json:"livemode"`
	Totals   Totals   `json:"totals"`
}

func (s *Server) stats(c *gin.Context) {
	service := c.Param("service")
	if !schema.IsService(service) {
		abort(c, http.StatusNotFound, "unknown_service", fmt.Sprintf("no service %q; services are %v", service, schema.Services))
		return
	}
	r, err := parseRange(c.Query("from"), c.Query("to"), time.Now())
	if err != nil {
		s.fail(c, err)
		return
	}
	lm, err := parseLivemode(c.Query("livemode"))
	if err != nil {
		s.fail(c, err)
		return
	}
	totals, err := s.totals(c.Request.Context(), service, r, lm)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, StatsResponse{
		Service:  service,
		From:     formatTime(r.From),
		To:       formatTime(r.To),
		Livemode: lm,
		Totals:   totals,
	})
}

// totals counts events by type. Every catalog type of the service is listed,
// zero included, beside any unknown type seen.
func (s *Server) totals(ctx context.Context, service string, r timeRange, lm Livemode) (Totals, error) {
	t := Totals{ByType: map[string]uint64{}}
	for _, typ := range schema.TypesOf(service) {
		t.ByType[typ] = 0
	}
	q := "SELECT type, count() FROM `" + s.cfg.Database + "`.events" +
		" WHERE service = ? AND created_at >= ? AND created_at < ?" + lm.sql() +
		" GROUP BY type"
	rows, err := s.conn.Query(s.queryContext(ctx), q, service, r.From.UnixMilli(), r.To.UnixMilli())
	if err != nil {
		return t, fmt.Errorf("count %s events by type: %w", service, err)
	}
	defer rows.Close()
	for rows.Next() {
		var typ string
		var n uint64
		if err := rows.Scan(&typ, &n); err != nil {
			return t, fmt.Errorf("read %s counts: %w", service, err)
		}
		t.ByType[typ] = n
		t.Events += n
	}
	if err := rows.Err(); err != nil {
		return t, fmt.Errorf("read %s counts: %w", service, err)
	}
	return t, nil
}
