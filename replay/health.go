package replay

import (
	"context"
	"fmt"
	"time"
)

// Health is how an endpoint has been answering, from the attempt log.
type Health struct {
	LastHour            Window  `json:"last_hour"`
	LastDay             Window  `json:"last_day"`
	ConsecutiveFailures uint64  `json:"consecutive_failures"` // attempts not delivered since the last that was
	LastSuccessAt       *string `json:"last_success_at"`
	LastFailureAt       *string `json:"last_failure_at"`
	LastError           string  `json:"last_error,omitempty"` // of the last failure
}

// Window counts the attempts of a span and those not delivered.
type Window struct {
	Attempts uint64 `json:"attempts"`
	Failures uint64 `json:"failures"`
}

// Health reads an endpoint's health at now from the deliveries log.
func (s *Store) Health(ctx context.Context, endpointID string, now time.Time) (Health, error) {
	hour, day := now.Add(-time.Hour).UnixMilli(), now.Add(-24*time.Hour).UnixMilli()
	// The endpoint's attempts are one range of the table's order
	// (endpoint_id, at); the scalar subquery finds the last success first.
	attempts := "(SELECT at, error, CAST(outcome AS String) = 'delivered' AS ok FROM " + s.table("deliveries") + " WHERE endpoint_id = ?)"
	rows, err := s.conn.Query(ctx, "SELECT countIf(at >= ?), countIf(at >= ? AND ok = 0), countIf(at >= ?), countIf(at >= ? AND ok = 0), "+
		"maxIf(at, ok = 1), maxIf(at, ok = 0), argMaxIf(error, at, ok = 0), "+
		"countIf(ok = 0 AND at > (SELECT maxIf(at, ok = 1) FROM "+attempts+")) FROM "+attempts,
		hour, hour, day, day, endpointID, endpointID)
	if err != nil {
		return Health{}, fmt.Errorf("read health of %s: %w", endpointID, err)
	}
	defer rows.Close()
	var h Health
	var lastOK, lastBad int64
	if rows.Next() {
		if err := rows.Scan(&h.LastHour.Attempts, &h.LastHour.Failures, &h.LastDay.Attempts, &h.LastDay.Failures,
			&lastOK, &lastBad, &h.LastError, &h.ConsecutiveFailures); err != nil {
			return Health{}, fmt.Errorf("read health of %s: %w", endpointID, err)
		}
	}
	if err := rows.Err(); err != nil {
		return Health{}, fmt.Errorf("read health of %s: %w", endpointID, err)
	}
	h.LastSuccessAt, h.LastFailureAt = optTime(fromMS(lastOK)), optTime(fromMS(lastBad))
	return h, nil
}
