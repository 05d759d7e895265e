package schema_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/schema"
)

var createdRe = regexp.MustCompile("CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS `db`\\.(\\w+)")

// TestClusterMigrations: on a cluster every table of the single-server
// layout exists under its name (events, event_ids, message_ids,
// stats_rollup, rollup_totals, engagements, engagement_counts and recipient_ids as Distributed tables over replicated _local
// ones, the rest replicated whole), every statement
// runs ON CLUSTER, and nothing is copied in (a cluster is created empty).
// The cluster suite (internal/cluster) runs them on a real cluster.
func TestClusterMigrations(t *testing.T) {
	v := schema.Version{Major: 18, Minor: 16}
	names := func(ms []schema.Migration) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			for _, stmt := range m.Statements {
				if m := createdRe.FindStringSubmatch(stmt); m != nil {
					out[m[1]] = stmt
				}
			}
		}
		return out
	}
	one := names(schema.Migrations("db", v))
	all := names(schema.ClusterMigrations("db", "c", v))
	for name := range one {
		require.Contains(t, all, name, "the cluster has %s", name)
	}
	for name, stmt := range all {
		assert.Contains(t, stmt, " ON CLUSTER `c`", name)
		switch {
		case name == "events" || name == "event_ids" || name == "message_ids" || name == "stats_rollup" || name == "rollup_totals" || name == "engagements" || name == "recipient_ids" || name == "engagements_by_sender" || name == "engagement_counts":
			assert.Contains(t, stmt, "ENGINE = Distributed(`c`, `db`, "+name+"_local, ", name)
		case strings.HasSuffix(name, "_local"):
			base := strings.TrimSuffix(name, "_local")
			assert.Regexp(t, "ENGINE = Replicated\\w*MergeTree\\('/clickhouse/tables/\\{shard\\}/db/"+base+"', '\\{replica\\}'", stmt, name)
		case name == "event_ids_mv" || name == "message_ids_mv" || name == "stats_rollup_mv" || name == "rollup_totals_mv" || name == "engagements_mv" || name == "recipient_ids_mv" || name == "engagements_by_sender_mv" || name == "engagement_counts_mv":
			assert.Contains(t, stmt, "TO `db`."+strings.TrimSuffix(name, "_mv")+"_local", name)
			assert.Contains(t, stmt, "FROM `db`.events_local", name)
		case name == "delivery_ids_mv":
			assert.Contains(t, stmt, "TO `db`.delivery_ids AS", name)
			assert.Contains(t, stmt, "FROM `db`.deliveries", name)
		default:
			assert.Regexp(t, "ENGINE = Replicated\\w*MergeTree\\('/clickhouse/tables/all/db/"+name+"', '\\{shard\\}-\\{replica\\}'", stmt, name)
		}
	}
	for _, m := range schema.ClusterMigrations("db", "c", v) {
		for _, stmt := range m.Statements {
			assert.NotContains(t, stmt, "INSERT", "migration %d copies nothing on a cluster", m.Version)
		}
	}
}

func TestSlots(t *testing.T) {
	assert.Equal(t, []int{0, 1, 1, 2}, schema.Slots([]schema.Shard{{Weight: 1}, {Weight: 2}, {Weight: 1}}))
	assert.Equal(t, []int{0, 1}, schema.Slots([]schema.Shard{{Weight: 0}, {Weight: 1}}), "a weight of 0 counts as 1")
}

// TestShardOfIsCityHash64: ShardOf picks slot cityHash64(eventId) mod
// slots, with the hash as ClickHouse computes it.
func TestShardOfIsCityHash64(t *testing.T) {
	conn := chtest.Open(t)
	slots := []int{0, 1, 1, 2, 2} // weights 1, 2, 2
	var ids []string
	for i := range 200 {
		ids = append(ids, fmt.Sprintf("evt_%d_%s", i, strings.Repeat("x", i%70)))
	}
	rows, err := conn.Query(context.Background(), "SELECT id, toUInt64(cityHash64(id) % 5) FROM (SELECT arrayJoin(?) AS id)", ids)
	require.NoError(t, err)
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id string
		var slot uint64
		require.NoError(t, rows.Scan(&id, &slot))
		assert.Equal(t, slots[slot], schema.ShardOf(id, slots), id)
		n++
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, len(ids), n)
	assert.Equal(t, 0, schema.ShardOf("anything", []int{0}), "one shard")
}
