package replay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/dodev/hindsight/schema"
)

// Conn is the part of a ClickHouse connection replay needs.
type Conn interface {
	Exec(ctx context.Context, query string, args ...any) error
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
	PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error)
	// ServerVersion picks how the attempt log's retention is applied.
	ServerVersion() (*driver.ServerVersion, error)
}

var _ Conn = (driver.Conn)(nil)

// ErrNotFound means no live row has that id.
var ErrNotFound = errors.New("not found")

// Store keeps endpoints, replay jobs, leases and delivery attempts in
// ClickHouse. Rows are never updated in place: a change is a new row with a
// higher version, and reads take the newest.
type Store struct {
	conn        Conn
	db          string
	last        atomic.Int64  // the last version handed out
	leaseSettle time.Duration // WorkerConfig.LeaseSettle
}

// NewStore returns a Store over database db, which Migrate has prepared.
func NewStore(conn Conn, db string) *Store { return &Store{conn: conn, db: db} }

// version returns a number larger than every earlier one from this process
// and, by being the wall clock in ns, than those of other processes before.
func (s *Store) version() uint64 {
	for {
		last := s.last.Load()
		v := max(time.Now().UnixNano(), last+1)
		if s.last.CompareAndSwap(last, v) {
			return uint64(v)
		}
	}
}

func newID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func (s *Store) table(name string) string { return "`" + s.db + "`." + name }

// insert appends rows to a table, columns named (ClickHouse 18.16 needs them).
func (s *Store) insert(ctx context.Context, table string, cols []string, rows ...[]any) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table(table)+" ("+strings.Join(cols, ", ")+")")
	if err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	defer b.Close()
	for _, r := range rows {
		if err := b.Append(r...); err != nil {
			return fmt.Errorf("insert into %s: %w", table, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}

// Endpoint is a webhook receiver and the event types it takes.
type Endpoint struct {
	ID             string
	URL            string
	EnabledEvents  []string
	Description    string
	RateLimit      float64 // deliveries per second; 0 is no limit
	Secret         string
	PreviousSecret string    // still signs beside Secret until PreviousUntil
	PreviousUntil  time.Time // zero without a rotation
	CreatedAt      time.Time
	RetrySchedule  []time.Duration   // waits before each retry; nil is webhook.Backoff
	Headers        map[string]string // sent with every delivery; see ValidateHeaders
	// DisableAfter is how long every attempt may fail before the endpoint
	// is disabled; 0 never disables it. Whole seconds.
	DisableAfter time.Duration
	// DisabledAt is when the endpoint was disabled (zero: it is enabled),
	// DisabledReason why, and EnabledAt when it was last enabled again
	// (zero if never): all from its latest change (RecordChange).
	DisabledAt     time.Time
	DisabledReason string
	EnabledAt      time.Time
}

// Disabled reports whether the endpoint is disabled.
func (e Endpoint) Disabled() bool { return !e.DisabledAt.IsZero() }

// Secrets are the secrets deliveries are signed with now.
func (e Endpoint) Secrets(now time.Time) []string {
	if e.PreviousSecret != "" && now.Before(e.PreviousUntil) {
		return []string{e.Secret, e.PreviousSecret}
	}
	return []string{e.Secret}
}

var endpointCols = []string{"id", "url", "enabled_events", "description", "rate_limit", "secret",
	"previous_secret", "previous_secret_until", "created_at", "deleted", "version",
	"retry_schedule", "header_names", "header_values", "disable_after"}

// SaveEndpoint writes the endpoint's current state.
func (s *Store) SaveEndpoint(ctx context.Context, e Endpoint) error {
	return s.writeEndpoint(ctx, e, 0)
}

// DeleteEndpoint marks the endpoint deleted. The deleted row keeps no
// secret and no custom headers; the versions before it go when ClickHouse merges the table.
func (s *Store) DeleteEndpoint(ctx context.Context, e Endpoint) error {
	e.Secret, e.PreviousSecret, e.PreviousUntil = "", "", time.Time{}
	e.Headers = nil // they may hold credentials too
	return s.writeEndpoint(ctx, e, 1)
}

func (s *Store) writeEndpoint(ctx context.Context, e Endpoint, deleted uint8) error {
	var until int64
	if !e.PreviousUntil.IsZero() {
		until = e.PreviousUntil.UnixMilli()
	}
	events := e.EnabledEvents
	if events == nil {
		events = []string{}
	}
	schedule := make([]uint32, len(e.RetrySchedule))
	for i, d := range e.RetrySchedule {
		schedule[i] = uint32(d / time.Second)
	}
	names := slices.Sorted(maps.Keys(e.Headers))
	values := make([]string, len(names))
	for i, n := range names {
		values[i] = e.Headers[n]
	}
	if names == nil {
		names = []string{}
	}
	return s.insert(ctx, "endpoints", endpointCols, []any{e.ID, e.URL, events, e.Description, e.RateLimit, e.Secret,
		e.PreviousSecret, until, e.CreatedAt.UnixMilli(), deleted, s.version(), schedule, names, values, uint32(e.DisableAfter / time.Second)})
}

// Endpoints returns the live endpoints, oldest first, or the one with id.
func (s *Store) Endpoints(ctx context.Context, id string) ([]Endpoint, error) {
	where, args := "", []any{}
	if id != "" {
		where, args = " WHERE id = ?", append(args, id)
	}
	// FINAL picks each id's newest row; the deleted filter runs after it, on
	// the outer query, so an older undeleted row can never resurface.
	rows, err := s.conn.Query(ctx, "SELECT id, url, enabled_events, description, rate_limit, secret, previous_secret, "+
		"previous_secret_until, created_at, retry_schedule, header_names, header_values, disable_after FROM (SELECT * FROM "+s.table("endpoints")+" FINAL"+where+
		") WHERE deleted = 0 ORDER BY created_at, id", args...)
	if err != nil {
		return nil, fmt.Errorf("read endpoints: %w", err)
	}
	defer rows.Close()
	var out []Endpoint
	for rows.Next() {
		var e Endpoint
		var until, created int64
		var schedule []uint32
		var names, values []string
		var disableAfter uint32
		if err := rows.Scan(&e.ID, &e.URL, &e.EnabledEvents, &e.Description, &e.RateLimit, &e.Secret,
			&e.PreviousSecret, &until, &created, &schedule, &names, &values, &disableAfter); err != nil {
			return nil, fmt.Errorf("read endpoints: %w", err)
		}
		for _, sec := range schedule {
			e.RetrySchedule = append(e.RetrySchedule, time.Duration(sec)*time.Second)
		}
		if len(names) != len(values) {
			return nil, fmt.Errorf("read endpoints: %s has %d header names and %d values", e.ID, len(names), len(values))
		}
		for i, n := range names {
			if e.Headers == nil {
				e.Headers = map[string]string{}
			}
			e.Headers[n] = values[i]
		}
		if until > 0 {
			e.PreviousUntil = time.UnixMilli(until).UTC()
		}
		e.CreatedAt = time.UnixMilli(created).UTC()
		e.DisableAfter = time.Duration(disableAfter) * time.Second
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read endpoints: %w", err)
	}
	changes, err := s.latestChanges(ctx, id)
	if err != nil {
		return nil, err
	}
	for i := range out {
		switch c := changes[out[i].ID]; c.Change {
		case ChangeDisabled:
			out[i].DisabledAt, out[i].DisabledReason = c.At, c.Reason
		case ChangeEnabled:
			out[i].EnabledAt = c.At
		}
	}
	return out, nil
}

// Event returns one stored event's original bytes by its eventId.
func (s *Store) Event(ctx context.Context, id string) ([]byte, error) {
	if len(id) > schema.MaxEventIDLen {
		return nil, fmt.Errorf("event %q: %w", id, ErrNotFound)
	}
	raw, found, err := schema.ReadEvent(ctx, s.conn, s.db, id)
	if err == nil && !found {
		err = fmt.Errorf("event %q: %w", id, ErrNotFound)
	}
	return raw, err
}

// Endpoint returns one live endpoint.
func (s *Store) Endpoint(ctx context.Context, id string) (Endpoint, error) {
	es, err := s.Endpoints(ctx, id)
	if err != nil {
		return Endpoint{}, err
	}
	if len(es) == 0 {
		return Endpoint{}, fmt.Errorf("endpoint %s: %w", id, ErrNotFound)
	}
	return es[0], nil
}

// sleep waits d (none when d <= 0), or until ctx ends: then it returns
// ctx's error.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
