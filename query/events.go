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
func (s *API) encodeCursor(c cursor) string { return s.cursors.Encode(c) }

func (s *API) decodeCursor(v string) (cursor, error) {
	var c cursor
	err := s.cursors.Decode("cursor", v, &c)
	return c, err
}

// parseFilters reads the dimension filters of a request (schema.Dimensions);
// with a service, those of other services are a 400.
//
// format names both talk's audio format and the answer's format (json,
// csv, ndjson); those three values are the answer's, never a filter.
func parseFilters(c *gin.Context, service string) (schema.Filters, error) {
	get := func(name string) string {
		v := c.Query(name)
		if name == "format" && isAnswerFormat(v) {
			return ""
		}
		return v
	}
	fs, err := schema.ParseFilters(get, service)
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

// eventsRequest is a parsed and checked GET /v1/events.
type eventsRequest struct {
	r      timeRange
	where  string // SQL over the events table, values bound by args
	args   []any
	limit  int
	after  *cursor
	format exportFormat
}

func (s *API) parseEventsRequest(c *gin.Context) (eventsRequest, error) {
	var req eventsRequest
	var err error
	if req.r, err = parseRange(c.Query("from"), c.Query("to"), s.cfg.Now()); err != nil {
		return req, err
	}
	lm, err := parseLivemode(c.Query("livemode"))
	if err != nil {
		return req, err
	}
	if req.limit, err = httpapi.ParseLimit(c.Query("limit"), defaultEventLimit, maxEventLimit); err != nil {
		return req, err
	}
	patterns, err := parseTypes(c.Query("types"))
	if err != nil {
		return req, err
	}
	filters, err := parseFilters(c, "")
	if err != nil {
		return req, err
	}
	req.format = parseExportFormat(c.Query("format"), c.GetHeader("Accept"))
	if req.format != pageJSON && (c.Query("limit") != "" || c.Query("cursor") != "") {
		return req, badParam("format", "an export streams every matching event: it takes no limit or cursor")
	}
	if v := c.Query("cursor"); v != "" {
		cur, err := s.decodeCursor(v)
		if err != nil {
			return req, err
		}
		req.after = &cur
	}

	req.where = "created_at >= ? AND created_at < ?" + lm.SQL()
	req.args = []any{req.r.From.UnixMilli(), req.r.To.UnixMilli()}
	if len(patterns) > 0 {
		cond, pargs := schema.PatternsSQL(patterns)
		req.where += " AND " + cond
		req.args = append(req.args, pargs...)
	}
	fcond, fargs := filters.SQL()
	req.where, req.args = req.where+fcond, append(req.args, fargs...)
	return req, nil
}

// listEvents serves GET /v1/events: original events in (createdAt, eventId)
// order, a page at a time, or all of them as CSV or NDJSON (see export).
func (s *API) listEvents(c *gin.Context) {
	req, err := s.parseEventsRequest(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if req.format != pageJSON {
		s.export(c, req)
		return
	}
	var out bytes.Buffer
	out.WriteString(`{"data":[`)
	n, limit := 0, req.limit
	more := false
	after := req.after
	err = s.scanEvents(c.Request.Context(), req, scanMode{batch: limit + 1, blockRows: listBlockRows}, func(ev listedEvent) bool {
		if n == limit || out.Len() >= maxPageBytes {
			more = true
			return false
		}
		if n > 0 {
			out.WriteByte(',')
		}
		out.WriteString(ev.raw)
		after = &ev.cur
		n++
		return true
	})
	if err != nil {
		s.fail(c, err)
		return
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

// listedEvent is one event as scanEvents reads it; typed is set when the
// typed columns were asked for.
type listedEvent struct {
	raw   string
	cur   cursor
	typed *typedColumns
}

// scanMode is how scanEvents reads: at most batch rows per statement, in
// blocks of blockRows, with the typed columns or without.
type scanMode struct {
	batch, blockRows int
	typed            bool
}

// scanEvents hands fn the events req selects after req.after in
// (createdAt, eventId) order, each stored key once, until fn returns false
// or the range ends. It reads at most m.batch rows per statement, a createdAt
// window at a time: schema.FirstPageWindow, four times wider each time a
// window runs out of rows, and from the last event read when a window holds
// more than batch. Copies ClickHouse has not merged away share the sort key,
// so they come one after the other and are skipped.
func (s *API) scanEvents(ctx context.Context, req eventsRequest, m scanMode, fn func(listedEvent) bool) error {
	lo, end, window := req.r.From.UnixMilli(), req.r.To.UnixMilli(), schema.FirstPageWindow
	after := req.after
	if after != nil {
		lo = after.CreatedAt
	}
	for {
		hi := min(lo+window, end)
		read, stopped := 0, false
		err := s.listFrom(ctx, req.where, req.args, m, after, hi, func(ev listedEvent) bool {
			read++
			if after != nil && ev.cur == *after {
				return true // a copy of the last event handed on
			}
			if !fn(ev) {
				stopped = true
				return false
			}
			after = &ev.cur
			return true
		})
		switch {
		case err != nil:
			return err
		case stopped, read < m.batch && hi >= end:
			return nil
		case read < m.batch:
			lo, window = hi, 4*window // the window ran out of rows
		default:
			lo = after.CreatedAt // more in this window: on from the last event
		}
	}
}

// typedColumns are the stored columns an export writes before the event.
type typedColumns struct {
	typ, service                                              string
	livemode                                                  uint8
	messageID, recipientDomain, senderDomain, bounceType, npa string
	voice, format                                             string
	textLength                                                int64
	durationSec                                               float64
}

// typedSelect is what listFrom reads into typedColumns, in its order.
const typedSelect = ", CAST(type AS String), CAST(service AS String), livemode, message_id, CAST(recipient_domain AS String), " +
	"CAST(sender_domain AS String), CAST(bounce_type AS String), CAST(npa AS String), CAST(voice AS String), CAST(format AS String), " +
	"text_length, duration_sec"

// listFrom reads up to m.batch events matching where after the cursor (all
// of them without one) and before createdAt until, in (createdAt, eventId)
// order, and hands each to fn until it returns false.
func (s *API) listFrom(ctx context.Context, where string, args []any, m scanMode, after *cursor, until int64, fn func(listedEvent) bool) error {
	cols := "raw, created_at, event_id"
	if m.typed {
		cols += typedSelect
	}
	q := "SELECT " + cols + " FROM `" + s.cfg.Database + "`.events WHERE " + where + " AND created_at < ?"
	args = append(append([]any{}, args...), until)
	if after != nil {
		q += " AND (created_at > ? OR (created_at = ? AND event_id > ?))"
		args = append(args, after.CreatedAt, after.CreatedAt, after.EventID)
	}
	rows, err := s.conn.Query(httpapi.WithSettings(ctx, clickhouse.Settings{"max_block_size": m.blockRows}),
		q+" ORDER BY created_at, event_id LIMIT ?", append(args, m.batch)...)
	if err != nil {
		return fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ev listedEvent
		dest := []any{&ev.raw, &ev.cur.CreatedAt, &ev.cur.EventID}
		if m.typed {
			t := &typedColumns{}
			ev.typed = t
			dest = append(dest, &t.typ, &t.service, &t.livemode, &t.messageID, &t.recipientDomain, &t.senderDomain,
				&t.bounceType, &t.npa, &t.voice, &t.format, &t.textLength, &t.durationSec)
		}
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		if !fn(ev) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	return nil
}

// getEvent serves GET /v1/events/{eventId}: the original event, as ingested;
// with include=deliveries, its delivery attempts added under "deliveries".
func (s *API) getEvent(c *gin.Context) {
	id := c.Param("eventId")
	if id == "" || len(id) > 4*schema.MaxEventIDLen {
		abort(c, http.StatusNotFound, "not_found", "no event with that eventId")
		return
	}
	include := c.Query("include")
	if include != "" && include != "deliveries" {
		s.fail(c, badParam("include", "want deliveries, got "+strconv.Quote(include)))
		return
	}
	ctx := c.Request.Context()
	raw, found, err := schema.ReadEvent(ctx, s.conn, s.cfg.Database, id)
	if err != nil {
		s.fail(c, fmt.Errorf("get event: %w", err))
		return
	}
	if !found {
		abort(c, http.StatusNotFound, "not_found", "no event with eventId "+strconv.Quote(id))
		return
	}
	if include == "deliveries" {
		ds, err := schema.DeliveriesOf(ctx, s.conn, s.cfg.Database, []string{id})
		if err == nil {
			raw, err = withDeliveries(raw, ds[id])
		}
		if err != nil {
			s.fail(c, fmt.Errorf("get event: %w", err))
			return
		}
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
func (s *API) eventTypes(c *gin.Context) {
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

func (s *API) countTypes(ctx context.Context, since time.Time) (map[string]uint64, error) {
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
