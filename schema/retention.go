package schema

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HasTTL reports whether the server deletes expired rows by a table TTL
// (ClickHouse 19.6 and later; not 18.16).
func (v Version) HasTTL() bool { return v.Major > 19 || v.Major == 19 && v.Minor >= 6 }

// Retained is a table whose rows expire: those whose time column (Unix
// milliseconds) is older than Keep. Its partitions are months of that
// column. Companions are tables with the same time column whose rows go
// with it.
type Retained struct {
	Table, Column string
	Companions    []string
}

// The tables with a retention.
var (
	EventsRetained     = Retained{Table: "events", Column: "created_at", Companions: []string{"event_ids", "event_dups", "message_ids", "stats_rollup", "rollup_totals", "rollup_checked", "engagements", "engagements_by_sender", "recipient_ids", "engagement_counts", "engagement_links", "links_checked"}}
	DeliveriesRetained = Retained{Table: "deliveries", Column: "at", Companions: []string{"delivery_ids"}}
)

// ApplyRetention makes rows of r older than keep go. Where the server has
// TTL, it sets the tables' TTL (once: a TTL already set is left alone, so
// no data is rewritten twice). On 18.16 it drops every monthly partition
// wholly older than now-keep, and deletes the companions' rows up to the
// end of the last month dropped: rows stay between keep and keep plus a
// month. It returns the partitions it dropped.
func ApplyRetention(ctx context.Context, conn Conn, db string, r Retained, keep time.Duration, now time.Time) ([]string, error) {
	if keep <= 0 {
		return nil, nil
	}
	v, err := ServerVersion(conn)
	if err != nil {
		return nil, err
	}
	if v.HasTTL() {
		for _, t := range append([]string{r.Table}, r.Companions...) {
			if err := setTTL(ctx, conn, db, t, r.Column, keep); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	return dropMonths(ctx, conn, db, r, now.Add(-keep))
}

func setTTL(ctx context.Context, conn Conn, db, table, col string, keep time.Duration) error {
	ttl := fmt.Sprintf("toDateTime(intDiv(%s, 1000)) + toIntervalSecond(%d)", col, int64(keep/time.Second))
	create, err := queryColumn[string](ctx, conn, "SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?", db, table)
	if err != nil {
		return fmt.Errorf("read the TTL of %s: %w", table, err)
	}
	// Servers print the expression their own way; spaces aside, it reads
	// the same.
	if strings.Contains(noSpace(strings.Join(create, "")), noSpace("TTL "+ttl)) {
		return nil
	}
	if err := conn.Exec(ctx, "ALTER TABLE `"+db+"`."+table+" MODIFY TTL "+ttl); err != nil {
		return fmt.Errorf("set the TTL of %s: %w", table, err)
	}
	return nil
}

// dropMonths drops the partitions of r whose month ended by cutoff.
func dropMonths(ctx context.Context, conn Conn, db string, r Retained, cutoff time.Time) ([]string, error) {
	parts, err := queryColumn[string](ctx, conn, "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active", db, r.Table)
	if err != nil {
		return nil, fmt.Errorf("list the partitions of %s: %w", r.Table, err)
	}
	var dropped []string
	var upTo time.Time
	for _, p := range parts {
		month, err := strconv.Atoi(p)
		if err != nil || month < 100001 || month > 999912 {
			return dropped, fmt.Errorf("partition %q of %s is not a month", p, r.Table)
		}
		end := time.Date(month/100, time.Month(month%100)+1, 1, 0, 0, 0, 0, time.UTC)
		if end.After(cutoff) {
			continue
		}
		// The partition's value is the number toYYYYMM gave, spliced as a
		// checked integer.
		if err := conn.Exec(ctx, "ALTER TABLE `"+db+"`."+r.Table+" DROP PARTITION "+strconv.Itoa(month)); err != nil {
			return dropped, fmt.Errorf("drop partition %d of %s: %w", month, r.Table, err)
		}
		dropped = append(dropped, p)
		if end.After(upTo) {
			upTo = end
		}
	}
	if len(dropped) > 0 {
		for _, t := range r.Companions {
			if err := conn.Exec(ctx, "ALTER TABLE `"+db+"`."+t+" DELETE WHERE "+r.Column+" < ?", upTo.UnixMilli()); err != nil {
				return dropped, fmt.Errorf("delete what %s held of the dropped months: %w", t, err)
			}
		}
	}
	return dropped, nil
}

func noSpace(s string) string { return strings.Join(strings.Fields(s), "") }

// queryColumn returns the one column, of type T, of a query's rows.
func queryColumn[T any](ctx context.Context, q Querier, query string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
