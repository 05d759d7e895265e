package replay

import (
	"context"
	"fmt"
	"time"
)

// An endpoint whose every attempt fails for its DisableAfter is disabled:
// its replays pause, keeping their cursors, until it is enabled again. Each
// disabling and re-enabling is a row of endpoint_changes, written by
// whoever makes it (a worker, or the API on request); an endpoint's state
// is its latest change, so these writes never race the API's writes of the
// endpoint itself.

// Endpoint changes.
const (
	ChangeDisabled = "disabled"
	ChangeEnabled  = "enabled"
)

// DefaultDisableAfter is how long an endpoint may fail every attempt before
// it is disabled, unless it says otherwise.
const DefaultDisableAfter = 24 * time.Hour

// MaxDisableAfter is the longest DisableAfter: the attempt log's default
// retention, beyond which a run of failures cannot be seen whole.
const MaxDisableAfter = DefaultDeliveriesRetention

// ParseDisableAfter checks a DisableAfter given in seconds: 0 (never), or
// from 1 s to MaxDisableAfter.
func ParseDisableAfter(seconds int64) (time.Duration, error) {
	if seconds < 0 || time.Duration(seconds)*time.Second > MaxDisableAfter {
		return 0, fmt.Errorf("want seconds from 1 to %d, or 0 to never disable, got %d", int64(MaxDisableAfter/time.Second), seconds)
	}
	return time.Duration(seconds) * time.Second, nil
}

// Change is one disabling or re-enabling of an endpoint.
type Change struct {
	EndpointID string
	At         time.Time
	Change     string // ChangeDisabled or ChangeEnabled
	Reason     string
}

// RecordChange appends a change of an endpoint's state.
func (s *Store) RecordChange(ctx context.Context, c Change) error {
	return s.insert(ctx, "endpoint_changes", []string{"endpoint_id", "at", "change", "reason"},
		[]any{c.EndpointID, c.At.UnixMilli(), c.Change, c.Reason})
}

// latestChanges returns each endpoint's latest change, or only id's.
func (s *Store) latestChanges(ctx context.Context, id string) (map[string]Change, error) {
	where, args := "", []any{}
	if id != "" {
		where, args = " WHERE endpoint_id = ?", append(args, id)
	}
	rows, err := s.conn.Query(ctx, "SELECT endpoint_id, max(at), CAST(argMax(change, at) AS String), argMax(reason, at) FROM "+
		s.table("endpoint_changes")+where+" GROUP BY endpoint_id", args...)
	if err != nil {
		return nil, fmt.Errorf("read endpoint changes: %w", err)
	}
	defer rows.Close()
	out := map[string]Change{}
	for rows.Next() {
		var c Change
		var at int64
		if err := rows.Scan(&c.EndpointID, &at, &c.Change, &c.Reason); err != nil {
			return nil, fmt.Errorf("read endpoint changes: %w", err)
		}
		c.At = fromMS(at)
		out[c.EndpointID] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read endpoint changes: %w", err)
	}
	return out, nil
}

// failingSince returns when the endpoint's current run of failed attempts
// began: its first attempt in the log after both its last delivered one and
// after (a delivered attempt not logged yet, or a re-enabling). It is zero
// when there is no such attempt.
func (s *Store) failingSince(ctx context.Context, endpointID string, after time.Time) (time.Time, error) {
	d := s.table("deliveries")
	rows, err := s.conn.Query(ctx, "SELECT count(), min(at) FROM "+d+" WHERE endpoint_id = ? AND at > greatest(?, "+
		"(SELECT maxIf(at, outcome = 'delivered') FROM "+d+" WHERE endpoint_id = ?))", endpointID, after.UnixMilli(), endpointID)
	if err != nil {
		return time.Time{}, fmt.Errorf("read failures of %s: %w", endpointID, err)
	}
	defer rows.Close()
	var n uint64
	var first int64
	if rows.Next() {
		if err := rows.Scan(&n, &first); err != nil {
			return time.Time{}, fmt.Errorf("read failures of %s: %w", endpointID, err)
		}
	}
	if err := rows.Err(); err != nil || n == 0 {
		return time.Time{}, err
	}
	return fromMS(first), nil
}

// countChanges counts the disablings and re-enablings in [from, to), of
// one endpoint or all ("").
func (s *Store) countChanges(ctx context.Context, from, to time.Time, endpointID string) (disabled, enabled uint64, err error) {
	where, args := "at >= ? AND at < ?", []any{from.UnixMilli(), to.UnixMilli()}
	if endpointID != "" {
		where, args = where+" AND endpoint_id = ?", append(args, endpointID)
	}
	rows, err := s.conn.Query(ctx, "SELECT countIf(change = 'disabled'), countIf(change = 'enabled') FROM "+s.table("endpoint_changes")+" WHERE "+where, args...)
	if err != nil {
		return 0, 0, fmt.Errorf("count endpoint changes: %w", err)
	}
	defer rows.Close()
	if rows.Next() {
		if err := rows.Scan(&disabled, &enabled); err != nil {
			return 0, 0, fmt.Errorf("count endpoint changes: %w", err)
		}
	}
	return disabled, enabled, rows.Err()
}
