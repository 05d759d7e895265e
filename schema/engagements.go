package schema

import (
	"slices"
	"strings"
)

// Distinct counts (unique opens) read the events of their types, or
// engagements: the events of DistinctTypes alone, with the columns their
// counts filter and group by, ordered so that a recipient domain's rows of a
// range are one read. A view feeds it from every insert into events (on a
// cluster, from each shard's events_local). A copy stored twice there counts
// once, as distinct counts ignore copies, so it needs none of the care
// additive counts take (Counted).

// DistinctTypes are the types whose distinct messageIds stats count.
var DistinctTypes = []string{"send.email.opened", "send.email.clicked"}

// EngagementDims are the dimensions engagements keeps: a distinct count
// filtered by any other reads the events.
var EngagementDims = []string{"recipient_domain", "sender_domain", "bounce_type"}

// engagementsMigration creates engagements and its view, and on one server
// fills it from the events stored before (a cluster's tables all exist
// before it stores an event).
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
		d.serverOnly(r.Replace("INSERT INTO {db}.engagements\n"+engagementsOf("{db}.events"))))
}

// engagementsOf is what engagements holds of the events of from.
func engagementsOf(from string) string {
	return "SELECT service, type, created_at, livemode, recipient_domain, sender_domain, bounce_type, message_hash FROM " + from +
		" WHERE type IN ('" + strings.Join(DistinctTypes, "', '") + "')" // constants
}

// Within reports whether the filters are all on dimensions among dims
// (EngagementDims).
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
// clause.
func (c Counted) Engaged(where string, args []any) (string, []any) {
	return "`" + c.db + "`.engagements WHERE " + where, args
}
