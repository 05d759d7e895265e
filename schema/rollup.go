package schema

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Counts over long ranges read stats_rollup, not the events: per quarter
// hour of createdAt (UTC), service, type, livemode and the dimensions
// requests filter and group by, how many events were stored and the sums
// of their additive columns. A materialized view adds every insert into
// events to it, so it is exact the moment an insert returns. A quarter hour
// is the widest step every time zone's hours and days start on.
//
// It counts every copy it was given, so a quarter hour holding a key ever
// recorded in event_dups, merged or not, is counted from the events
// instead (see Rollup). So is one listed in rollup_gaps: a quarter hour
// whose rollup differed from its events when the rollup was built from the
// table (migration, RebuildRollups) while another process inserted.
//
// Distinct counts (unique opens) do not add up across quarter hours. They
// read the events of their types, or engagements: the events of
// DistinctTypes alone, with the columns their counts filter and group by,
// ordered so that a recipient domain's rows of a range are one read. A
// view feeds it too; a copy stored twice there counts once, as distinct
// counts ignore copies.

// DistinctTypes are the types whose distinct messageIds stats count.
var DistinctTypes = []string{"send.email.opened", "send.email.clicked"}

// EngagementDims are the dimensions engagements keeps: a distinct count
// filtered by any other reads the events.
var EngagementDims = []string{"recipient_domain", "sender_domain", "bounce_type"}

// RollupStep is the rollup's step in ms: a quarter hour.
const RollupStep int64 = 900_000

// RollupDims are the dimensions the rollup keeps: a count filtered or
// grouped by any other (message_id, recipient) reads the events.
var RollupDims = []string{"recipient_domain", "sender_domain", "bounce_type", "npa", "voice", "format"}

// rollupSelect is what the rollup holds for the events of {from}: the
// view runs it on each insert, a rebuild on the whole table. {step} names
// the quarter hour's start. The view's must be created_at, the rollup's
// column (named so for the retention of the events' companions), which a
// view matches by name; an alias that shadows its own column is not
// rewritten right for a Distributed table on 18.16, so a rebuild, which
// inserts by position, names it step.
const rollupSelect = `SELECT service, type, intDiv(created_at, 900000) * 900000 AS {step}, livemode,
	recipient_domain, sender_domain, bounce_type, npa, voice, format,
	count() AS events, sum(has_carrier) AS carrier, sum(has_inventory) AS inventory,
	sum(text_length) AS text_length, sum(duration_sec) AS duration_sec
FROM {from} GROUP BY service, type, {step}, livemode, recipient_domain, sender_domain, bounce_type, npa, voice, format`

// rollupOf is rollupSelect over from, the step named step.
func rollupOf(from, step string) string {
	return strings.NewReplacer("{from}", from, "{step}", step).Replace(rollupSelect)
}

const rollupColumns = "service, type, created_at, livemode, recipient_domain, sender_domain, bounce_type, npa, voice, format, " +
	"events, carrier, inventory, text_length, duration_sec"

// rollupGapsSQL lists, into rollup_gaps, the quarter hours whose rollup
// does not count what the events table holds.
const rollupGapsSQL = `INSERT INTO {db}.rollup_gaps (created_at, found_at)
SELECT created_at, now() FROM (
	SELECT step AS created_at, sum(n) AS diff FROM (
		SELECT created_at AS step, toInt64(events) AS n FROM {db}.stats_rollup
		UNION ALL SELECT intDiv(created_at, 900000) * 900000 AS step, toInt64(-1) AS n FROM {db}.events)
	GROUP BY step HAVING diff != 0)`

// rollupMigration creates the rollup, its view and rollup_gaps, and on one
// server fills the rollup from the events stored before (a cluster's
// tables all exist before it stores an event). Events inserted while the
// copy runs are counted by both; the gaps statement finds their quarter
// hours.
func rollupMigration(d ddl) []string {
	r := d.r
	return slices.Concat(
		d.sharded("stats_rollup", `
	service {lc},
	type {lc},
	created_at Int64,
	livemode UInt8,
	recipient_domain {lc},
	sender_domain {lc},
	bounce_type {lc},
	npa {lc},
	voice {lc},
	format {lc},
	events UInt64,
	carrier UInt64,
	inventory UInt64,
	text_length Int64,
	duration_sec Float64`, "SummingMergeTree()", `PARTITION BY toYYYYMM(toDateTime(intDiv(created_at, 1000), 'UTC'))
ORDER BY (service, type, created_at, livemode, recipient_domain, sender_domain, bounce_type, npa, voice, format)`),
		[]string{
			d.table("rollup_gaps", `
	created_at Int64,
	found_at DateTime`, "ReplacingMergeTree()", `ORDER BY created_at`),
			r.Replace("CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.stats_rollup_mv{on} TO {db}.stats_rollup{local} AS\n" +
				rollupOf("{db}.events{local}", "created_at")),
		},
		d.serverOnly(r.Replace("INSERT INTO {db}.stats_rollup ("+rollupColumns+")\n"+rollupOf("{db}.events", "step"))),
		d.serverOnly(r.Replace(rollupGapsSQL)))
}

// engagementsMigration creates engagements and its view, and on one server
// fills it from the events stored before.
func engagementsMigration(d ddl) []string {
	r := d.r
	return slices.Concat(
		d.sharded("engagements", `
	service {lc},
	type {lc},
	created_at Int64,
	livemode UInt8,
	recipient_domain {lc},
	sender_domain {lc},
	bounce_type {lc},
	message_hash UInt64`, "MergeTree()", `PARTITION BY toYYYYMM(toDateTime(intDiv(created_at, 1000), 'UTC'))
ORDER BY (service, type, livemode, recipient_domain, created_at)`),
		[]string{r.Replace("CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.engagements_mv{on} TO {db}.engagements{local} AS\n" + engagementsOf("{db}.events{local}"))},
		d.serverOnly(engagementsFill(d)))
}

// engagementsOf is what engagements holds of the events of from.
func engagementsOf(from string) string {
	return "SELECT service, type, created_at, livemode, recipient_domain, sender_domain, bounce_type, message_hash FROM " + from +
		" WHERE type IN ('" + strings.Join(DistinctTypes, "', '") + "')" // constants
}

// engagementsFill copies into engagements the events the table holds.
func engagementsFill(d ddl) string {
	return d.r.Replace("INSERT INTO {db}.engagements\n" + engagementsOf("{db}.events"))
}

// RebuildRollups builds the rollup and engagements again from the events
// table, on one server (cluster "") or on the cluster named cluster: the
// events table is the source of truth, and this is how to get back to it
// after changing either by hand. It returns how many quarter hours
// CheckRollup then lists: those another process inserted into while it
// ran, counted from the events so counts stay exact. On a cluster it
// writes to each shard before it returns, but a replica behind the others
// makes the check list quarter hours too (exact but slower): run it while
// the replicas are in step.
func RebuildRollups(ctx context.Context, conn Conn, db, cluster string) (int, error) {
	if err := ValidateDatabase(db); err != nil {
		return 0, err
	}
	if cluster != "" {
		if err := ValidateCluster(cluster); err != nil {
			return 0, err
		}
	}
	v, err := ServerVersion(conn)
	if err != nil {
		return 0, err
	}
	d := newDDL(db, cluster, v)
	// On a cluster the copy goes through the Distributed table, which
	// would otherwise send it to the shards after returning.
	sync := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	if cluster == "" {
		sync = ctx
	}
	for _, stmt := range []string{
		d.r.Replace("TRUNCATE TABLE {db}.stats_rollup{local}{on}"),
		d.r.Replace("TRUNCATE TABLE {db}.rollup_gaps{on}"),
		d.r.Replace("INSERT INTO {db}.stats_rollup (" + rollupColumns + ")\n" + rollupOf("{db}.events", "step")),
		d.r.Replace("TRUNCATE TABLE {db}.engagements{local}{on}"),
		engagementsFill(d),
	} {
		if err := conn.Exec(sync, stmt); err != nil {
			return 0, fmt.Errorf("rebuild the rollup of %s: %w", db, err)
		}
	}
	return CheckRollup(ctx, conn, db)
}

// CheckRollup compares the rollup with the events table, quarter hour by
// quarter hour, lists in rollup_gaps those that differ (counts read them
// from the events from then on) and returns how many there are now. A
// quarter hour whose copies ClickHouse merged differs too; counts read
// those from the events anyway (event_dups).
func CheckRollup(ctx context.Context, conn Conn, db string) (int, error) {
	if err := ValidateDatabase(db); err != nil {
		return 0, err
	}
	q := strings.NewReplacer("{db}", "`"+db+"`")
	if err := conn.Exec(ctx, q.Replace(rollupGapsSQL)); err != nil {
		return 0, fmt.Errorf("check the rollup of %s: %w", db, err)
	}
	rows, err := conn.Query(ctx, q.Replace("SELECT count(DISTINCT created_at) FROM {db}.rollup_gaps"))
	if err != nil {
		return 0, fmt.Errorf("check the rollup of %s: %w", db, err)
	}
	defer rows.Close()
	var n uint64
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, fmt.Errorf("check the rollup of %s: %w", db, err)
		}
	}
	return int(n), rows.Err()
}

// maxRawSteps bounds the quarter hours a count reads from the events
// inside the rollup's span; past it the whole range is read from the
// events.
const maxRawSteps = 1000

// Rollup is how a count over one createdAt range splits between the
// rollup and the events: the rollup covers the whole quarter hours from
// From to To but the Raw ones; the events give the rest (the range's
// partial quarter hours at each end, and Raw).
type Rollup struct {
	db       string
	from, to int64   // the range, ms
	From, To int64   // the rollup's span, whole quarter hours; From == To when it has none
	Raw      []int64 // quarter hours (their start) inside the span the rollup cannot count
}

// PlanRollup splits [from, to) (ms) between the rollup and the events.
func PlanRollup(ctx context.Context, q Querier, db string, from, to int64) (Rollup, error) {
	r := Rollup{db: db, from: from, to: to}
	// Stored createdAt is never negative (Parse), so neither is a step.
	r.From = (max(from, 0) + RollupStep - 1) / RollupStep * RollupStep
	r.To = max(to, 0) / RollupStep * RollupStep
	if r.To <= r.From {
		r.From, r.To = from, from
		return r, nil
	}
	rows, err := q.Query(ctx, "SELECT DISTINCT step FROM ("+
		"SELECT intDiv(created_at, 900000) * 900000 AS step FROM `"+db+"`.event_dups WHERE created_at >= ? AND created_at < ? "+
		"UNION ALL SELECT created_at AS step FROM `"+db+"`.rollup_gaps WHERE created_at >= ? AND created_at < ?) ORDER BY step LIMIT ?",
		r.From, r.To, r.From, r.To, maxRawSteps+1)
	if err != nil {
		return r, fmt.Errorf("plan a count over the rollup: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var step int64
		if err := rows.Scan(&step); err != nil {
			return r, fmt.Errorf("plan a count over the rollup: %w", err)
		}
		r.Raw = append(r.Raw, step)
	}
	if err := rows.Err(); err != nil {
		return r, fmt.Errorf("plan a count over the rollup: %w", err)
	}
	if len(r.Raw) > maxRawSteps {
		r.From, r.To, r.Raw = from, from, nil
	}
	return r, nil
}

// Covers reports whether the rollup counts any of the range.
func (r Rollup) Covers() bool { return r.To > r.From }

// Source returns what follows FROM in a statement that counts, from the
// rollup, the rows matching where (which binds args and must not name
// created_at): the rollup and the WHERE clause of its span. Its rows carry
// the dimensions and the sums events, carrier, inventory, text_length and
// duration_sec; created_at is each row's quarter hour.
func (r Rollup) Source(where string, args []any) (string, []any) {
	sql := "`" + r.db + "`.stats_rollup WHERE created_at >= ? AND created_at < ?"
	all := []any{r.From, r.To}
	if len(r.Raw) > 0 {
		sql += " AND created_at NOT IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(r.Raw)), ", ") + ")"
		for _, s := range r.Raw {
			all = append(all, s)
		}
	}
	return sql + " AND " + where, append(all, args...)
}

// RawSQL is the condition, " AND (...)", that keeps to the events the
// rollup does not count, and false when it counts the whole range.
func (r Rollup) RawSQL() (string, []any, bool) {
	if !r.Covers() {
		return "", nil, true
	}
	var conds []string
	var args []any
	if r.from < r.From {
		conds, args = append(conds, "created_at < ?"), append(args, r.From)
	}
	if r.To < r.to {
		conds, args = append(conds, "created_at >= ?"), append(args, r.To)
	}
	if len(r.Raw) > 0 {
		conds = append(conds, "intDiv(created_at, 900000) * 900000 IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(r.Raw)), ", ")+")")
		for _, s := range r.Raw {
			args = append(args, s)
		}
	}
	if len(conds) == 0 {
		return "", nil, false
	}
	return " AND (" + strings.Join(conds, " OR ") + ")", args, true
}

// Within reports whether the filters are all on dimensions among dims
// (RollupDims, EngagementDims).
func (fs Filters) Within(dims []string) bool {
	for _, f := range fs {
		if !slices.Contains(dims, f.Dim.Name) {
			return false
		}
	}
	return true
}

// Has reports whether the filters hold one on the dimension named name.
func (fs Filters) Has(name string) bool {
	return slices.ContainsFunc(fs, func(f Filter) bool { return f.Dim.Name == name })
}

// Distinct returns what follows FROM in a statement that counts distinct
// values of the events matching where (which binds args): the events table
// as it is, since a copy holds its values once more.
func (c Counted) Distinct(where string, args []any) (string, []any) {
	return "`" + c.db + "`.events WHERE " + where, args
}

// Engaged returns what follows FROM in a statement that counts distinct
// messageIds of the events of DistinctTypes matching where (which binds
// args and may only name engagements' columns): engagements and the WHERE
// clause. Copies need no care there: they hold the messageId once more.
func (c Counted) Engaged(where string, args []any) (string, []any) {
	return "`" + c.db + "`.engagements WHERE " + where, args
}
