package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/gin-gonic/gin"

	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/schema"
)

const (
	defaultEventLimit = 100
	maxEventLimit     = 1000
	// maxPageBytes ends a page early (with a cursor) once it holds this
	// much, so a page of large events stays bounded in memory.
	maxPageBytes = 4 << 20
	// listBlockRows is the block size pages are read in, for the same
	// reason: the client holds a few blocks beyond the page.
	listBlockRows = 64
)

// cursor is where a listing page ended: the last event's (createdAt,
// eventId), the listing's sort key, so later pages neither skip nor repeat
// events whatever is ingested meanwhile.
type cursor struct {
	CreatedAt int64  `json:"c"`
	EventID   string `json:"e"`
}

// encodeCursor signs a listing position (see httpapi.Cursors).
func (s *Server) encodeCursor(c cursor) string { return s.cursors.Encode(c) }

func (s *Server) decodeCursor(v string) (cursor, error) {
	var c cursor
	err := s.cursors.Decode("cursor", v, &c)
	return c, err
}

// parseFilters reads the dimension filters of a request (schema.Dimensions);
// with a service, those of other services are a 400.
func parseFilters(c *gin.Context, service string) (schema.Filters, error) {
	fs, err := schema.ParseFilters(c.Query, service)
	var fe *schema.FilterError
	if errors.As(err, &fe) {
		return nil, badParam(fe.Name, fe.Msg)
	}
	return fs, err
}

func parseTypes(v string) ([]schema.Pattern, error) {
	if v == "" {
		return []schema.Pattern{}, nil
	}
	ps, err := schema.ParsePatterns(strings.Split(v, ","))
	if err != nil {
		return nil, badParam("types", err.Error())
	}
	return ps, nil
}

// listEvents serves GET /v1/events: original events in (createdAt, eventId)
// order, a page at a time.
func (s *Server) listEvents(c *gin.Context) {
	r, err := parseRange(c.Query("from"), c.Query("to"), s.cfg.Now())
	if err != nil {
		s.fail(c, err)
		return
	}
	lm, err := parseLivemode(c.Query("livemode"))
	if err != nil {
		s.fail(c, err)
		return
	}
	limit, err := httpapi.ParseLimit(c.Query("limit"), defaultEventLimit, maxEventLimit)
	if err != nil {
		s.fail(c, err)
		return
	}
	patterns, err := parseTypes(c.Query("types"))
	if err != nil {
		s.fail(c, err)
		return
	}
	filters, err := parseFilters(c, "")
	if err != nil {
		s.fail(c, err)
		return
	}
	var after *cursor
	if v := c.Query("cursor"); v != "" {
		cur, err := s.decodeCursor(v)
		if err != nil {
			s.fail(c, err)
			return
		}
		after = &cur
	}

	where := "created_at >= ? AND created_at < ?" + lm.sql()
	whereArgs := []any{r.From.UnixMilli(), r.To.UnixMilli()}
	if len(patterns) > 0 {
		cond, pargs := schema.PatternsSQL(patterns)
		where += " AND " + cond
		whereArgs = append(whereArgs, pargs...)
	}
	fcond, fargs := filters.SQL()
	where, whereArgs = where+fcond, append(whereArgs, fargs...)
	var out bytes.Buffer
	out.WriteString(`{"data":[`)
	n := 0
	more := false
	// A page reads limit+1 rows after the cursor, a createdAt window at a
	// time (schema.FirstPageWindow, then four times wider each time the
	// window runs out of rows). Copies ClickHouse has not merged away share
	// the sort key, so they come one after the other and are skipped; when
	// that leaves the page short and the window has more rows, the next rows
	// are read from the last event shown.
	lo, end, window := r.From.UnixMilli(), r.To.UnixMilli(), schema.FirstPageWindow
	if after != nil {
		lo = after.CreatedAt
	}
	for {
		hi := min(lo+window, end)
		read, want := 0, limit-n+1
		err := s.listFrom(c.Request.Context(), where, whereArgs, after, hi, want, func(raw string, cur cursor) bool {
			read++
			if after != nil && cur == *after {
				return true // a copy of the last event shown
			}
			if n == limit || out.Len() >= maxPageBytes {
				more = true
				return false
			}
			if n > 0 {
				out.WriteByte(',')
			}
			out.WriteString(raw)
			after = &cur
			n++
			return true
		})
		if err != nil {
			s.fail(c, err)
			return
		}
		if more || (read < want && hi >= end) {
			break
		}
		if read < want {
			lo, window = hi, 4*window // the window ran out of rows
		} // else copies left the page short: on from the last event shown
	}
	out.WriteString(`],"next_cursor":`)
	if more {
		next, _ := json.Marshal(s.encodeCursor(*after))
		out.Write(next)
	} else {
		out.WriteString("null")
	}
	out.WriteByte('}')
	c.Data(http.StatusOK, "application/json; charset=utf-8", out.Bytes())
}

// listFrom reads up to limit events matching where after the cursor (all of
// them without one) and before createdAt until, in (createdAt, eventId)
// order, and hands each to fn until it returns false.
func (s *Server) listFrom(ctx context.Context, where string, args []any, after *cursor, until int64, limit int, fn func(raw string, cur cursor) bool) error {
	q := "SELECT raw, created_at, event_id FROM `" + s.cfg.Database + "`.events WHERE " + where + " AND created_at < ?"
	args = append(append([]any{}, args...), until)
	if after != nil {
		q += " AND (created_at > ? OR (created_at = ? AND event_id > ?))"
		args = append(args, after.CreatedAt, after.CreatedAt, after.EventID)
	}
	rows, err := s.conn.Query(s.queryContext(ctx, clickhouse.Settings{"max_block_size": listBlockRows}),
		q+" ORDER BY created_at, event_id LIMIT ?", append(args, limit)...)
	if err != nil {
		return fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var raw string
		var cur cursor
		if err := rows.Scan(&raw, &cur.CreatedAt, &cur.EventID); err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		if !fn(raw, cur) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	return nil
}

// getEvent serves GET /v1/events/{eventId}: the original event, as ingested.
func (s *Server) getEvent(c *gin.Context) {
	id := c.Param("eventId")
	if id == "" || len(id) > 4*schema.MaxEventIDLen {
		abort(c, http.StatusNotFound, "not_found", "no event with that eventId")
		return
	}
	raw, found, err := schema.ReadEvent(s.queryContext(c.Request.Context()), s.conn, s.cfg.Database, id)
	if err != nil {
		s.fail(c, fmt.Errorf("get event: %w", err))
		return
	}
	if !found {
		abort(c, http.StatusNotFound, "not_found", "no event with eventId "+strconv.Quote(id))
		return
	}
	c.Data(http.StatusOK, "application/json; charset=utf-8", raw)
}

// EventTypeInfo is one entry of GET /v1/event-types.
type EventTypeInfo struct {
	schema.EventType
	Count30d uint64 `json:"count_30d"`
}

// UnknownType is a type seen that the catalog does not describe yet.
type UnknownType struct {
	Type     string `json:"type"`
	Service  string `json:"service"`
	Count30d uint64 `json:"count_30d"`
}

// eventTypes serves GET /v1/event-types: the catalog with the count of each
// type over the last 30 days, and the unknown types seen in that time.
func (s *Server) eventTypes(c *gin.Context) {
	counts, err := s.countTypes(c.Request.Context(), s.cfg.Now().Add(-30*24*time.Hour))
	if err != nil {
		s.fail(c, err)
		return
	}
	resp := struct {
		Data    []EventTypeInfo `json:"data"`
		Unknown []UnknownType   `json:"unknown"`
	}{Data: []EventTypeInfo{}, Unknown: []UnknownType{}}
	for _, et := range schema.Catalog() {
		resp.Data = append(resp.Data, EventTypeInfo{EventType: et, Count30d: counts[et.Type]})
		delete(counts, et.Type)
	}
	for typ, n := range counts {
		resp.Unknown = append(resp.Unknown, UnknownType{Type: typ, Service: schema.ServiceOf(typ), Count30d: n})
	}
	sort.Slice(resp.Unknown, func(i, j int) bool { return resp.Unknown[i].Type < resp.Unknown[j].Type })
	c.JSON(http.StatusOK, resp)
}

func (s *Server) countTypes(ctx context.Context, since time.Time) (map[string]uint64, error) {
	ctx = s.queryContext(ctx)
	counted, err := schema.CountedEvents(ctx, s.conn, s.cfg.Database, since.UnixMilli(), schema.MaxCreatedAt)
	if err != nil {
		return nil, fmt.Errorf("count event types: %w", err)
	}
	events, args := counted.Source("created_at >= ?", []any{since.UnixMilli()})
	rows, err := s.conn.Query(ctx, "SELECT CAST(type AS String), count() FROM "+events+" GROUP BY type", args...)
	if err != nil {
		return nil, fmt.Errorf("count event types: %w", err)
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var typ string
		var n uint64
		if err := rows.Scan(&typ, &n); err != nil {
			return nil, fmt.Errorf("read event type counts: %w", err)
		}
		out[typ] = n
	}
	return out, rows.Err()
}
