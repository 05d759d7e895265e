package replay

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/schema"
)

// matchSQL is the filter of a job's events: its range, livemode and
// patterns, and for an only-failed job the failed set, all bound or from
// fixed text. db names the database of the deliveries log.
func matchSQL(db string, job Job, patterns []schema.Pattern) (string, []any) {
	since, until := jobRange(job)
	where := "created_at >= ? AND created_at < ?" + job.Livemode.SQL()
	args := []any{since, until}
	cond, pargs := schema.PatternsSQL(patterns)
	where, args = where+" AND "+cond, append(args, pargs...)
	// The filters were checked when the job was made; should a stored one
	// not read back, the job matches nothing rather than more than asked.
	if fs, err := schema.FiltersOf(job.Filters); err != nil {
		where += " AND 0"
	} else {
		cond, fargs := fs.SQL()
		where, args = where+cond, append(args, fargs...)
	}
	if job.OnlyFailed {
		// An event's latest attempt is its newest (at, attempt); at is in
		// milliseconds, so at * 256 + attempt orders them in one number.
		where += " AND event_id IN (SELECT event_id FROM `" + db + "`.deliveries WHERE endpoint_id = ?" +
			" GROUP BY event_id HAVING argMax(CAST(outcome AS String), at * 256 + attempt) != 'delivered')"
		args = append(args, job.EndpointID)
	}
	return where, args
}

// jobRange is a job's createdAt range in ms, [since, until).
func jobRange(job Job) (since, until int64) {
	until = schema.MaxCreatedAt
	if !job.Until.IsZero() {
		until = job.Until.UnixMilli()
	}
	return job.Since.UnixMilli(), until
}

// matching is what counts of a job's events read: each stored event once.
func matching(ctx context.Context, conn Conn, db string, job Job, patterns []schema.Pattern) (string, []any, error) {
	where, args := matchSQL(db, job, patterns)
	since, until := jobRange(job)
	counted, err := schema.CountedEvents(ctx, conn, db, since, until)
	if err != nil {
		return "", nil, err
	}
	events, args := counted.Source(where, args)
	return events, args, nil
}

// countMatching returns how many events job matches and the createdAt of
// its first (0 when none).
func countMatching(ctx context.Context, conn Conn, db string, job Job, patterns []schema.Pattern) (uint64, int64, error) {
	events, args, err := matching(ctx, conn, db, job, patterns)
	if err != nil {
		return 0, 0, fmt.Errorf("count events of %s: %w", job.ID, err)
	}
	rows, err := conn.Query(ctx, "SELECT count(), min(created_at) FROM "+events, args...)
	if err != nil {
		return 0, 0, fmt.Errorf("count events of %s: %w", job.ID, err)
	}
	defer rows.Close()
	var n uint64
	var first int64
	if rows.Next() {
		if err := rows.Scan(&n, &first); err != nil {
			return 0, 0, fmt.Errorf("count events of %s: %w", job.ID, err)
		}
	}
	return n, first, rows.Err()
}

// pageBlockRows is the block size pages are read in: what the client holds
// beyond the page is a few blocks of at most this many events.
const pageBlockRows = 256

// readPage returns up to size events after the job's cursor, in (createdAt,
// eventId) order, each eventId once: copies ClickHouse has not merged yet
// sit next to each other in that order and are skipped. It stops early once
// the page holds maxBytes of events (at least one event), and reads in
// small blocks, so a page of large events stays bounded in memory.
//
// It reads the window of createdAt [cursor, cursor+window) first (ms, at
// least 1; see nextWindow), and a window four times wider after each that
// runs out of rows before the page is full: ClickHouse 18.16 sorts every
// row of the window to keep the page's.
func readPage(ctx context.Context, conn Conn, db string, job Job, patterns []schema.Pattern, size, maxBytes int, window int64) ([]event, error) {
	where, args := matchSQL(db, job, patterns)
	_, until := jobRange(job)
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_block_size": pageBlockRows}))
	var page []event
	bytes := 0
	// The window [from, to) after the cursor: from is the cursor at first,
	// then the end of the window before, which was read to its end.
	from, window := job.CursorAt, max(window, 1)
	for {
		to := min(from+window, until)
		q := where + " AND created_at < ?"
		qargs := append(append([]any{}, args...), to)
		if from == job.CursorAt {
			q += " AND (created_at > ? OR (created_at = ? AND event_id > ?))"
			qargs = append(qargs, job.CursorAt, job.CursorAt, job.CursorID)
		} else {
			q += " AND created_at >= ?"
			qargs = append(qargs, from)
		}
		limit := size - len(page)
		rows, err := conn.Query(ctx, "SELECT event_id, CAST(type AS String), created_at, raw FROM `"+db+"`.events WHERE "+q+
			" ORDER BY created_at, event_id LIMIT ?", append(qargs, limit)...)
		if err != nil {
			return nil, fmt.Errorf("read events of %s: %w", job.ID, err)
		}
		read := 0
		for bytes < maxBytes && rows.Next() {
			read++
			var ev event
			var raw string
			if err := rows.Scan(&ev.id, &ev.typ, &ev.createdAt, &raw); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read events of %s: %w", job.ID, err)
			}
			if n := len(page); n > 0 && page[n-1].id == ev.id && page[n-1].createdAt == ev.createdAt {
				continue
			}
			ev.raw = []byte(raw)
			page = append(page, ev)
			bytes += len(raw)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read events of %s: %w", job.ID, err)
		}
		// Done unless the window ran out of rows before the limit and the
		// range goes on. (Copies skipped can leave a page short of size; the
		// next page goes on from its last event.)
		if bytes >= maxBytes || read == limit || to >= until {
			return page, nil
		}
		from, window = to, 4*window
	}
}

// pageLimit is how many events to ask for in the page after page: size,
// or as many as maxBytes holds at page's mean event size and half again, if
// fewer, and at most pageGrowth times as many as page holds (at least one).
// Before the first page (page nil) nothing tells the events' size: as many
// of the largest ingest stores as maxBytes holds. ClickHouse sorts a page's
// rows with their bytes before the client sees any, whatever maxBytes it
// keeps: 20,000 events of 256 KiB would be 5 GiB held for a page the client
// cuts at 16 MiB.
func pageLimit(page []event, size, maxBytes int) int {
	if page == nil {
		return min(size, max(1, maxBytes/schema.DefaultMaxEventBytes))
	}
	size = min(size, pageGrowth*max(1, len(page)))
	total := 0
	for _, ev := range page {
		total += len(ev.raw)
	}
	if total == 0 {
		return size
	}
	return max(1, min(size, maxBytes*3/2*len(page)/total))
}

// pageGrowth bounds how much larger a page is than the one before. Each
// page is read while the one before it is delivered; after the small first
// page, a full one (20,000 events of 220 bytes: about 90 ms on 18.16 here)
// would leave the slots idle for most of that read, where a page four
// times as large as the one being delivered comes in about as it is done.
const pageGrowth = 4

// minPageWindow is the narrowest window nextWindow gives, in ms.
const minPageWindow = int64(time.Second / time.Millisecond)

// nextWindow is the window (ms) to read the page after page in, pages of
// size events: half again the span size events took in page, at least
// minPageWindow; schema.FirstPageWindow before the first page (page nil). A job's pages
// so follow the density of its range: a fixed hour would be 35 pages' worth
// of 20,000 at 500M events a month, every row of it sorted for each page.
func nextWindow(page []event, size int) int64 {
	if len(page) == 0 {
		return schema.FirstPageWindow
	}
	span := page[len(page)-1].createdAt - page[0].createdAt + 1
	return max(3*span*int64(size)/int64(2*len(page)), minPageWindow)
}

// DryRun is what a replay would send.
type DryRun struct {
	Matched        uint64            `json:"matched"`
	ByType         map[string]uint64 `json:"by_type"`
	FirstCreatedAt *string           `json:"first_created_at"`
	LastCreatedAt  *string           `json:"last_created_at"`
	// EstimatedSeconds assumes the rate limit, or deliveries at deliveryRate.
	EstimatedSeconds float64 `json:"estimated_seconds"`
}

func dryRun(ctx context.Context, conn Conn, db string, job Job, patterns []schema.Pattern) (DryRun, error) {
	events, args, err := matching(ctx, conn, db, job, patterns)
	if err != nil {
		return DryRun{}, fmt.Errorf("dry run: %w", err)
	}
	rows, err := conn.Query(ctx, "SELECT CAST(type AS String), count(), min(created_at), max(created_at) FROM "+events+
		" GROUP BY type", args...)
	if err != nil {
		return DryRun{}, fmt.Errorf("dry run: %w", err)
	}
	defer rows.Close()
	d := DryRun{ByType: map[string]uint64{}}
	var first, last int64
	for rows.Next() {
		var typ string
		var n uint64
		var lo, hi int64
		if err := rows.Scan(&typ, &n, &lo, &hi); err != nil {
			return DryRun{}, fmt.Errorf("dry run: %w", err)
		}
		d.ByType[typ] = n
		d.Matched += n
		if first == 0 || lo < first {
			first = lo
		}
		last = max(last, hi)
	}
	if err := rows.Err(); err != nil {
		return DryRun{}, fmt.Errorf("dry run: %w", err)
	}
	if d.Matched > 0 {
		f, l := formatMS(first), formatMS(last)
		d.FirstCreatedAt, d.LastCreatedAt = &f, &l
	}
	speed := float64(deliveryRate(job))
	if job.RateLimit > 0 {
		speed = min(speed, job.RateLimit)
	}
	d.EstimatedSeconds = float64(d.Matched) / speed
	return d, nil
}

// deliveryRate is a planning figure of deliveries per second to a fast
// receiver, from the benchmarks: ordered jobs keep one delivery in flight.
func deliveryRate(job Job) int {
	if job.Ordered {
		return 3000
	}
	return 15000
}

func formatMS(v int64) string { return httpapi.FormatTime(time.UnixMilli(v)) }
