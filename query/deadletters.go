package query

import (
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dodev/hindsight/internal/httpapi"
)

// DeadLetters is the body of GET /v1/dead-letters: how many records ingest
// dead-lettered in a range, by kind, and the latest of them with why.
type DeadLetters struct {
	From   string            `json:"from"`
	To     string            `json:"to"`
	Total  uint64            `json:"total"`
	ByKind map[string]uint64 `json:"by_kind"` // invalid, too_large, refused
	Latest []DeadLetter      `json:"latest"`
}

// DeadLetter is one dead letter as the log keeps it: not its payload, which
// is on the dead-letter topic (a parse error's reason quotes a few dozen
// bytes of it).
type DeadLetter struct {
	At     string `json:"at"`
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
	Source string `json:"source"` // topic/partition/offset it was read from
}

const (
	defaultDeadLetterLimit = 20
	maxDeadLetterLimit     = 1000
)

// deadLetters serves GET /v1/dead-letters from the dead-letter log.
func (s *API) deadLetters(c *gin.Context) {
	r, err := parseRange(c.Query("from"), c.Query("to"), s.cfg.Now())
	if err != nil {
		s.fail(c, err)
		return
	}
	limit, err := httpapi.ParseLimit(c.Query("limit"), defaultDeadLetterLimit, maxDeadLetterLimit)
	if err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	table := "`" + s.cfg.Database + "`.dead_letter_log"
	from, to := r.From.UnixMilli(), r.To.UnixMilli()
	out := DeadLetters{From: formatTime(r.From), To: formatTime(r.To), ByKind: map[string]uint64{"invalid": 0, "too_large": 0, "refused": 0},
		Latest: []DeadLetter{}}
	rows, err := s.conn.Query(ctx, "SELECT CAST(kind AS String), count() FROM "+table+" WHERE at >= ? AND at < ? GROUP BY kind", from, to)
	if err != nil {
		s.fail(c, fmt.Errorf("count dead letters: %w", err))
		return
	}
	for rows.Next() {
		var kind string
		var n uint64
		if err := rows.Scan(&kind, &n); err != nil {
			rows.Close()
			s.fail(c, fmt.Errorf("count dead letters: %w", err))
			return
		}
		out.ByKind[kind] = n
		out.Total += n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		s.fail(c, fmt.Errorf("count dead letters: %w", err))
		return
	}
	rows, err = s.conn.Query(ctx, "SELECT at, CAST(kind AS String), reason, source FROM "+table+
		" WHERE at >= ? AND at < ? ORDER BY at DESC, source DESC LIMIT ?", from, to, limit)
	if err != nil {
		s.fail(c, fmt.Errorf("read dead letters: %w", err))
		return
	}
	defer rows.Close()
	for rows.Next() {
		var at int64
		var d DeadLetter
		if err := rows.Scan(&at, &d.Kind, &d.Reason, &d.Source); err != nil {
			s.fail(c, fmt.Errorf("read dead letters: %w", err))
			return
		}
		d.At = formatTime(time.UnixMilli(at))
		out.Latest = append(out.Latest, d)
	}
	if err := rows.Err(); err != nil {
		s.fail(c, fmt.Errorf("read dead letters: %w", err))
		return
	}
	c.JSON(http.StatusOK, out)
}
