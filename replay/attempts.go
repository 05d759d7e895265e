package replay

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/schema"
)

// Limits of an attempt log page.
const (
	defaultAttemptLimit = 100
	maxAttemptLimit     = 1000
)

// attemptCursor is where an attempt log page ended: the log reads newest
// first by (at, event_id, attempt, replay_id), so later pages neither skip
// nor repeat the attempts logged before the first page was read.
type attemptCursor struct {
	At       int64  `json:"a"`
	EventID  string `json:"e"`
	Attempt  uint8  `json:"n"`
	ReplayID string `json:"r"`
}

// attemptEntry is one attempt as the log shows it.
type attemptEntry struct {
	At        string  `json:"at"`
	EventID   string  `json:"event_id"`
	Type      string  `json:"type"`
	Attempt   uint8   `json:"attempt"`
	Outcome   string  `json:"outcome"` // delivered, failed or retrying
	Status    uint16  `json:"status"`  // 0 without a response
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
	Response  string  `json:"response"`  // the first 1 KiB of the answer
	ReplayID  *string `json:"replay_id"` // null for a resend or a test
}

// outcomes maps the log's outcome names to the stored ones.
var outcomes = map[string]string{"delivered": "delivered", "failed": "failed", "retrying": "retry"}

func (a *API) endpointAttempts(c *gin.Context) {
	ep, err := a.store.Endpoint(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.fail(c, err)
		return
	}
	a.attemptLog(c, ep.ID, "")
}

func (a *API) replayAttempts(c *gin.Context) {
	job, err := a.store.Job(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.fail(c, err)
		return
	}
	a.attemptLog(c, job.EndpointID, job.ID)
}

// attemptLog serves one page of an endpoint's attempts, or of one replay's
// when replayID is set, filtered by from, to, outcome and event_id.
func (a *API) attemptLog(c *gin.Context, endpointID, replayID string) {
	r, err := httpapi.ParseRange(c.Query("from"), c.Query("to"), time.Now())
	if err != nil {
		a.fail(c, err)
		return
	}
	where := "endpoint_id = ? AND at >= ? AND at < ?"
	args := []any{endpointID, r.From.UnixMilli(), r.To.UnixMilli()}
	if replayID != "" {
		where += " AND replay_id = ?"
		args = append(args, replayID)
	}
	if v := c.Query("outcome"); v != "" {
		stored, ok := outcomes[v]
		if !ok {
			a.fail(c, bad("outcome", fmt.Sprintf("want delivered, failed or retrying, got %q", v)))
			return
		}
		where += " AND outcome = ?"
		args = append(args, stored)
	}
	if v := c.Query("event_id"); v != "" {
		if len(v) > schema.MaxEventIDLen {
			a.fail(c, bad("event_id", fmt.Sprintf("longer than %d bytes", schema.MaxEventIDLen)))
			return
		}
		where += " AND event_id = ?"
		args = append(args, v)
	}
	limit, err := httpapi.ParseLimit(c.Query("limit"), defaultAttemptLimit, maxAttemptLimit)
	if err != nil {
		a.fail(c, err)
		return
	}
	if v := c.Query("cursor"); v != "" {
		var cur attemptCursor
		if err := a.attempts.Decode("cursor", v, &cur); err != nil {
			a.fail(c, err)
			return
		}
		// Strictly after the cursor in (at, event_id, attempt, replay_id)
		// descending order, spelt out: 18.16 compares no tuples.
		where += " AND (at < ? OR (at = ? AND (event_id < ? OR (event_id = ? AND (attempt < ? OR (attempt = ? AND replay_id < ?))))))"
		args = append(args, cur.At, cur.At, cur.EventID, cur.EventID, cur.Attempt, cur.Attempt, cur.ReplayID)
	}
	page, err := a.readAttempts(c.Request.Context(), where, args, limit+1)
	if err != nil {
		a.fail(c, err)
		return
	}
	var next *string
	if len(page) > limit {
		page = page[:limit]
		last := page[limit-1]
		s := a.attempts.Encode(last.cursor)
		next = &s
	}
	out := make([]attemptEntry, len(page))
	for i, p := range page {
		out[i] = p.entry
	}
	c.JSON(http.StatusOK, gin.H{"data": out, "next_cursor": next})
}

type loggedAttempt struct {
	entry  attemptEntry
	cursor attemptCursor
}

func (a *API) readAttempts(ctx context.Context, where string, args []any, limit int) ([]loggedAttempt, error) {
	rows, err := a.conn.Query(ctx, "SELECT at, event_id, CAST(event_type AS String), attempt, CAST(outcome AS String), status, "+
		"latency_ms, error, response, replay_id FROM `"+a.db+"`.deliveries WHERE "+where+
		" ORDER BY at DESC, event_id DESC, attempt DESC, replay_id DESC LIMIT ?", append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("read attempts: %w", err)
	}
	defer rows.Close()
	var out []loggedAttempt
	for rows.Next() {
		var l loggedAttempt
		e := &l.entry
		var at int64
		var outcome, replayID string
		if err := rows.Scan(&at, &e.EventID, &e.Type, &e.Attempt, &outcome, &e.Status, &e.LatencyMS, &e.Error, &e.Response, &replayID); err != nil {
			return nil, fmt.Errorf("read attempts: %w", err)
		}
		e.At = httpapi.FormatTime(time.UnixMilli(at))
		e.Outcome = strings.Replace(outcome, "retry", "retrying", 1)
		if replayID != "" {
			e.ReplayID = &replayID
		}
		l.cursor = attemptCursor{At: at, EventID: e.EventID, Attempt: e.Attempt, ReplayID: replayID}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read attempts: %w", err)
	}
	return out, nil
}
