package query

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dodev/hindsight/schema"
)

// exportFormat is how GET /v1/events answers: a page of JSON, or every
// matching event as CSV or NDJSON.
type exportFormat string

const (
	pageJSON     exportFormat = ""
	exportCSV    exportFormat = "csv"
	exportNDJSON exportFormat = "ndjson"
)

// exportBatch is the rows an export reads per statement: well under the
// API's max_result_rows, and enough that a statement's cost is its rows.
const exportBatch = 10_000

// exportBlockRows is the block size an export reads in: four times a
// listing page's, which makes a million events 2.3 times faster to export
// (7.3 s against 16.0 s here) and holds at most 64 MiB of the largest
// events ingest takes (256 KiB).
const exportBlockRows = 256

// exportFlushBytes is how much an export buffers before it writes to the
// connection, and exportWriteTime how long the client gets to take each
// such write: the server's WriteTimeout bounds a page, not an export.
const (
	exportFlushBytes = 64 << 10
	exportWriteTime  = time.Minute
)

// exportHeader is the CSV header: the typed columns, then the event.
var exportHeader = []string{"event_id", "created_at", "type", "service", "livemode", "message_id", "recipient_domain",
	"sender_domain", "bounce_type", "npa", "voice", "format", "text_length", "duration_sec", "event"}

// isAnswerFormat tells the format parameter's answer formats from talk's
// audio formats, which the same name filters on.
func isAnswerFormat(v string) bool { return v == "json" || v == "csv" || v == "ndjson" }

// parseExportFormat reads format, or else the first media type of Accept
// the listing can give (application/json, text/csv, application/x-ndjson).
func parseExportFormat(format, accept string) exportFormat {
	switch format { // other values filter talk's audio format
	case "json":
		return pageJSON
	case "csv", "ndjson":
		return exportFormat(format)
	}
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "text/csv":
			return exportCSV
		case "application/x-ndjson", "application/ndjson":
			return exportNDJSON
		case "application/json", "*/*", "application/*":
			return pageJSON
		}
	}
	return pageJSON
}

// export streams every event req selects, in (createdAt, eventId) order,
// each stored key once: CSV with the typed columns first and the original
// event last, or NDJSON with the original event per line. It holds one
// statement's block and one buffer at a time, however many events match.
// When the client goes away the request's context cancels the statement.
// An error after the first byte can no longer be a status: the connection
// is cut, so the client sees a truncated body, never a short one that looks
// whole.
//
// X-Total-Count says how many events match when the export starts, each
// stored key once (events stored meanwhile may add to them).
func (s *API) export(c *gin.Context, req eventsRequest) {
	total, err := s.countEvents(c.Request.Context(), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("X-Total-Count", strconv.FormatUint(total, 10))
	w := bufio.NewWriterSize(c.Writer, exportFlushBytes)
	rc := http.NewResponseController(c.Writer)
	var cw *csv.Writer
	if req.format == exportCSV {
		c.Header("Content-Type", "text/csv; charset=utf-8")
		c.Header("Content-Disposition", `attachment; filename="events.csv"`)
		cw = csv.NewWriter(w)
		_ = cw.Write(exportHeader)
	} else {
		c.Header("Content-Type", "application/x-ndjson")
	}
	c.Status(http.StatusOK)
	record := make([]string, len(exportHeader))
	var writeErr error
	write := func(ev listedEvent) bool {
		if cw != nil {
			t := ev.typed
			record[0], record[1], record[2], record[3] = ev.cur.EventID, formatTime(time.UnixMilli(ev.cur.CreatedAt)), t.typ, t.service
			record[4] = strconv.FormatBool(t.livemode == 1)
			record[5], record[6], record[7], record[8], record[9] = t.messageID, t.recipientDomain, t.senderDomain, t.bounceType, t.npa
			record[10], record[11] = t.voice, t.format
			record[12], record[13] = strconv.FormatInt(t.textLength, 10), strconv.FormatFloat(t.durationSec, 'f', -1, 64)
			record[14] = ev.raw
			writeErr = cw.Write(record)
		} else {
			writeErr = writeLine(w, ev.raw)
		}
		if writeErr == nil && w.Buffered() >= exportFlushBytes/2 {
			writeErr = flush(w, cw, rc)
		}
		return writeErr == nil
	}
	err = s.scanEvents(c.Request.Context(), req, scanMode{batch: exportBatch, blockRows: exportBlockRows, typed: cw != nil}, write)
	if err == nil {
		err = writeErr
	}
	if err == nil {
		err = flush(w, cw, rc)
	}
	if err != nil {
		if c.Request.Context().Err() == nil {
			s.log.Warn("export cut short", "err", err)
		}
		panic(http.ErrAbortHandler) // cut the connection: see above
	}
}

// countEvents counts the events req selects, each stored key once.
func (s *API) countEvents(ctx context.Context, req eventsRequest) (uint64, error) {
	counted, err := schema.CountedEvents(ctx, s.conn, s.cfg.Database, req.r.From.UnixMilli(), req.r.To.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	events, args := counted.Source(req.where, req.args)
	rows, err := s.conn.Query(ctx, "SELECT count() FROM "+events, args...)
	if err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	defer rows.Close()
	var n uint64
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, fmt.Errorf("count events: %w", err)
		}
	}
	return n, rows.Err()
}

// writeLine writes one event as an NDJSON line: as stored, unless it spans
// lines (a producer may send indented JSON), then compacted.
func writeLine(w *bufio.Writer, raw string) error {
	if strings.ContainsAny(raw, "\r\n") {
		var b bytes.Buffer
		if err := json.Compact(&b, []byte(raw)); err != nil {
			return err
		}
		b.WriteByte('\n')
		_, err := w.Write(b.Bytes())
		return err
	}
	if _, err := w.WriteString(raw); err != nil {
		return err
	}
	return w.WriteByte('\n')
}

// flush sends what an export buffered to the client, giving it
// exportWriteTime to take it.
func flush(w *bufio.Writer, cw *csv.Writer, rc *http.ResponseController) error {
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
	}
	if err := rc.SetWriteDeadline(time.Now().Add(exportWriteTime)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return rc.Flush()
}

// statsCSV writes a stats answer as rows: one per bucket of the series,
// one per group, then the totals, each with its events, counts by type,
// metrics and rate values (empty when a rate is null).
func statsCSV(c *gin.Context, resp StatsResponse, def serviceDef) {
	types := map[string]bool{}
	blocks := []Totals{resp.Totals}
	for _, b := range resp.Series {
		blocks = append(blocks, b.Totals)
	}
	for _, g := range resp.Groups {
		blocks = append(blocks, g.Totals)
	}
	for _, t := range blocks {
		for typ := range t.ByType {
			types[typ] = true
		}
	}
	typeCols := slices.Sorted(maps.Keys(types))
	metricCols := slices.Sorted(maps.Keys(resp.Totals.Metrics))
	header := append([]string{"row", "key", "events"}, typeCols...)
	header = append(header, metricCols...)
	for _, r := range def.rates {
		header = append(header, r.name)
	}

	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	_ = cw.Write(header)
	row := func(kind, key string, t Totals) {
		rec := []string{kind, key, strconv.FormatUint(t.Events, 10)}
		for _, typ := range typeCols {
			rec = append(rec, strconv.FormatUint(t.ByType[typ], 10))
		}
		for _, m := range metricCols {
			rec = append(rec, strconv.FormatFloat(t.Metrics[m], 'f', -1, 64))
		}
		for _, r := range def.rates {
			v := ""
			if rate := t.Rates[r.name]; rate.Value != nil {
				v = strconv.FormatFloat(*rate.Value, 'f', -1, 64)
			}
			rec = append(rec, v)
		}
		_ = cw.Write(rec)
	}
	for _, b := range resp.Series {
		row("bucket", b.Bucket, b.Totals)
	}
	for _, g := range resp.Groups {
		row("group", g.Key, g.Totals)
	}
	row("total", "", resp.Totals)
	cw.Flush()
	c.Header("Content-Disposition", `attachment; filename="stats-`+resp.Service+`.csv"`)
	c.Data(http.StatusOK, "text/csv; charset=utf-8", buf.Bytes())
}
