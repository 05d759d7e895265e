package schema_test

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/schema"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

func TestMigrateIsIdempotent(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()

	v1, err := schema.Migrate(ctx, conn, db)
	require.NoError(t, err)
	v2, err := schema.Migrate(ctx, conn, db)
	require.NoError(t, err)
	assert.Equal(t, v1, v2)

	var applied uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM "+db+".schema_migrations").Scan(&applied))
	assert.Equal(t, uint64(len(schema.Migrations(db, schema.Version{}))), applied, "each migration recorded once")

	rows, err := conn.Query(ctx, "SELECT name FROM system.columns WHERE database = ? AND table = 'events'", db)
	require.NoError(t, err)
	var cols []string
	for rows.Next() {
		var c string
		require.NoError(t, rows.Scan(&c))
		cols = append(cols, c)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, schema.EventColumns, cols, "insert column order matches the table")
}

func TestValidateDatabase(t *testing.T) {
	for _, name := range []string{"hindsight", "_x", "a1_b2"} {
		assert.NoError(t, schema.ValidateDatabase(name), name)
	}
	for _, name := range []string{"", "1abc", "a-b", "a;DROP", "a b", "`x`"} {
		assert.Error(t, schema.ValidateDatabase(name), name)
	}
}
