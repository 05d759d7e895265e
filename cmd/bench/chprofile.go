package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// chProfile prints what ClickHouse spent on a section since its start: its
// statements, grouped by their text with every number made N, by total
// duration, and the parts written and merged per table (event types 1 and
// 2: NewPart and MergeParts, NEW_PART and MERGE_PARTS on 18.16). It reads
// system.query_log and system.part_log, which a server started by
// chlocal.StartLogged keeps (-clickhouse-profile).
func (r *rig) chProfile(ctx context.Context, w io.Writer, section string, since time.Time) error {
	if err := r.conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		return fmt.Errorf("clickhouse profile: %w", err)
	}
	if err := r.printLog(ctx, w, since, "ClickHouse during "+section+", its statements by total duration (system.query_log):",
		"count\tms\tcpu ms\trows read\trows written\t",
		`SELECT substring(replaceRegexpAll(replaceRegexpAll(query, '\\s+', ' '), '[0-9]+', 'N'), 1, 110) AS q,
		count(), sum(query_duration_ms),
		intDiv(sum(ProfileEvents.Values[indexOf(ProfileEvents.Names, 'UserTimeMicroseconds')] + ProfileEvents.Values[indexOf(ProfileEvents.Names, 'SystemTimeMicroseconds')]), 1000),
		sum(read_rows), sum(written_rows)
		FROM system.query_log WHERE type = 2 AND event_time >= toDateTime(?) GROUP BY q ORDER BY sum(query_duration_ms) DESC LIMIT 15`); err != nil {
		return err
	}
	return r.printLog(ctx, w, since, "ClickHouse during "+section+", parts per table (system.part_log):",
		"written\trows\tmerges\tmerge ms\tmerged rows\t",
		`SELECT concat(database, '.', table) AS t, countIf(CAST(event_type AS Int8) = 1), sumIf(rows, CAST(event_type AS Int8) = 1),
		countIf(CAST(event_type AS Int8) = 2), sumIf(duration_ms, CAST(event_type AS Int8) = 2), sumIf(rows, CAST(event_type AS Int8) = 2)
		FROM system.part_log WHERE event_time >= toDateTime(?) GROUP BY t ORDER BY count() DESC LIMIT 15`)
}

// printLog prints under title the rows of query, each a label and four
// counts, since being the query's one argument (in seconds).
func (r *rig) printLog(ctx context.Context, w io.Writer, since time.Time, title, header, query string) error {
	rows, err := r.conn.Query(ctx, query, since.Unix())
	if err != nil {
		return fmt.Errorf("clickhouse profile: %w", err)
	}
	defer rows.Close()
	fmt.Fprintf(w, "\n%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, header)
	for rows.Next() {
		var label string
		var n [5]uint64
		if err := rows.Scan(&label, &n[0], &n[1], &n[2], &n[3], &n[4]); err != nil {
			return fmt.Errorf("clickhouse profile: %w", err)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t  %s\n", n[0], n[1], n[2], n[3], n[4], label)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse profile: %w", err)
	}
	return tw.Flush()
}
