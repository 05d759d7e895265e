package chlocal

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStartLoggedKeepsQueryAndPartLogs: a server from StartLogged records
// its statements in system.query_log and its parts in system.part_log; one
// from Start has neither table.
func TestStartLoggedKeepsQueryAndPartLogs(t *testing.T) {
	if _, err := FindBinary(); errors.Is(err, ErrNoBinary) {
		if os.Getenv("HINDSIGHT_REQUIRE_CLICKHOUSE") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, logged := range []bool{true, false} {
		start := Start
		if logged {
			start = func(ctx context.Context, dir string, log *slog.Logger) (*Server, error) {
				return StartLogged(ctx, dir, nil, log)
			}
		}
		s, err := start(ctx, t.TempDir(), nil)
		require.NoError(t, err)
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr}, DialTimeout: 5 * time.Second})
		require.NoError(t, err)
		require.NoError(t, conn.Exec(ctx, "CREATE TABLE default.logged (x UInt8) ENGINE = MergeTree ORDER BY x"))
		require.NoError(t, conn.Exec(ctx, "INSERT INTO default.logged SELECT 1"))
		require.NoError(t, conn.Exec(ctx, "SYSTEM FLUSH LOGS"))
		var queries, parts uint64
		errQ := conn.QueryRow(ctx, "SELECT count() FROM system.query_log WHERE query LIKE 'INSERT INTO default.logged%'").Scan(&queries)
		errP := conn.QueryRow(ctx, "SELECT count() FROM system.part_log WHERE table = 'logged'").Scan(&parts)
		if logged {
			require.NoError(t, errQ)
			require.NoError(t, errP)
			assert.NotZero(t, queries, "the insert is in query_log")
			assert.NotZero(t, parts, "its part is in part_log")
		} else {
			assert.Error(t, errQ, "no query_log")
			assert.Error(t, errP, "no part_log")
		}
		conn.Close()
		s.Stop()
	}
}
