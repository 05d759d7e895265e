package schema

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The events table is a ReplacingMergeTree ordered by (service, type,
// created_at, event_id): copies of one key (two ingest processes that each
// stored a record, or a producer's retry that reached two of them) become one
// row when ClickHouse merges their parts, which it may do late or never.
// Counts do not wait for it. Ingest records each key it finds stored more
// than once in event_dups, right after the insert that stored the second
// copy; a count whose range holds recorded keys reads each of them once, and
// every other count reads the table as it is, at no extra cost. Once
// ClickHouse has merged a key's copies, ingest marks it resolved, and counts
// over its range are plain reads again.

// unresolved is the statement part that lists the recorded keys in a
// createdAt range whose copies are not known to be merged: the latest row
// of each key (highest version) says.
const unresolved = " WHERE created_at >= ? AND created_at < ? GROUP BY type, created_at, event_id HAVING argMax(resolved, version) = 0"

// Querier runs a query: the part of a ClickHouse connection counts need.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// countedColumns are what Counted.Source's subquery gives: every column a
// count filters, groups or sums on (all but the payload and Kafka's).
const countedColumns = "service, type, created_at, event_id, livemode, known, message_hash, recipient_domain, " +
	"sender_domain, bounce_type, has_carrier, has_inventory, npa, voice, format, text_length, duration_sec"

// Counted is how a count reads the events of one createdAt range.
type Counted struct {
	db       string
	from, to int64 // ms, [from, to)
	dups     bool  // event_dups holds keys in the range
}

// CountedEvents looks up whether duplicates were recorded in [from, to) (ms)
// and returns how counts over that range read the events.
func CountedEvents(ctx context.Context, q Querier, db string, from, to int64) (Counted, error) {
	c := Counted{db: db, from: from, to: to}
	rows, err := q.Query(ctx, "SELECT count() FROM (SELECT 1 FROM `"+db+"`.event_dups"+unresolved+")", from, to)
	if err != nil {
		return c, fmt.Errorf("look up duplicates: %w", err)
	}
	defer rows.Close()
	var n uint64
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return c, fmt.Errorf("look up duplicates: %w", err)
		}
	}
	c.dups = n > 0
	return c, rows.Err()
}

// Source returns what follows FROM in a statement that counts the events
// matching where (which binds args and must keep created_at within the
// range): the events table and the WHERE clause, or, when the range holds
// recorded duplicates, a subquery with each stored key once and the columns
// counts use. GROUP BY, ORDER BY and LIMIT may follow it.
//
// The subquery reads the range twice: the rows of keys never recorded as
// duplicates as they are, and those of recorded keys one per key. It costs
// about three times the plain read, and only while the range holds
// duplicates.
func (c Counted) Source(where string, args []any) (string, []any) {
	table := "`" + c.db + "`.events"
	if !c.dups {
		return table + " WHERE " + where, args
	}
	recorded := " (SELECT type, created_at FROM `" + c.db + "`.event_dups" + unresolved + ")"
	sql := "(SELECT " + countedColumns + " FROM " + table + " WHERE (" + where + ") AND (type, created_at) NOT IN" + recorded +
		" UNION ALL SELECT " + countedColumns + " FROM " + table + " WHERE (" + where + ") AND (type, created_at) IN" + recorded +
		" LIMIT 1 BY service, type, created_at, event_id)"
	all := make([]any, 0, 2*len(args)+4)
	for range 2 {
		all = append(append(all, args...), c.from, c.to)
	}
	return sql, all
}

// FirstPageWindow is the createdAt span (ms) a keyset page of the events
// table (a listing page, a replay page) reads first after its cursor; a
// window that runs out of rows before the page is full is followed by one
// four times wider. Reading from the cursor to the end of the range instead
// costs what the rest of the range holds: 1.8 s for the first page of a
// month of 10M events on 18.16 here, 20 ms for the last.
const FirstPageWindow = int64(time.Hour / time.Millisecond)

// ReadEvent returns one stored event's original bytes by its eventId, and
// false when no event has it. event_ids gives the sort keys the eventId's
// hash is stored under, so the events table is read at them rather than
// scanned.
func ReadEvent(ctx context.Context, q Querier, db, id string) ([]byte, bool, error) {
	t := "`" + db + "`"
	rows, err := q.Query(ctx, "SELECT raw FROM "+t+".events WHERE (service, type, created_at) GLOBAL IN (SELECT service, type, created_at FROM "+t+
		".event_ids WHERE id_hash = cityHash64(?)) AND event_id = ? LIMIT 1", id, id)
	if err != nil {
		return nil, false, fmt.Errorf("read event %q: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, false, fmt.Errorf("read event %q: %w", id, err)
		}
		return nil, false, nil
	}
	var raw string
	if err := rows.Scan(&raw); err != nil {
		return nil, false, fmt.Errorf("read event %q: %w", id, err)
	}
	return []byte(raw), true, nil
}
