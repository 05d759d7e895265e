package schema

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Distinct counts (unique opens) over a range read links where they can,
// not the engagements: one row per engagement type, livemode scope,
// quarter hour q and prev, counting the messages whose first engagement
// of that type in q has its latest earlier engagement in quarter hour prev
// (prev is -1 when there is none within LinkLookback). A message is
// counted in a bucket that starts on a quarter hour exactly when its
// first engagement there has prev before the bucket's start, so a
// bucket's distinct count is the sum of the links of its quarter hours
// whose prev is before its start: a few thousand rows a month, however
// many messages it holds, and the same number as counting them.
//
// LinkLookback bounds how far back a link looks: an answer from links is
// exact for ranges at most that long (longer ones read the engagements).
// scope is the livemode the links count within: 0 test, 1 live, 2 both.
//
// Links are built by LinkEngagements, run by ingest, and are only read
// where they are current. engagement_counts counts, per quarter hour, the
// engagements ever inserted there (a view adds every insert, copies
// included, so the count only grows); links_checked records the count a
// quarter hour's links were built from. A range reads links only when
// every one of its quarter hours holding engagements has links built from
// its count today (Links). An engagement inserted into a quarter hour
// changes its count, so a range holding it reads the engagements until
// LinkEngagements builds the links again, of that quarter hour and of
// every later one within LinkLookback holding the same messages (their
// prev may be it). An engagement before a range changes no answer over
// it: it can only move a prev that was before the range's start to
// another before it.
//
// Each build of links has a generation (its time in ns); links_checked
// keeps the latest for each quarter hour, and a read takes the links of
// that generation alone, so two processes building at once never count
// twice.

// LinkLookback is how far back a link looks for a message's earlier
// engagement: the longest range links answer, a month in any zone and a
// day to spare.
const LinkLookback = 32 * 24 * 3600 * 1000

// linkScopeAll is the scope counting test and live engagements together.
const linkScopeAll = 2

// engagementService is the service of DistinctTypes.
var engagementService, _, _ = strings.Cut(DistinctTypes[0], ".")

// linksMigration creates engagement_counts and its view, engagement_links
// and links_checked, and on one server fills engagement_counts from the
// events stored before. Nothing is linked yet, so distinct counts read the
// engagements until ingest links them.
func linksMigration(d ddl) []string {
	r := d.r
	return slices.Concat(
		quarterCounts(d, "engagement_counts"),
		[]string{
			r.Replace("CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.engagement_counts_mv{on} TO {db}.engagement_counts{local} AS\n" +
				engagementCountsOf("{db}.events{local}")),
			d.table("engagement_links", `
	gen UInt64,
	service {lc},
	type {lc},
	scope UInt8,
	created_at Int64,
	prev Int64,
	messages UInt64`, "MergeTree()", `PARTITION BY toYYYYMM(toDateTime(intDiv(created_at, 1000), 'UTC'))
ORDER BY (service, scope, created_at, type, gen)`),
			d.table("links_checked", `
	created_at Int64,
	events UInt64,
	gen UInt64,
	version UInt64`, "ReplacingMergeTree(version)", `PARTITION BY toYYYYMM(toDateTime(intDiv(created_at, 1000), 'UTC'))
ORDER BY created_at`),
		},
		d.serverOnly(engagementCountsFill(d)))
}

// engagementCountsFill counts into engagement_counts the engagements the
// events table holds.
func engagementCountsFill(d ddl) string {
	return d.r.Replace("INSERT INTO {db}.engagement_counts (created_at, events)\n" + engagementCountsOf("{db}.events"))
}

// engagementCountsOf is what engagement_counts holds of the events of from.
func engagementCountsOf(from string) string {
	return quarterCountsOf(from, "created_at", DistinctTypes...)
}

// linkStateSQL is the links' stateSQL: the engagements counted, the
// counts links were built from.
var linkStateSQL = stateSQL("engagement_counts", "links_checked")

// engagementsSQL keeps to the events of DistinctTypes (binding nothing).
var engagementsSQL = "service = '" + engagementService + "' AND type IN ('" + strings.Join(DistinctTypes, "', '") + "')" // constants

// linksFollowingSQL gives the quarter hours in [?, ?) holding engagements
// of the messages engaged in {within} (see stepsIn): those whose links
// may name one of {within} as prev.
var linksFollowingSQL = `SELECT DISTINCT intDiv(created_at, 900000) * 900000 FROM {db}.events
WHERE ` + engagementsSQL + ` AND created_at >= ? AND created_at < ?
	AND message_hash GLOBAL IN (SELECT message_hash FROM {db}.events WHERE ` + engagementsSQL + ` AND {within})`

// linkSQL builds, as generation ?, the links of the quarter hours of
// {within}: each message engaged there, with every quarter hour it
// engaged in from ? on (LinkLookback before the first of them), gives a
// link per quarter hour of {within} it engaged in, prev the quarter hour
// before that one in its list. It binds the generation, the lookback's
// range, {within}'s arguments and {within_q}'s.
var linkSQL = `INSERT INTO {db}.engagement_links (gen, service, type, scope, created_at, prev, messages)
SELECT ?, '` + engagementService + `', type, scope, link.1 AS q, link.2 AS p, count() FROM (
	SELECT type, scope, arraySort(groupUniqArray(intDiv(created_at, 900000) * 900000)) AS qs FROM (
		SELECT type, arrayJoin([livemode, ` + fmt.Sprint(linkScopeAll) + `]) AS scope, message_hash, created_at FROM {db}.events
		WHERE ` + engagementsSQL + ` AND created_at >= ? AND created_at < ?
			AND message_hash GLOBAL IN (SELECT message_hash FROM {db}.events WHERE ` + engagementsSQL + ` AND {within}))
	GROUP BY type, scope, message_hash)
ARRAY JOIN arrayMap(i -> (qs[i], if(i = 1, toInt64(-1), qs[i - 1])), arrayEnumerate(qs)) AS link
WHERE {within_q}
GROUP BY type, scope, q, p`

// linkEvents bounds the engagements of the quarter hours one statement of
// LinkEngagements links, so that the sets of messageIds it holds stay
// bounded.
const linkEvents = 2_000_000

// LinkEngagements builds the links (see above) of the quarter hours in
// [from, to) (ms) holding engagements whose links are missing or were built
// from another count of them, and of the later quarter hours within
// LinkLookback holding their messages. It returns how many quarter hours
// it linked.
func LinkEngagements(ctx context.Context, conn Conn, db string, from, to int64) (int, error) {
	if err := ValidateDatabase(db); err != nil {
		return 0, err
	}
	q := strings.NewReplacer("{db}", "`"+db+"`")
	from = max(from, 0) / RollupStep * RollupStep
	if to <= from {
		return 0, nil
	}
	// The counts are read before the engagements: an insert landing in
	// between is missing from the count recorded, so the quarter hour is
	// linked again, never the other way round.
	counts := map[int64]uint64{}
	var changed []int64
	rows, err := conn.Query(ctx, "SELECT created_at, total, "+staleSQL+" FROM ("+q.Replace(linkStateSQL)+") ORDER BY created_at",
		from, to, from, to)
	if err != nil {
		return 0, fmt.Errorf("link the engagements of %s: %w", db, err)
	}
	for rows.Next() {
		var step int64
		var n uint64
		var stale uint8
		if err := rows.Scan(&step, &n, &stale); err != nil {
			rows.Close()
			return 0, fmt.Errorf("link the engagements of %s: %w", db, err)
		}
		counts[step] = n
		if stale == 1 {
			changed = append(changed, step)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("link the engagements of %s: %w", db, err)
	}
	if len(changed) == 0 {
		return 0, nil
	}
	steps := map[int64]bool{}
	for _, batch := range checkBatches(changed, countsOf(changed, counts), linkEvents) {
		// Later quarter hours holding the same messages may have linked to
		// an earlier engagement than one now stored.
		within, args := stepsIn(batch)
		following, err := queryColumn[int64](ctx, conn, strings.ReplaceAll(q.Replace(linksFollowingSQL), "{within}", within),
			slices.Concat([]any{batch[0], min(batch[len(batch)-1]+RollupStep+LinkLookback, to)}, args)...)
		if err != nil {
			return 0, fmt.Errorf("link the engagements of %s: %w", db, err)
		}
		for _, s := range slices.Concat(batch, following) {
			if s >= from && s+RollupStep <= to {
				steps[s] = true
			}
		}
	}
	linked := make([]int64, 0, len(steps))
	for s := range steps {
		linked = append(linked, s)
	}
	slices.Sort(linked)
	for _, batch := range checkBatches(linked, countsOf(linked, counts), linkEvents) {
		if err := linkSteps(ctx, conn, q, batch, counts); err != nil {
			return 0, fmt.Errorf("link the engagements of %s: %w", db, err)
		}
	}
	return len(linked), nil
}

// countsOf is counts of steps, in order.
func countsOf(steps []int64, counts map[int64]uint64) []uint64 {
	out := make([]uint64, len(steps))
	for i, s := range steps {
		out[i] = counts[s]
	}
	return out
}

// linkSteps builds the links of steps (ascending) as one generation, then
// records them as built from counts.
func linkSteps(ctx context.Context, conn Conn, q *strings.Replacer, steps []int64, counts map[int64]uint64) error {
	gen := uint64(time.Now().UnixNano())
	within, args := stepsIn(steps)
	withinQ, argsQ := stepsOf("q", "q", steps)
	stmt := strings.NewReplacer("{within}", within, "{within_q}", withinQ).Replace(q.Replace(linkSQL))
	lookback := []any{steps[0] - LinkLookback, steps[len(steps)-1] + RollupStep}
	if err := conn.Exec(ctx, stmt, slices.Concat([]any{gen}, lookback, args, argsQ)...); err != nil {
		return err
	}
	// (An INSERT … VALUES would wait for a block of rows from clickhouse-go.)
	checked := []any{gen, gen}
	for _, s := range steps {
		checked = append(checked, s, counts[s])
	}
	return conn.Exec(ctx, q.Replace("INSERT INTO {db}.links_checked (created_at, events, gen, version) SELECT c.1, c.2, ?, ? FROM (SELECT arrayJoin([")+
		strings.TrimSuffix(strings.Repeat("(?, ?), ", len(steps)), ", ")+"]) AS c)", checked...)
}

// Links reports whether the distinct counts of every bucket of a series
// over [from, to) (ms), buckets starting on quarter hours, can read the
// links: the range starts and ends on quarter hours, spans at most
// LinkLookback, and every quarter hour in it holding engagements has
// links built from its count today.
func Links(ctx context.Context, q Querier, db string, from, to int64) (bool, error) {
	if from < 0 || from%RollupStep != 0 || to%RollupStep != 0 || to <= from || to-from > LinkLookback {
		return false, nil
	}
	stale, err := countStale(ctx, q, strings.NewReplacer("{db}", "`"+db+"`"), linkStateSQL, from, to)
	if err != nil {
		return false, fmt.Errorf("look up the links of %s: %w", db, err)
	}
	return stale == 0, nil
}

// LinkScope is the scope of links (see above) counting the engagements of
// livemode l.
func LinkScope(l Livemode) uint8 {
	switch l {
	case LiveOnly:
		return 1
	case TestOnly:
		return 0
	}
	return linkScopeAll
}

// Linked returns what follows FROM in a statement that counts distinct
// messageIds from the links of scope (see Links), over the range c reads:
// the links of each quarter hour's latest generation, and the WHERE
// clause, whose arguments follow.
func (c Counted) Linked(scope uint8) (string, []any) {
	return "`" + c.db + "`.engagement_links WHERE service = ? AND scope = ? AND created_at >= ? AND created_at < ?" +
			" AND (created_at, gen) IN (SELECT created_at, argMax(gen, version) FROM `" + c.db + "`.links_checked WHERE created_at >= ? AND created_at < ? GROUP BY created_at)",
		[]any{engagementService, scope, c.from, c.to, c.from, c.to}
}
