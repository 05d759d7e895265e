package schema

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Conn is the part of a ClickHouse connection migrations need.
type Conn interface {
	Exec(ctx context.Context, query string, args ...any) error
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
	ServerVersion() (*driver.ServerVersion, error)
}

var _ Conn = (driver.Conn)(nil)

// Version is a ClickHouse server version.
type Version struct{ Major, Minor int }

// HasLowCardinality reports whether LowCardinality works without the
// experimental setting (which current servers reject as unknown).
func (v Version) HasLowCardinality() bool { return v.Major >= 20 }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// DefaultDatabase is the database every component uses unless told
// otherwise.
const DefaultDatabase = "hindsight"

// ValidateDatabase checks a database name: identifiers only, so it can be
// spliced into statements safely.
func ValidateDatabase(name string) error { return validateIdent("database", name) }

func validateIdent(what, name string) error {
	if !identRe.MatchString(name) {
		return fmt.Errorf("%s name %q: want letters, digits and underscores, starting with a letter", what, name)
	}
	return nil
}

// Migration is one versioned step of the schema. Statements are idempotent
// (IF NOT EXISTS), so applying one twice is harmless; so are Columns, added
// only where missing (18.16 has no ADD COLUMN IF NOT EXISTS).
type Migration struct {
	Version    int
	Name       string
	Statements []string
	Columns    []Column
}

// Column is a column a migration adds to an existing table.
type Column struct {
	Table, Name, Type string
}

// Migrations returns every migration for database db on one server, with
// column types chosen for server version v.
func Migrations(db string, v Version) []Migration { return migrations(newDDL(db, "", v)) }

// ClusterMigrations returns every migration for database db on the
// ClickHouse cluster named cluster (see package doc's layout).
func ClusterMigrations(db, cluster string, v Version) []Migration {
	return migrations(newDDL(db, cluster, v))
}

func migrations(d ddl) []Migration {
	r := d.r
	return []Migration{
		{1, "events", d.sharded("events", `
	event_id String,
	type {lc},
	service {lc},
	created_at Int64,
	livemode UInt8,
	known UInt8,
	message_id String,
	message_hash UInt64,
	recipient_domain {lc},
	sender_domain {lc},
	bounce_type {lc},
	has_carrier UInt8,
	has_inventory UInt8,
	npa {lc},
	voice {lc},
	format {lc},
	text_length Int64,
	duration_sec Float64,
	raw String,
	kafka_topic {lc},
	kafka_partition Int32,
	kafka_offset Int64,
	ingested_at DateTime`, "ReplacingMergeTree()", `PARTITION BY toYYYYMM(toDateTime(intDiv(created_at, 1000), 'UTC'))
ORDER BY (service, type, created_at, event_id)`), nil},
		// Replay's state. Rows are never updated: a change is a new row with a
		// higher version, read back with FINAL (ReplacingMergeTree keeps the
		// highest). Each table has one writer per row: the API writes endpoints
		// and new replays, the worker holding a replay's lease its progress.
		{2, "replay", []string{
			d.table("endpoints", `
	id String,
	url String,
	enabled_events Array(String),
	description String,
	rate_limit Float64,
	secret String,
	previous_secret String,
	previous_secret_until Int64,
	created_at Int64,
	deleted UInt8,
	version UInt64`, "ReplacingMergeTree(version)", `ORDER BY id`),
			d.table("replays", `
	id String,
	endpoint_id String,
	since Int64,
	until Int64,
	enabled_events Array(String),
	livemode {lc},
	ordered UInt8,
	concurrency UInt16,
	rate_limit Float64,
	status {lc},
	matched UInt64,
	delivered UInt64,
	failed UInt64,
	attempts UInt64,
	cursor_created_at Int64,
	cursor_event_id String,
	created_at Int64,
	started_at Int64,
	finished_at Int64,
	last_error String,
	version UInt64`, "ReplacingMergeTree(version)", `ORDER BY id`),
			d.table("replay_cancels", `
	replay_id String,
	at Int64`, "ReplacingMergeTree()", `ORDER BY replay_id`),
			// Lease claims are appended, never replaced: of the claims still
			// live, the earliest holds the job (see replay.Store.TryLease;
			// migration 22 adds which are confirmed).
			d.table("replay_leases", `
	replay_id String,
	owner String,
	claimed_at Int64,
	until Int64`, "MergeTree()", `ORDER BY (replay_id, claimed_at)`),
			d.table("deliveries", `
	endpoint_id String,
	replay_id String,
	event_id String,
	attempt UInt8,
	status UInt16,
	outcome {lc},
	latency_ms Float64,
	error String,
	at Int64`, "MergeTree()", `PARTITION BY toYYYYMM(toDateTime(intDiv(at, 1000), 'UTC'))
ORDER BY (endpoint_id, at)`),
		}, nil},
		// Dead letters that the dead-letter topic could not take (it cannot
		// be created, or refuses us): kept here so a broken DLQ never stops
		// ingest. See package ingest.
		{3, "dead_letters", []string{d.table("dead_letters", `
	source String,
	error String,
	dlq_error String,
	headers String,
	key String,
	value String,
	truncated UInt64,
	at DateTime`, "MergeTree()", `PARTITION BY toYYYYMM(at)
ORDER BY at`)}, nil},
		// Keys stored more than once in events: counts read them once (see
		// Counted). Ingest records a key here after the insert that stored
		// its second copy, and marks it resolved (a new row, a higher
		// version) once ClickHouse has merged the copies. The table stays as
		// small as duplicates are rare.
		{4, "event_dups", []string{d.table("event_dups", `
	service {lc},
	type {lc},
	created_at Int64,
	event_id String,
	found_at DateTime,
	resolved UInt8,
	version UInt64`, "ReplacingMergeTree(version)", `ORDER BY (created_at, type, event_id)`)}, nil},
		// Where each eventId is stored, by its 64-bit hash, so a lookup by
		// eventId reads a few rows of it and then the events rows at those
		// sort keys (a hash shared by two eventIds costs one more row read),
		// instead of every eventId in the table. A materialized view
		// feeds it from every insert into events; the migration then copies
		// in the rows stored before (rows inserted meanwhile are indexed
		// twice, which a lookup does not mind). The copy takes about a
		// second per million stored events.
		{5, "event_ids", slices.Concat(
			d.sharded("event_ids", `
	id_hash UInt64,
	service {lc},
	type {lc},
	created_at Int64`, "ReplacingMergeTree()", `ORDER BY (id_hash, created_at, type)`),
			[]string{r.Replace(`CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.event_ids_mv{on} TO {db}.event_ids{local} AS
SELECT cityHash64(event_id) AS id_hash, service, type, created_at FROM {db}.events{local}`)},
			// A cluster's tables are all created before it stores an event.
			d.serverOnly(r.Replace(`INSERT INTO {db}.event_ids (id_hash, service, type, created_at)
SELECT cityHash64(event_id), service, type, created_at FROM {db}.events`))), nil},
		// API keys (package internal/keys): a key's SHA-256, never the key,
		// beside the prefix shown to tell keys apart. A revocation is a new
		// row with a higher version. When each key was last used is its own
		// table, so recording a use never rewrites the key's row.
		{6, "api_keys", []string{
			d.table("api_keys", `
	id String,
	name String,
	prefix String,
	hash String,
	scopes Array(String),
	created_at Int64,
	revoked_at Int64,
	version UInt64`, "ReplacingMergeTree(version)", `ORDER BY id`),
			d.table("api_key_uses", `
	id String,
	at Int64`, "ReplacingMergeTree(at)", `ORDER BY id`),
		}, nil},
		// Per endpoint: the retry schedule (seconds; empty is the default)
		// and custom headers sent with every delivery (names and values in
		// step).
		{7, "endpoint_delivery_settings", nil, []Column{
			{"endpoints", "retry_schedule", "Array(UInt32)"},
			{"endpoints", "header_names", "Array(String)"},
			{"endpoints", "header_values", "Array(String)"},
		}},
		// A replay of only the events whose latest attempt to its endpoint
		// was not delivered.
		{8, "replay_only_failed", nil, []Column{{"replays", "only_failed", "UInt8"}}},
		// The attempt log: each attempt's event type and the start of the
		// receiver's answer (at most 1 KiB).
		{9, "delivery_details", nil, []Column{
			{"deliveries", "event_type", r.Replace("{lc}")},
			{"deliveries", "response", "String"},
		}},
		// A replay's dimension filters, as JSON (dimension → values).
		{10, "replay_filters", nil, []Column{{"replays", "filters", "String"}}},
		// Where each email's events are stored, by the 64-bit hash of its
		// messageId, so a message's timeline reads a few rows of it and then
		// the events rows at those sort keys, as event_ids does for eventIds.
		// The eventIds let the timeline look up their delivery attempts while
		// it reads the events.
		{11, "message_ids", slices.Concat(
			d.sharded("message_ids", `
	message_hash UInt64,
	service {lc},
	type {lc},
	created_at Int64,
	event_id String`, "ReplacingMergeTree()", `ORDER BY (message_hash, created_at, type, event_id)`),
			[]string{r.Replace(`CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.message_ids_mv{on} TO {db}.message_ids{local} AS
SELECT cityHash64(message_id) AS message_hash, service, type, created_at, event_id FROM {db}.events{local} WHERE message_id != ''`)},
			d.serverOnly(r.Replace(`INSERT INTO {db}.message_ids (message_hash, service, type, created_at, event_id)
SELECT cityHash64(message_id), service, type, created_at, event_id FROM {db}.events WHERE message_id != ''`))), nil},
		// The attempt log by eventId: the hash of each attempt's eventId and
		// where the attempt is stored (deliveries is ordered by endpoint and
		// time), so an event's attempts are a lookup, not a scan.
		{12, "delivery_ids", slices.Concat(
			[]string{d.table("delivery_ids", `
	id_hash UInt64,
	endpoint_id String,
	at Int64`, "ReplacingMergeTree()", `ORDER BY (id_hash, endpoint_id, at)`),
				r.Replace(`CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.delivery_ids_mv{on} TO {db}.delivery_ids AS
SELECT cityHash64(event_id) AS id_hash, endpoint_id, at FROM {db}.deliveries`)},
			d.serverOnly(r.Replace(`INSERT INTO {db}.delivery_ids (id_hash, endpoint_id, at)
SELECT cityHash64(event_id), endpoint_id, at FROM {db}.deliveries`))), nil},
		// Every recipient address of an email (NormalizeAddress'd), for the
		// recipient filter. Rows stored before it compute theirs from the
		// original event when read: the default below does in SQL what
		// NormalizeAddress does (data.to's strings, the part in angle
		// brackets, the domain after the last @ lowercased).
		{13, "recipients", nil, []Column{{"events", "recipients", "Array(String) DEFAULT " + recipientsSQL}}},
		// One row per dead letter, without its payload (a parse error's
		// reason quotes a few dozen bytes of it; the payload is on the
		// dead-letter topic, or in dead_letters): how many and why, for the
		// API. A batch written again after a crash logs its dead letters
		// again, as the topic gets them again.
		{14, "dead_letter_log", []string{d.table("dead_letter_log", `
	at Int64,
	kind {lc},
	reason String,
	source String`, "MergeTree()", `PARTITION BY toYYYYMM(toDateTime(intDiv(at, 1000), 'UTC'))
ORDER BY (at, kind)`)}, nil},
		// Endpoint health: how long an endpoint may fail every attempt
		// before it is disabled (seconds; 0 never), and each disabling and
		// re-enabling. The changes are a table of their own, written by
		// workers and the API, so neither overwrites the other's endpoint
		// row; an endpoint's state is its latest change.
		{15, "endpoint_changes", []string{d.table("endpoint_changes", `
	endpoint_id String,
	at Int64,
	change {lc},
	reason String`, "MergeTree()", `ORDER BY (endpoint_id, at)`)},
			[]Column{{"endpoints", "disable_after", "UInt32 DEFAULT 86400"}}},
		// Replays that follow: after their range, every matching event ingest
		// stores, read from Kafka from the offsets in follow_offsets (JSON,
		// partition → next offset), and how far behind they are.
		{16, "replay_follow", nil, []Column{
			{"replays", "follow", "UInt8"},
			{"replays", "follow_offsets", "String"},
			{"replays", "lag_ms", "Int64"},
		}},
		// The events distinct counts read (see Rollup).
		{17, "engagements", engagementsMigration(d, engagementOrders[0].table, engagementOrders[0].order), nil},
		// Counts per quarter hour, fed at write time, for counts over long
		// ranges, and the totals checked against the events (see Rollup).
		{18, "stats_rollup", rollupMigration(d), nil},
		// Where each recipient address's events are stored, by the 64-bit hash
		// of the address as the recipients column holds it, so a request
		// filtered by recipient reads those rows of the events, as message_ids
		// does for a messageId (see RecipientsAt).
		{19, "recipient_ids", slices.Concat(
			d.sharded("recipient_ids", `
	recipient_hash UInt64,
	service {lc},
	type {lc},
	created_at Int64`, "ReplacingMergeTree()", `PARTITION BY toYYYYMM(toDateTime(intDiv(created_at, 1000), 'UTC'))
ORDER BY (recipient_hash, service, created_at, type)`),
			[]string{r.Replace("CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.recipient_ids_mv{on} TO {db}.recipient_ids{local} AS\n" + recipientIDsOf("{db}.events{local}"))},
			d.serverOnly(r.Replace("INSERT INTO {db}.recipient_ids (recipient_hash, service, type, created_at)\n"+recipientIDsOf("{db}.events")))), nil},
		// Engagements again, ordered by bounce type and sender domain, for
		// distinct counts filtered by those (see EngagedBy).
		{20, "engagements_by_sender", engagementsMigration(d, engagementOrders[1].table, engagementOrders[1].order), nil},
		// Distinct counts by quarter hour, built by ingest, and the counts
		// that tell when they are current (see Links).
		{21, "engagement_links", linksMigration(d), nil},
		// A lease claim is a trial until its worker has read that no other
		// claim is live beside it; only a confirmed claim holds its job (see
		// replay.Store.TryLease). Claims written before hold as they did.
		{22, "replay_lease_confirmed", nil, []Column{{"replay_leases", "confirmed", "UInt8 DEFAULT 1"}}},
		// The rollup's total per quarter hour, which every count over it
		// compares with the one checked (see Rollup).
		{23, "rollup_totals", totalsMigration(d), nil},
	}
}

// recipientIDsOf is what recipient_ids holds of the events of from: a row
// per recipient address.
func recipientIDsOf(from string) string {
	return "SELECT cityHash64(recipient) AS recipient_hash, service, type, created_at FROM " + from + " ARRAY JOIN recipients AS recipient"
}

// recipientsSQL is NormalizeAddress over data.to, for events stored before
// migration 13.
const recipientsSQL = `arrayFilter(a -> a != '', arrayMap(a -> if(position(a, '@') = 0, a,
	concat(substring(a, 1, length(a) - position(reverse(a), '@') + 1), lower(substring(a, length(a) - position(reverse(a), '@') + 2)))),
	arrayMap(a -> replaceRegexpAll(if(position(a, '<') > 0 AND position(a, '>') > position(a, '<'), extract(a, '<([^>]*)>'), a), '^\\s+|\\s+$', ''),
	extractAll(if(service = 'send', visitParamExtractRaw(raw, 'to'), ''), '"((?:[^"\\\\]|\\\\.)*)"'))))`

// EventColumns are the events table's columns in insert order.
var EventColumns = []string{
	"event_id", "type", "service", "created_at", "livemode", "known",
	"message_id", "message_hash", "recipient_domain", "sender_domain", "bounce_type",
	"has_carrier", "has_inventory", "npa", "voice", "format",
	"text_length", "duration_sec", "raw",
	"kafka_topic", "kafka_partition", "kafka_offset", "ingested_at",
	"recipients",
}

// EventRow is the events table's row for ev, read from Kafka at topic,
// partition and offset and stored at now, in EventColumns order: the one
// statement of which value goes in which column. Ingest appends whole
// columns instead, for speed; its test holds them to this.
func EventRow(ev *Event, topic string, partition int32, offset int64, now time.Time) []any {
	b := func(v bool) uint8 {
		if v {
			return 1
		}
		return 0
	}
	d := &ev.Dims
	recipients := d.Recipients
	if recipients == nil {
		recipients = []string{}
	}
	return []any{ev.ID, ev.Type, ev.Service, ev.CreatedAt, b(ev.Livemode), b(ev.Known),
		d.MessageID, d.MessageHash, d.RecipientDomain, d.SenderDomain, d.BounceType, b(d.HasCarrier), b(d.HasInventory),
		d.NPA, d.Voice, d.Format, d.TextLength, d.DurationSec, string(ev.Raw),
		topic, partition, offset, now, recipients}
}

// ServerVersion reads the server's version from the connection.
func ServerVersion(conn Conn) (Version, error) {
	sv, err := conn.ServerVersion()
	if err != nil {
		return Version{}, fmt.Errorf("read server version: %w", err)
	}
	return Version{Major: int(sv.Version.Major), Minor: int(sv.Version.Minor)}, nil
}

// Migrate creates database db if needed and applies the migrations it has not
// applied yet, recording each in db.schema_migrations. It returns the highest
// version applied.
func Migrate(ctx context.Context, conn Conn, db string) (int, error) {
	return MigrateCluster(ctx, conn, db, "")
}

// MigrateCluster is Migrate on the ClickHouse cluster named cluster (one
// server when ""), through conn to any of its servers: tables are created
// ON CLUSTER, and columns added to the replicated tables reach every server
// by replication.
func MigrateCluster(ctx context.Context, conn Conn, db, cluster string) (int, error) {
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
	q := "`" + db + "`"
	for _, stmt := range []string{
		d.r.Replace("CREATE DATABASE IF NOT EXISTS {db}{on}"),
		d.table("schema_migrations", "version UInt32, name String, applied_at DateTime", "MergeTree()", "ORDER BY version"),
	} {
		if err := conn.Exec(ctx, stmt); err != nil {
			return 0, fmt.Errorf("prepare database %s: %w", db, err)
		}
	}
	done, err := appliedMigrations(ctx, conn, q)
	if err != nil {
		return 0, err
	}
	top := 0
	for v := range done {
		top = max(top, v)
	}
	for _, m := range migrations(d) {
		if done[m.Version] {
			continue
		}
		for _, stmt := range m.Statements {
			if err := conn.Exec(ctx, stmt); err != nil {
				return top, fmt.Errorf("migration %d (%s) on ClickHouse %s: %w", m.Version, m.Name, v, err)
			}
		}
		for _, c := range m.Columns {
			if err := d.addColumn(ctx, conn, c); err != nil {
				return top, fmt.Errorf("migration %d (%s) on ClickHouse %s: %w", m.Version, m.Name, v, err)
			}
		}
		if err := conn.Exec(ctx, "INSERT INTO "+q+".schema_migrations (version, name, applied_at) SELECT ?, ?, now()",
			uint32(m.Version), m.Name); err != nil {
			return top, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		top = m.Version
	}
	return top, nil
}

// addColumn adds c unless the table has it. Two processes migrating at
// once may both try: the loser's error is no error if the column is there.
// A table whole on every server of a cluster gets it by replication. A
// sharded table's local parts get it ON CLUSTER, and its Distributed table,
// which holds no data (ingest writes to the local parts) and which 18.16
// will not ALTER ON CLUSTER when shards replicate internally, is created
// again over them, so queries on it fail for that moment.
func (d ddl) addColumn(ctx context.Context, conn Conn, c Column) error {
	has := func(table string) (bool, error) {
		rows, err := conn.Query(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?", d.db, table, c.Name)
		if err != nil {
			return false, fmt.Errorf("look for column %s.%s: %w", table, c.Name, err)
		}
		defer rows.Close()
		var n uint64
		if rows.Next() {
			if err := rows.Scan(&n); err != nil {
				return false, fmt.Errorf("look for column %s.%s: %w", table, c.Name, err)
			}
		}
		return n > 0, rows.Err()
	}
	alter := func(table, on string) error {
		if ok, err := has(table); err != nil || ok {
			return err
		}
		if err := conn.Exec(ctx, "ALTER TABLE `"+d.db+"`."+table+on+" ADD COLUMN "+c.Name+" "+c.Type); err != nil {
			if ok, herr := has(table); herr == nil && ok {
				return nil
			}
			return fmt.Errorf("add column %s.%s: %w", table, c.Name, err)
		}
		return nil
	}
	if _, ok := shardKeys[c.Table]; !ok || d.cluster == "" {
		return alter(c.Table, "")
	}
	if err := alter(c.Table+LocalSuffix, d.r.Replace("{on}")); err != nil {
		return err
	}
	if ok, err := has(c.Table); err != nil || ok {
		return err
	}
	for _, stmt := range []string{d.r.Replace("DROP TABLE IF EXISTS {db}." + c.Table + "{on}"), d.distributed(c.Table)} {
		if err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("add column %s.%s: %w", c.Table, c.Name, err)
		}
	}
	return nil
}

func appliedMigrations(ctx context.Context, conn Conn, q string) (map[int]bool, error) {
	rows, err := conn.Query(ctx, "SELECT version FROM "+q+".schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	defer rows.Close()
	done := map[int]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read applied migrations: %w", err)
		}
		done[int(v)] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	return done, nil
}
