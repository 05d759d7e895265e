package keys

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

// TestCheckerTrustsACopyForMaxAge moves the checker's clock: within a second
// a known key costs no read; an unknown key looks again at most once a
// second; past MaxAge with ClickHouse gone, stored keys are refused as
// unavailable while the bootstrap key goes on.
func TestCheckerTrustsACopyForMaxAge(t *testing.T) {
	ctx := context.Background()
	conn, db := chtest.MigratedDatabase(t)
	store := NewStore(conn, db)
	k, secret, err := store.Create(ctx, "k", []Scope{StatsRead})
	require.NoError(t, err)

	var clock atomic.Int64 // the checker's now, read by its background reloads too
	clock.Store(time.Unix(1_800_000_000, 0).UnixNano())
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	c := NewChecker(store, "bootstrap-0123456789", nil)
	c.now = func() time.Time { return time.Unix(0, clock.Load()) }
	got, err := c.Check(ctx, secret)
	require.NoError(t, err)
	assert.Equal(t, k.ID, got.ID)
	assert.Equal(t, []Scope{StatsRead}, got.Scopes)

	// A key made after the copy is found by looking again, once a second.
	_, later, err := store.Create(ctx, "later", []Scope{EventsRead})
	require.NoError(t, err)
	_, err = c.Check(ctx, later)
	assert.ErrorIs(t, err, ErrUnknown, "looked again less than a second ago")
	advance(reloadEvery)
	_, err = c.Check(ctx, later)
	assert.NoError(t, err)

	// ClickHouse gone: the copy serves until MaxAge, then stored keys fail.
	dead, err := clickhouse.Open(&clickhouse.Options{Addr: []string{"127.0.0.1:1"}, DialTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer dead.Close()
	c.load.Lock() // no reload in flight reads the store as it changes
	c.store = NewStore(dead, db)
	c.load.Unlock()
	advance(MaxAge - time.Millisecond)
	_, err = c.Check(ctx, secret)
	assert.NoError(t, err, "within MaxAge the copy holds")
	advance(time.Millisecond)
	_, err = c.Check(ctx, secret)
	assert.True(t, errors.Is(err, ErrUnavailable), "past MaxAge: %v", err)
	got, err = c.Check(ctx, "bootstrap-0123456789")
	assert.NoError(t, err)
	assert.Equal(t, All, got.Scopes)
}

// countingConn counts the queries a store sends.
type countingConn struct {
	Conn
	queries atomic.Int64
}

func (c *countingConn) Query(ctx context.Context, q string, args ...any) (driver.Rows, error) {
	c.queries.Add(1)
	return c.Conn.Query(ctx, q, args...)
}

// TestManyRequestsOneRead: requests that find no copy, or a stale one, all
// at once cause one read of the keys, and known keys then cause none.
func TestManyRequestsOneRead(t *testing.T) {
	ctx := context.Background()
	conn, db := chtest.MigratedDatabase(t)
	counting := &countingConn{Conn: conn}
	store := NewStore(counting, db)
	_, secret, err := store.Create(ctx, "k", []Scope{StatsRead})
	require.NoError(t, err)
	c := NewChecker(store, "bootstrap-0123456789", nil)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Check(ctx, secret)
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	assert.EqualValues(t, 1, counting.queries.Load())
	for range 100 {
		_, err := c.Check(ctx, secret)
		require.NoError(t, err)
	}
	assert.EqualValues(t, 1, counting.queries.Load(), "no read per request")
}
