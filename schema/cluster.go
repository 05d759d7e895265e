package schema

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/go-faster/city"
)

// On a ClickHouse cluster (--cluster), the tables are laid out so that every
// reader keeps reading the names it reads on one server:
//
//   - events and event_ids are split across the shards by
//     cityHash64(event_id), each shard's rows replicated across its
//     replicas: events_local and event_ids_local on every server
//     (Replicated…MergeTree under /clickhouse/tables/{shard}/<db>/<table>),
//     and events and event_ids as Distributed tables over them. Every copy of
//     an eventId lands on one shard, where ReplacingMergeTree merges them.
//     Ingest writes to each shard's events_local itself (see ShardOf); the
//     event_ids view feeds event_ids_local on the replica written to, and
//     replication carries both to the shard's other replicas. message_ids,
//     recipient_ids, stats_rollup, rollup_totals and the engagements tables are fed the
//     same way from each shard's events.
//   - Every other table (replay's, the keys, event_dups, dead letters,
//     schema_migrations) is small and whole on every server: one
//     replicated table under /clickhouse/tables/all/<db>/<table> with
//     every server a replica ({shard}-{replica}), so any server answers
//     FINAL and IN subqueries on it alone.
//
// An IN subquery on events or event_ids inside a query on events is written
// GLOBAL IN: it runs once, on the server asked, and its result goes to the
// shards (a plain IN is refused there: distributed_product_mode, which 18.16
// clients cannot set per connection). On one server GLOBAL IN is IN.

// LocalSuffix names a sharded table's part on each server.
const LocalSuffix = "_local"

// ValidateCluster checks a cluster name: an identifier, spliced into
// statements.
func ValidateCluster(name string) error { return validateIdent("cluster", name) }

// ddl writes the statements of one database, on one server or a cluster.
type ddl struct {
	db, cluster string
	r           *strings.Replacer
}

func newDDL(db, cluster string, v Version) ddl {
	lc := "String"
	if v.HasLowCardinality() {
		lc = "LowCardinality(String)"
	}
	on, local := "", ""
	if cluster != "" {
		on, local = " ON CLUSTER `"+cluster+"`", LocalSuffix
	}
	return ddl{db: db, cluster: cluster, r: strings.NewReplacer("{db}", "`"+db+"`", "{lc}", lc, "{on}", on, "{local}", local)}
}

// table creates a table that is whole on every server: columns are the
// column list, engine a MergeTree family engine, tail what follows it
// (PARTITION BY, ORDER BY).
func (d ddl) table(name, columns, engine, tail string) string {
	return d.create(name, columns, d.engine(engine, "all", "{shard}-{replica}", name), tail)
}

// sharded creates a table split across the shards (shardKeys): on one
// server a plain table; on a cluster a replicated name_local on every
// server and a Distributed table name over them.
func (d ddl) sharded(name, columns, engine, tail string) []string {
	if d.cluster == "" {
		return []string{d.table(name, columns, engine, tail)}
	}
	return []string{d.create(name+LocalSuffix, columns, d.engine(engine, "{shard}", "{replica}", name), tail), d.distributed(name)}
}

// distributed creates the Distributed table name over name_local, with its
// columns.
func (d ddl) distributed(name string) string {
	key, ok := shardKeys[name]
	if !ok {
		panic("schema: " + name + " is not in shardKeys")
	}
	return d.r.Replace(fmt.Sprintf("CREATE TABLE IF NOT EXISTS {db}.%s{on} AS {db}.%s ENGINE = Distributed(`%s`, `%s`, %s, %s)",
		name, name+LocalSuffix, d.cluster, d.db, name+LocalSuffix, key))
}

// serverOnly is stmt on one server, nothing on a cluster.
func (d ddl) serverOnly(stmt string) []string {
	if d.cluster != "" {
		return nil
	}
	return []string{stmt}
}

func (d ddl) create(name, columns, engine, tail string) string {
	return d.r.Replace("CREATE TABLE IF NOT EXISTS {db}." + name + "{on} (" + columns + "\n) ENGINE = " + engine + "\n" + tail)
}

// engine is engine on one server, and its replicated form under ZooKeeper
// path /clickhouse/tables/<shard>/<db>/<table> on a cluster: the path is
// spelled out so the same statement works on 18.16 and current servers.
func (d ddl) engine(engine, shard, replica, table string) string {
	if d.cluster == "" {
		return engine
	}
	kind, args, _ := strings.Cut(strings.TrimSuffix(engine, ")"), "(")
	path := fmt.Sprintf("'/clickhouse/tables/%s/%s/%s', '%s'", shard, d.db, table, replica)
	if args != "" {
		path += ", " + args
	}
	return "Replicated" + kind + "(" + path + ")"
}

// Shard is one shard of a cluster, as the server's system.clusters lists it.
type Shard struct {
	Weight   int
	Replicas []string // each replica's native-protocol host:port
}

// ClusterShards reads the shards of cluster from the server conn talks to,
// in the order a Distributed table numbers them.
func ClusterShards(ctx context.Context, conn Conn, cluster string) ([]Shard, error) {
	rows, err := conn.Query(ctx, "SELECT shard_num, shard_weight, host_name, port FROM system.clusters WHERE cluster = ? "+
		"ORDER BY shard_num, replica_num", cluster)
	if err != nil {
		return nil, fmt.Errorf("read cluster %s: %w", cluster, err)
	}
	defer rows.Close()
	var shards []Shard
	last := uint32(0)
	for rows.Next() {
		var num, weight uint32
		var host string
		var port uint16
		if err := rows.Scan(&num, &weight, &host, &port); err != nil {
			return nil, fmt.Errorf("read cluster %s: %w", cluster, err)
		}
		if num != last {
			shards = append(shards, Shard{Weight: int(weight)})
			last = num
		}
		s := &shards[len(shards)-1]
		s.Replicas = append(s.Replicas, net.JoinHostPort(host, strconv.Itoa(int(port))))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cluster %s: %w", cluster, err)
	}
	if len(shards) == 0 {
		return nil, fmt.Errorf("cluster %q is not in the server's system.clusters: define it under remote_servers in its config", cluster)
	}
	return shards, nil
}

// Slots maps units of weight to shard indexes, as a Distributed table
// does: shard i owns shards[i].Weight consecutive slots.
func Slots(shards []Shard) []int {
	var slots []int
	for i, s := range shards {
		for range max(s.Weight, 1) {
			slots = append(slots, i)
		}
	}
	return slots
}

// ShardOf returns the index of the shard that stores eventId id, given the
// cluster's Slots: the shard a Distributed table with sharding key
// cityHash64(event_id) picks, so every copy of an eventId is stored on one
// shard whoever writes it.
func ShardOf(id string, slots []int) int {
	if len(slots) <= 1 {
		return 0
	}
	return slots[city.CH64([]byte(id))%uint64(len(slots))]
}

// shardKeys are the tables split across a cluster's shards, with the key
// their Distributed table shards by: ingest writes events to the shard
// ShardOf picks, the same as cityHash64(event_id); the lookup tables and
// the rollup are filled on each shard from its events (a rebuild of the
// rollup, which counts, may put its rows on any shard).
var shardKeys = map[string]string{"events": "cityHash64(event_id)", "event_ids": "id_hash", "message_ids": "message_hash", "stats_rollup": "rand()", "rollup_totals": "rand()", "engagements": "message_hash", "recipient_ids": "recipient_hash", "engagements_by_sender": "message_hash", "engagement_counts": "rand()"}

// OnShard is r as it applies on each shard of a cluster, one shard at a
// time: the sharded tables' local parts; the tables whole on every server
// as they are (ALTERs on them replicate).
func (r Retained) OnShard() Retained {
	local := func(t string) string {
		if _, ok := shardKeys[t]; ok {
			return t + LocalSuffix
		}
		return t
	}
	s := Retained{Table: local(r.Table), Column: r.Column}
	for _, c := range r.Companions {
		s.Companions = append(s.Companions, local(c))
	}
	return s
}
