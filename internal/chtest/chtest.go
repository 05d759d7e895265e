// Package chtest gives integration tests a real ClickHouse server: one child
// server per test binary (started on first use), a fresh database per test.
//
// Without a ClickHouse binary on PATH the tests that need one skip, unless
// HINDSIGHT_REQUIRE_CLICKHOUSE=1 (set by `make test` and CI), where they fail.
package chtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/dodev/hindsight/internal/chlocal"
)

var (
	once    sync.Once
	server  *chlocal.Server
	dir     string
	initErr error
	dbSeq   atomic.Int64
)

// Main runs a package's tests and stops the shared server afterwards. Call it
// from TestMain: os.Exit(chtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if server != nil {
		server.Stop()
		os.RemoveAll(dir)
	}
	return code
}

// Addr returns the shared server's native address, starting it on first use.
func Addr(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	once.Do(func() {
		if _, err := chlocal.FindBinary(); err != nil {
			initErr = err
			return
		}
		dir, initErr = os.MkdirTemp("", "hindsight-chtest-")
		if initErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		server, initErr = chlocal.Start(ctx, dir, nil)
	})
	if initErr != nil {
		if os.Getenv("HINDSIGHT_REQUIRE_CLICKHOUSE") == "" {
			t.Skipf("no ClickHouse server for integration tests: %v", initErr)
		}
		t.Fatalf("ClickHouse required (HINDSIGHT_REQUIRE_CLICKHOUSE is set): %v", initErr)
	}
	return server.Addr
}

// HTTPAddr returns the shared server's HTTP address, starting it on first use.
func HTTPAddr(t testing.TB) string {
	t.Helper()
	Addr(t)
	return server.HTTPAddr
}

// Open connects to the shared server.
func Open(t testing.TB) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{Addr(t)},
		DialTimeout: 5 * time.Second,
		ReadTimeout: 60 * time.Second,
	})
	if err != nil {
		t.Fatalf("open clickhouse: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Database returns a connection and the name of a database no other test
// uses. It is dropped when the test ends.
func Database(t testing.TB) (driver.Conn, string) {
	t.Helper()
	conn := Open(t)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name)
	})
	return conn, name
}
