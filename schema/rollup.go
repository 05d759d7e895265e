package schema

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Counts over long ranges read stats_rollup, not the events: per quarter
// hour of createdAt (UTC), service, type, livemode and the dimensions
// requests filter and group by, how many events were stored and the sums
// of their additive columns. A materialized view adds every insert into
// events to it. A quarter hour is the widest step every time zone's hours
// and days start on.
//
// The rollup counts every row it was given, copies of an event included,
// and ClickHouse may merge a copy away before ingest ever sees it stored
// twice. So a quarter hour is counted from the rollup only once it has been
// checked (CheckRollup): its rollup's total equalled the number of distinct
// events (service, type, createdAt, eventId: the key ClickHouse merges
// copies by) the events table held there, and rollup_checked keeps that
// total. A count reads the rollup for the quarter hours whose total is
// still the one checked, and the events for the rest (see PlanRollup).
// Inserts only ever add to the rollup, so any insert after the check, a
// copy above all, sends its quarter hour back to the events until it is
// checked again, and a quarter hour holding a copy never passes. Ingest
// checks the quarter hours it stored into once they are over, and every
// one not yet checked at start and every hour.
//
// One race is left, within an insert: ClickHouse writes an insert's part
// of events before the view's part of the rollup. A quarter hour whose
// rollup counts k copies merged away, and whose events already hold k
// rows the rollup has yet to get, passes a check made in that instant,
// the rollup counting the copies in place of those rows; the insert's own
// part of the rollup, a moment later, sends it back to the events for
// good.
//
// Distinct counts (unique opens) do not add up across quarter hours. They
// read the events of their types, or engagements: the events of
// DistinctTypes alone, with the columns their counts filter and group by,
// in two orders so that a recipient domain's, a sender domain's or a
// bounce type's rows of a range are one read. Views feed them too; a copy
// stored twice there counts once, as distinct counts ignore copies.

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

// rollupMigration creates the rollup, its view and rollup_checked, and on
// one server fills the rollup from the events stored before (a cluster's
// tables all exist before it stores an event). Nothing is checked yet, so
// counts read the events until ingest checks the quarter hours.
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
			d.table("rollup_checked", `
	created_at Int64,
	events UInt64,
	version UInt64`, "ReplacingMergeTree(version)", `PARTITION BY toYYYYMM(toDateTime(intDiv(created_at, 1000), 'UTC'))
ORDER BY created_at`),
			r.Replace("CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.stats_rollup_mv{on} TO {db}.stats_rollup{local} AS\n" +
				rollupOf("{db}.events{local}", "created_at")),
		},
		d.serverOnly(r.Replace("INSERT INTO {db}.stats_rollup ("+rollupColumns+")\n"+rollupOf("{db}.events", "step"))))
}

// Every count over the rollup first compares each quarter hour's total
// with the one checked (PlanRollup). rollup_totals keeps those totals, a
// row per quarter hour, fed by its own view from the same inserts, so that
// the comparison reads a month's 2,976 quarter hours rather than the
// rollup's rows of the month (1.17M at 10M events). Its totals equal the
// rollup's sums: both count every row inserted. Within one insert the
// views write one after the other, and either order is safe. Totals
// written before the rollup are ahead of it, so a total equal to the one
// checked means the rollup's sum is too (a check records the rollup's own
// sum). Totals written after it leave only the race within an insert told
// at the top of this file. A total that differs from the rollup's sum for
// good (a view that failed, a migration or rebuild run while events were
// stored) keeps its quarter hour read from the events, exact, until a
// rebuild.

// quarterCounts creates table, sharded: how many events each quarter hour
// (created_at, its start) holds, summed as its parts merge. rollup_totals
// and engagement_counts are such tables, read by stateSQL.
func quarterCounts(d ddl, table string) []string {
	return d.sharded(table, `
	created_at Int64,
	events UInt64`, "SummingMergeTree()", `PARTITION BY toYYYYMM(toDateTime(intDiv(created_at, 1000), 'UTC'))
ORDER BY created_at`)
}

// quarterCountsOf counts the events of from per quarter hour, those of
// types if any given, the quarter hour's start named step (see
// rollupSelect on that name).
func quarterCountsOf(from, step string, types ...string) string {
	where := ""
	if len(types) > 0 {
		where = " WHERE type IN ('" + strings.Join(types, "', '") + "')" // constants
	}
	return "SELECT intDiv(created_at, 900000) * 900000 AS " + step + ", count() AS events FROM " + from + where + " GROUP BY " + step
}

// totalsOf is what rollup_totals holds of the events of from.
func totalsOf(from, step string) string { return quarterCountsOf(from, step) }

// totalsMigration creates rollup_totals and its view, and on one server
// fills it with the rollup's sums.
func totalsMigration(d ddl) []string {
	r := d.r
	return slices.Concat(
		quarterCounts(d, "rollup_totals"),
		[]string{r.Replace("CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollup_totals_mv{on} TO {db}.rollup_totals{local} AS\n" +
			totalsOf("{db}.events{local}", "created_at"))},
		d.serverOnly(r.Replace("INSERT INTO {db}.rollup_totals (created_at, events)\n"+
			"SELECT created_at AS step, sum(events) FROM {db}.stats_rollup GROUP BY step")))
}

// Engagements are kept in two orders, each a table: engagements holds a
// recipient domain's rows of a range together, engagements_by_sender a
// bounce type's and, within it, a sender domain's (opens and clicks have
// no bounce type, so a sender domain's rows are together too). A distinct
// count filtered by one of those dimensions reads the table that holds its
// rows together (EngagedBy).
var engagementOrders = []struct{ table, order string }{
	{"engagements", "recipient_domain"},
	{"engagements_by_sender", "bounce_type, sender_domain"},
}

// engagementsMigration creates the engagements table ordered by order, and
// its view, and on one server fills it from the events stored before.
func engagementsMigration(d ddl, table, order string) []string {
	r := d.r
	return slices.Concat(
		d.sharded(table, `
	service {lc},
	type {lc},
	created_at Int64,
	livemode UInt8,
	recipient_domain {lc},
	sender_domain {lc},
	bounce_type {lc},
	message_hash UInt64`, "MergeTree()", `PARTITION BY toYYYYMM(toDateTime(intDiv(created_at, 1000), 'UTC'))
ORDER BY (service, type, livemode, `+order+`, created_at)`),
		[]string{r.Replace("CREATE MATERIALIZED VIEW IF NOT EXISTS {db}." + table + "_mv{on} TO {db}." + table + "{local} AS\n" + engagementsOf("{db}.events{local}"))},
		d.serverOnly(engagementsFill(d, table)))
}

// engagementsOf is what the engagements tables hold of the events of from.
func engagementsOf(from string) string {
	return "SELECT service, type, created_at, livemode, recipient_domain, sender_domain, bounce_type, message_hash FROM " + from +
		" WHERE type IN ('" + strings.Join(DistinctTypes, "', '") + "')" // constants
}

// engagementsFill copies into the engagements table the events the table
// holds.
func engagementsFill(d ddl, table string) string {
	return d.r.Replace("INSERT INTO {db}." + table + "\n" + engagementsOf("{db}.events"))
}

// EngagedBy names the engagements table that holds together the rows a
// distinct count filtered by fs reads: engagements for a recipient domain,
// else engagements_by_sender for a bounce type or a sender domain; "" when
// fs filter by none of those.
func EngagedBy(fs Filters) string {
	switch {
	case fs.Has("recipient_domain"):
		return "engagements"
	case fs.Has("bounce_type"), fs.Has("sender_domain"):
		return "engagements_by_sender"
	}
	return ""
}

// RebuildRollups builds the rollup, engagements and links (see Links)
// again from the events table, on one server (cluster "") or on the
// cluster named cluster: the events table is the source of truth, and
// this is how to get back to it after changing any of them by hand. It then checks every quarter hour and
// returns how many of those holding events are not counted from the
// rollup (see CheckRollup): those holding copies, and those another
// process stored into while it ran. On a cluster it writes to each shard
// before it returns, but a replica behind the others fails checks too
// (exact but slower): run it while the replicas are in step.
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
	// The checks go first: until the rollup is checked again, every
	// quarter hour is read from the events.
	stmts := []string{
		d.r.Replace("TRUNCATE TABLE {db}.rollup_checked{on}"),
		d.r.Replace("TRUNCATE TABLE {db}.stats_rollup{local}{on}"),
		d.r.Replace("INSERT INTO {db}.stats_rollup (" + rollupColumns + ")\n" + rollupOf("{db}.events", "step")),
		d.r.Replace("TRUNCATE TABLE {db}.rollup_totals{local}{on}"),
		d.r.Replace("INSERT INTO {db}.rollup_totals (created_at, events)\n" + totalsOf("{db}.events", "step")),
	}
	for _, e := range engagementOrders {
		stmts = append(stmts, d.r.Replace("TRUNCATE TABLE {db}."+e.table+"{local}{on}"), engagementsFill(d, e.table))
	}
	// Links are built again from the counts filled here.
	stmts = append(stmts,
		d.r.Replace("TRUNCATE TABLE {db}.links_checked{on}"),
		d.r.Replace("TRUNCATE TABLE {db}.engagement_links{on}"),
		d.r.Replace("TRUNCATE TABLE {db}.engagement_counts{local}{on}"),
		engagementCountsFill(d))
	for _, stmt := range stmts {
		if err := conn.Exec(sync, stmt); err != nil {
			return 0, fmt.Errorf("rebuild the rollup of %s: %w", db, err)
		}
	}
	if _, err := LinkEngagements(ctx, conn, db, 0, time.Now().UnixMilli()); err != nil {
		return 0, err
	}
	return CheckRollup(ctx, conn, db, 0, math.MaxInt64)
}

// stateSQL gives, for each quarter hour in [?, ?) holding rows of totals
// (a table of created_at and events), their sum (total), the sum last
// recorded in record (recorded: its latest version) and whether one ever
// was (has); it binds the range twice. The rollup's state is
// stateSQL("stats_rollup", "rollup_checked"), the links'
// stateSQL("engagement_counts", "links_checked").
func stateSQL(totals, record string) string {
	return `SELECT created_at, total, recorded, has FROM (
	SELECT created_at, sum(events) AS total FROM {db}.` + totals + ` WHERE created_at >= ? AND created_at < ? GROUP BY created_at) AS t
ANY LEFT JOIN (
	SELECT created_at, argMax(events, version) AS recorded, toUInt8(1) AS has FROM {db}.` + record + `
	WHERE created_at >= ? AND created_at < ? GROUP BY created_at) AS r USING created_at`
}

// staleSQL holds for a row of stateSQL whose total is not the one
// recorded, or never was.
const staleSQL = "(has = 0 OR total != recorded)"

// rollupStateSQL is the rollup's stateSQL: its totals, those checked.
var rollupStateSQL = stateSQL("rollup_totals", "rollup_checked")

// rollupCheckSQL records as checked, at version ?, the quarter hours of
// {within} (see stepsIn) whose rollup total equals the distinct events
// (service, type, createdAt, eventId: the key ClickHouse merges copies by)
// the events table holds there. Both are read in the one statement.
const rollupCheckSQL = `INSERT INTO {db}.rollup_checked (created_at, events, version)
SELECT step, rolled, ? FROM (
	SELECT created_at AS step, sum(events) AS rolled FROM {db}.stats_rollup WHERE {within} GROUP BY step) AS r
ANY INNER JOIN (
	SELECT intDiv(created_at, 900000) * 900000 AS step, uniqExact(service, type, created_at, event_id) AS rolled
	FROM {db}.events WHERE {within} GROUP BY step) AS e USING (step, rolled)`

// A check reads the rollup's totals checkWindow at a time (so a statement
// names at most a month of quarter hours, well within the largest query
// ClickHouse parses), and checks their unchecked quarter hours in
// statements of at most checkEvents events (the rollup's totals), so that
// the distinct sets one statement holds stay bounded.
const (
	checkWindow int64 = 31 * 24 * 3600 * 1000
	checkEvents       = 2_000_000
)

// CheckRollup checks the rollup against the events table in the quarter
// hours of [from, to) (ms) that hold rollup rows and whose total differs
// from the one last checked, or was never checked: where the rollup's total
// equals the distinct events stored, it records the total in
// rollup_checked, and counts read the rollup there until its total changes
// (see PlanRollup). It returns how many quarter hours with rollup rows in
// the range are not checked: those holding copies, or still being stored
// into.
func CheckRollup(ctx context.Context, conn Conn, db string, from, to int64) (int, error) {
	if err := ValidateDatabase(db); err != nil {
		return 0, err
	}
	q := strings.NewReplacer("{db}", "`"+db+"`")
	// A window at a time, from the first quarter hour holding rollup rows.
	lo := max(from, 0) / RollupStep * RollupStep
	for {
		var err error
		if lo, err = nextRolled(ctx, conn, q, lo, to); err != nil {
			return 0, fmt.Errorf("check the rollup of %s: %w", db, err)
		}
		if lo >= to {
			break
		}
		hi := min(lo+checkWindow, to)
		if err := checkSteps(ctx, conn, q, lo, hi); err != nil {
			return 0, fmt.Errorf("check the rollup of %s: %w", db, err)
		}
		lo = hi
	}
	n, err := countStale(ctx, conn, q, rollupStateSQL, from, to)
	if err != nil {
		return 0, fmt.Errorf("check the rollup of %s: %w", db, err)
	}
	return n, nil
}

// checkSteps checks the unchecked quarter hours in [from, to).
func checkSteps(ctx context.Context, conn Conn, q *strings.Replacer, from, to int64) error {
	rows, err := conn.Query(ctx, "SELECT created_at, total FROM ("+q.Replace(rollupStateSQL)+") WHERE "+staleSQL+" ORDER BY created_at",
		from, to, from, to)
	if err != nil {
		return err
	}
	var steps []int64
	var totals []uint64
	for rows.Next() {
		var step int64
		var rolled uint64
		if err := rows.Scan(&step, &rolled); err != nil {
			rows.Close()
			return err
		}
		steps, totals = append(steps, step), append(totals, rolled)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, steps := range checkBatches(steps, totals, checkEvents) {
		// The version is taken before the reads: of two checks of a quarter
		// hour, the one that read later wins.
		version := uint64(time.Now().UnixNano())
		within, args := stepsIn(steps)
		stmt := strings.ReplaceAll(q.Replace(rollupCheckSQL), "{within}", within)
		if err := conn.Exec(ctx, stmt, slices.Concat([]any{version}, args, args)...); err != nil {
			return err
		}
	}
	return nil
}

// checkBatches splits steps (ascending quarter hours, with the rollup's
// totals) into batches of at most maxEvents events, or one quarter hour.
func checkBatches(steps []int64, totals []uint64, maxEvents uint64) [][]int64 {
	var batches [][]int64
	var events uint64
	for i, step := range steps {
		if i == 0 || events+totals[i] > maxEvents {
			batches, events = append(batches, nil), 0
		}
		batches[len(batches)-1] = append(batches[len(batches)-1], step)
		events += totals[i]
	}
	return batches
}

// countStale is how many quarter hours in [from, to) of state (a stateSQL)
// are stale.
func countStale(ctx context.Context, conn Querier, q *strings.Replacer, state string, from, to int64) (int, error) {
	var n uint64
	err := scanOne(ctx, conn, "SELECT count() FROM ("+q.Replace(state)+") WHERE "+staleSQL, []any{from, to, from, to}, &n)
	return int(n), err
}

// nextRolled is the first quarter hour in [from, to) with rollup rows, or
// to when there is none.
func nextRolled(ctx context.Context, conn Querier, q *strings.Replacer, from, to int64) (int64, error) {
	var n uint64
	var first int64
	err := scanOne(ctx, conn, q.Replace("SELECT count(), min(created_at) FROM {db}.stats_rollup WHERE created_at >= ? AND created_at < ?"), []any{from, to}, &n, &first)
	if err != nil || n == 0 {
		return to, err
	}
	return first, nil
}

// scanOne runs a query of one row into dest.
func scanOne(ctx context.Context, conn Querier, query string, args []any, dest ...any) error {
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
	}
	return rows.Err()
}

// stepsIn is the condition on created_at that keeps to the quarter hours
// steps (ascending, at least one): their span, which the tables' sort keys
// and partitions narrow the read to, and a set of them; and the arguments
// it binds. (A range per run of quarter hours would narrow the read more,
// but ClickHouse 18.16 takes time that grows with the square of the runs
// to analyse an OR of them: 220 ms for 350.)
func stepsIn(steps []int64) (string, []any) {
	return stepsOf("created_at", "intDiv(created_at, 900000) * 900000", steps)
}

// stepsOf is stepsIn of the column col (ms), whose quarter hour is step.
func stepsOf(col, step string, steps []int64) (string, []any) {
	args := make([]any, 0, len(steps)+2)
	args = append(args, steps[0], steps[len(steps)-1]+RollupStep)
	for _, s := range steps {
		args = append(args, s)
	}
	return "(" + col + " >= ? AND " + col + " < ? AND " + step + " IN (" +
		strings.TrimSuffix(strings.Repeat("?, ", len(steps)), ", ") + "))", args
}

// maxRawRuns bounds the runs of quarter hours inside the rollup's span a
// count reads from the events, each as a range the events' sort key
// narrows the read to. Past it the whole range is read from the events:
// quarter hours that scattered (copies, sparse data) leave little for the
// rollup to save, and an OR of many ranges costs 18.16 more to analyse
// than it saves (see stepsIn).
const maxRawRuns = 16

// Rollup is how a count over one createdAt range splits between the
// rollup and the events: the rollup covers the checked quarter hours
// between From and To; the events give the rest (the range's partial
// quarter hours at each end, and Raw).
type Rollup struct {
	db       string
	from, to int64      // the range, ms
	From, To int64      // the rollup's span, whole quarter hours; From == To when it has none
	Raw      [][2]int64 // runs of quarter hours in the span the rollup does not count, [start, end) ms, ascending
}

// PlanRollup splits [from, to) (ms) between the rollup and the events: a
// quarter hour is counted from the rollup when its total is the one last
// checked (CheckRollup).
func PlanRollup(ctx context.Context, q Querier, db string, from, to int64) (Rollup, error) {
	r := Rollup{db: db, from: from, to: to}
	// Stored createdAt is never negative (Parse), so neither is a step.
	r.From = (max(from, 0) + RollupStep - 1) / RollupStep * RollupStep
	r.To = max(to, 0) / RollupStep * RollupStep
	if r.To <= r.From {
		r.From, r.To = from, from
		return r, nil
	}
	repl := strings.NewReplacer("{db}", "`"+db+"`")
	checked, err := queryColumn[int64](ctx, q, "SELECT created_at FROM ("+repl.Replace(rollupStateSQL)+") WHERE NOT "+staleSQL+" ORDER BY created_at",
		r.From, r.To, r.From, r.To)
	if err != nil {
		return r, fmt.Errorf("plan a count over the rollup: %w", err)
	}
	if len(checked) == 0 {
		r.From, r.To = from, from
		return r, nil
	}
	// The span shrinks to the checked quarter hours' so the ends read from
	// the events are one range each.
	r.From, r.To = checked[0], checked[len(checked)-1]+RollupStep
	for i := 1; i < len(checked); i++ {
		if checked[i-1]+RollupStep != checked[i] {
			r.Raw = append(r.Raw, [2]int64{checked[i-1] + RollupStep, checked[i]})
		}
	}
	if len(r.Raw) > maxRawRuns {
		r.From, r.To, r.Raw = from, from, nil
	}
	return r, nil
}

// Covers reports whether the rollup counts any of the range.
func (r Rollup) Covers() bool { return r.To > r.From }

// Source returns what follows FROM in a statement that counts, from the
// rollup, the rows matching where (which binds args and must not name
// created_at): the rollup and the WHERE clause of its checked quarter
// hours. Its rows carry the dimensions and the sums events, carrier,
// inventory, text_length and duration_sec; created_at is each row's
// quarter hour.
func (r Rollup) Source(where string, args []any) (string, []any) {
	sql := "`" + r.db + "`.stats_rollup WHERE created_at >= ? AND created_at < ?"
	all := []any{r.From, r.To}
	if len(r.Raw) > 0 {
		cond, runArgs := runsSQL(r.Raw)
		sql, all = sql+" AND NOT "+cond, append(all, runArgs...)
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
		cond, runArgs := runsSQL(r.Raw)
		conds, args = append(conds, cond), append(args, runArgs...)
	}
	if len(conds) == 0 {
		return "", nil, false
	}
	return " AND (" + strings.Join(conds, " OR ") + ")", args, true
}

// runsSQL is the condition on created_at that keeps to the runs
// ([start, end) ms), and the arguments it binds.
func runsSQL(runs [][2]int64) (string, []any) {
	conds, args := make([]string, len(runs)), make([]any, 0, 2*len(runs))
	for i, run := range runs {
		conds[i], args = "created_at >= ? AND created_at < ?", append(args, run[0], run[1])
	}
	return "(" + strings.Join(conds, " OR ") + ")", args
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

// Values are the values of the filter on the dimension named name, if
// any.
func (fs Filters) Values(name string) []string {
	for _, f := range fs {
		if f.Dim.Name == name {
			return f.Values
		}
	}
	return nil
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
// args and may only name the engagements tables' columns): table (see
// EngagedBy) and the WHERE clause. Copies need no care there: they hold the
// messageId once more.
func (c Counted) Engaged(table, where string, args []any) (string, []any) {
	return "`" + c.db + "`." + table + " WHERE " + where, args
}
