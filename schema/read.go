package schema

import (
	"context"
	"fmt"
	"strings"
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
	keys, err := sortKeys(ctx, q, "SELECT DISTINCT service, type, created_at FROM "+t+".event_ids WHERE id_hash = cityHash64(?)", id)
	if err != nil || len(keys) == 0 {
		return nil, false, wrapRead("event", id, err)
	}
	in, args := keys.in()
	rows, err := q.Query(ctx, "SELECT raw FROM "+t+".events WHERE (service, type, created_at) IN ("+in+") AND event_id = ? LIMIT 1", append(args, id)...)
	if err != nil {
		return nil, false, wrapRead("event", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, false, wrapRead("event", id, rows.Err())
	}
	var raw string
	if err := rows.Scan(&raw); err != nil {
		return nil, false, wrapRead("event", id, err)
	}
	return []byte(raw), true, nil
}

func wrapRead(what, id string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("read %s %q: %w", what, id, err)
}

// keyList is the sort keys (service, type, created_at) a lookup table
// gives for a hash.
type keyList [][3]any

// sortKeys runs a lookup that selects (service, type, created_at).
//
// A lookup is two statements, not one with an IN subquery: ClickHouse 18.16
// reads the events table at a list of literal keys through its primary
// index, but scans it for the keys of a subquery's GLOBAL IN, which a
// cluster needs (see package doc): 5 ms against 335 ms for one event among
// 10M here.
func sortKeys(ctx context.Context, q Querier, query string, args ...any) (keyList, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys keyList
	for rows.Next() {
		var service, typ string
		var at int64
		if err := rows.Scan(&service, &typ, &at); err != nil {
			return nil, err
		}
		keys = append(keys, [3]any{service, typ, at})
	}
	return keys, rows.Err()
}

// in is the keys as the values of an IN list of tuples, bound.
func (ks keyList) in() (string, []any) {
	args := make([]any, 0, 3*len(ks))
	for _, k := range ks {
		args = append(args, k[:]...)
	}
	return strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", len(ks)), ", "), args
}

// StoredEvent is one stored event: its sort key's time and eventId, and
// the original bytes.
type StoredEvent struct {
	ID        string
	CreatedAt int64 // ms
	Raw       []byte
}

// MaxMessageEvents bounds the events a message's timeline reads.
const MaxMessageEvents = 1000

// Message is where the events of one email are stored, as message_ids
// says: the sort keys its messageId's hash is stored under, and the
// eventIds there (a hash shared with another messageId adds that one's).
type Message struct {
	id       string
	keys     keyList
	EventIDs []string
}

// LookUpMessage reads message_ids for the email with messageId id (at most
// MaxMessageEvents events); no EventIDs when it has none.
func LookUpMessage(ctx context.Context, q Querier, db, id string) (Message, error) {
	m := Message{id: id}
	rows, err := q.Query(ctx, "SELECT service, type, created_at, event_id FROM `"+db+"`.message_ids WHERE message_hash = cityHash64(?) "+
		"ORDER BY created_at, event_id LIMIT 1 BY event_id LIMIT ?", id, MaxMessageEvents)
	if err != nil {
		return m, wrapRead("message", id, err)
	}
	defer rows.Close()
	seen := map[[3]any]bool{}
	for rows.Next() {
		var service, typ, eventID string
		var at int64
		if err := rows.Scan(&service, &typ, &at, &eventID); err != nil {
			return m, wrapRead("message", id, err)
		}
		if k := [3]any{service, typ, at}; !seen[k] {
			seen[k] = true
			m.keys = append(m.keys, k)
		}
		m.EventIDs = append(m.EventIDs, eventID)
	}
	return m, wrapRead("message", id, rows.Err())
}

// MessagesAt returns the condition, " AND (service, type, created_at) IN
// (...)", that keeps a read of the events to the sort keys message_ids
// holds for the messageIds ids (one or more), so that a count filtered by
// messageId reads those rows through the primary index instead of its
// range of the table: " AND 0" when none is stored, and "" when they hold
// more than MaxMessageEvents each, which no email does, or more than
// MaxNarrowKeys in all.
func MessagesAt(ctx context.Context, q Querier, db string, ids []string) (string, []any, error) {
	limit := min(MaxMessageEvents*len(ids), MaxNarrowKeys)
	hashes, args := hashesOf(ids)
	keys, err := sortKeys(ctx, q, "SELECT DISTINCT service, type, created_at FROM `"+db+"`.message_ids WHERE message_hash IN ("+
		hashes+") LIMIT ?", append(args, limit+1)...)
	if err != nil {
		return "", nil, fmt.Errorf("look up messages %q: %w", ids, err)
	}
	at, atArgs := keys.at(limit)
	return at, atArgs, nil
}

// MaxNarrowKeys bounds the sort keys a lookup narrows a read to
// (MessagesAt, RecipientsAt): about 90 KB of statement, well within the
// server's 256 KiB (max_query_size). Past it the read scans its range.
const MaxNarrowKeys = 2000

// RecipientsAt is MessagesAt for the recipient filter: the condition that
// keeps a read of service's events in [from, to) to the sort keys
// recipient_ids holds there for the addresses addrs (as the recipients
// column holds them); "" when they are more than MaxNarrowKeys, and the
// read then scans its range.
func RecipientsAt(ctx context.Context, q Querier, db, service string, addrs []string, from, to int64) (string, []any, error) {
	hashes, args := hashesOf(addrs)
	keys, err := sortKeys(ctx, q, "SELECT DISTINCT service, type, created_at FROM `"+db+"`.recipient_ids WHERE recipient_hash IN ("+
		hashes+") AND service = ? AND created_at >= ? AND created_at < ? LIMIT ?",
		append(args, service, from, to, MaxNarrowKeys+1)...)
	if err != nil {
		return "", nil, fmt.Errorf("look up recipients %q: %w", addrs, err)
	}
	at, atArgs := keys.at(MaxNarrowKeys)
	return at, atArgs, nil
}

// hashesOf is the list "cityHash64(?), ..." that hashes vs as the lookup
// tables do, and its arguments.
func hashesOf(vs []string) (string, []any) {
	args := make([]any, len(vs), len(vs)+4)
	for i, v := range vs {
		args[i] = v
	}
	return strings.TrimSuffix(strings.Repeat("cityHash64(?), ", len(vs)), ", "), args
}

// at is the condition, " AND (service, type, created_at) IN (...)", that
// keeps a read of the events to ks: " AND 0" without keys, and "" (no
// narrowing) past limit.
func (ks keyList) at(limit int) (string, []any) {
	switch {
	case len(ks) > limit:
		return "", nil
	case len(ks) == 0:
		return " AND 0", nil
	}
	in, args := ks.in()
	return " AND (service, type, created_at) IN (" + in + ")", args
}

// Events reads the message's events, each stored eventId once, in
// (createdAt, eventId) order: the events table at the message's sort keys
// rather than scanned.
func (m Message) Events(ctx context.Context, q Querier, db string) ([]StoredEvent, error) {
	if len(m.keys) == 0 {
		return nil, nil
	}
	in, args := m.keys.in()
	rows, err := q.Query(ctx, "SELECT event_id, created_at, raw FROM `"+db+"`.events WHERE (service, type, created_at) IN ("+in+") AND message_id = ? "+
		"ORDER BY created_at, event_id LIMIT 1 BY event_id LIMIT ?", append(args, m.id, MaxMessageEvents)...)
	if err != nil {
		return nil, wrapRead("message", m.id, err)
	}
	defer rows.Close()
	var out []StoredEvent
	for rows.Next() {
		var ev StoredEvent
		var raw string
		if err := rows.Scan(&ev.ID, &ev.CreatedAt, &raw); err != nil {
			return nil, wrapRead("message", m.id, err)
		}
		ev.Raw = []byte(raw)
		out = append(out, ev)
	}
	return out, wrapRead("message", m.id, rows.Err())
}

// Delivery is one attempt to deliver an event to a webhook endpoint, from
// the attempt log.
type Delivery struct {
	EventID    string
	EndpointID string
	ReplayID   string // "" for a resend or a test
	Attempt    uint8
	At         int64  // ms
	Outcome    string // delivered, failed or retry
	Status     uint16 // 0 without a response
	LatencyMS  float64
	Error      string
}

// MaxEventDeliveries bounds the attempts DeliveriesOf reads per event.
const MaxEventDeliveries = 100

// DeliveriesOf returns the attempts made for each of the eventIds ids,
// oldest first, at most MaxEventDeliveries per event. delivery_ids gives
// where each eventId's attempts are stored, so the log is read at those
// keys rather than scanned.
func DeliveriesOf(ctx context.Context, q Querier, db string, ids []string) (map[string][]Delivery, error) {
	out := map[string][]Delivery{}
	if len(ids) == 0 {
		return out, nil
	}
	t := "`" + db + "`"
	hashes, idArgs := hashesOf(ids)
	// Two statements, as sortKeys explains.
	rows, err := q.Query(ctx, "SELECT DISTINCT endpoint_id, at FROM "+t+".delivery_ids WHERE id_hash IN ("+hashes+")", idArgs...)
	if err != nil {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}
	var keys []any
	for rows.Next() {
		var endpoint string
		var at int64
		if err := rows.Scan(&endpoint, &at); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read deliveries: %w", err)
		}
		keys = append(keys, endpoint, at)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}
	if len(keys) == 0 {
		return out, nil
	}
	in := strings.TrimSuffix(strings.Repeat("(?, ?), ", len(keys)/2), ", ")
	args := append(append(keys, idArgs...), MaxEventDeliveries)
	rows, err = q.Query(ctx, "SELECT event_id, endpoint_id, replay_id, attempt, at, CAST(outcome AS String), status, latency_ms, error FROM "+t+
		".deliveries WHERE (endpoint_id, at) IN ("+in+") AND event_id IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")+
		") ORDER BY event_id, at, attempt LIMIT ? BY event_id", args...)
	if err != nil {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d Delivery
		if err := rows.Scan(&d.EventID, &d.EndpointID, &d.ReplayID, &d.Attempt, &d.At, &d.Outcome, &d.Status, &d.LatencyMS, &d.Error); err != nil {
			return nil, fmt.Errorf("read deliveries: %w", err)
		}
		out[d.EventID] = append(out[d.EventID], d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}
	return out, nil
}
