//go:build chdb

package compat

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/schema"
)

// TestRetentionByTTL runs retention on chDB 26.7, which has TTL: each
// retained table and its companions get a TTL once (a second run sends no
// ALTER), and a merge drops what is older than it.
func TestRetentionByTTL(t *testing.T) {
	ctx := context.Background()
	cur := &chdbConn{s: session(t), version: newVersion}
	const db = "compat_retention"
	t.Cleanup(func() { _ = cur.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) })
	_, err := schema.Migrate(ctx, cur, db)
	require.NoError(t, err)
	now := time.Now()
	old, recent := now.Add(-40*24*time.Hour).UnixMilli(), now.Add(-time.Hour).UnixMilli()
	for _, at := range []int64{old, recent} {
		require.NoError(t, cur.Exec(ctx, "INSERT INTO "+db+".deliveries (endpoint_id, event_id, at) SELECT 'whep_1', 'evt', ?", at))
		require.NoError(t, cur.Exec(ctx, "INSERT INTO "+db+".event_dups (service, type, created_at, event_id, version) SELECT 'platform', 'platform.test', ?, 'evt', 1", at))
	}
	keep := 30 * 24 * time.Hour
	for _, r := range []schema.Retained{schema.DeliveriesRetained, schema.EventsRetained} {
		dropped, err := schema.ApplyRetention(ctx, cur, db, r, keep, now)
		require.NoError(t, err, r.Table)
		assert.Empty(t, dropped, "TTL, not dropped partitions")
		for _, table := range append([]string{r.Table}, r.Companions...) {
			out, err := cur.run("SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?", []any{db, table})
			require.NoError(t, err)
			assert.Contains(t, out, "TTL", table)
		}
		sent := len(cur.sent)
		_, err = schema.ApplyRetention(ctx, cur, db, r, keep, now)
		require.NoError(t, err)
		for _, q := range cur.sent[sent:] {
			assert.NotContains(t, q, "ALTER", "a TTL already set is left alone")
		}
	}
	for _, table := range []string{"deliveries", "event_dups"} {
		require.NoError(t, cur.Exec(ctx, "OPTIMIZE TABLE "+db+"."+table+" FINAL"))
		out, err := cur.run("SELECT count() FROM "+db+"."+table, nil)
		require.NoError(t, err)
		assert.Equal(t, "1", strings.TrimSpace(out), "%s keeps the recent row only", table)
	}
}
