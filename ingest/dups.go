package ingest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
)

// Ingest stores each eventId once as far as one process can tell (the recent
// set, resume), but two processes can each store a copy: the old owner of a
// partition still flushing while the new one reads it, or a producer's retry
// that reached two partitions owned by different processes. ClickHouse merges
// such copies late or never, so after each insert ingest asks which of the
// rows it stored are now stored more than once and records those keys in
// event_dups, where counts find them (schema.Counted). Of two processes
// storing copies of one event, the one whose insert ends last sees both.

// recordDuplicates looks up which of the stored events (ids, with their
// services and createdAt) are stored more than once and records their keys
// in event_dups.
func (in *Ingester) recordDuplicates(ctx context.Context, ids, services []string, createdAt []int64) error {
	if len(ids) == 0 {
		return nil
	}
	lo, hi := slices.Min(createdAt), slices.Max(createdAt)
	svc := slices.Compact(slices.Sorted(slices.Values(services)))
	var keys []dupKey
	err := in.retry(ctx, "look for events stored twice", func(ctx context.Context) error {
		var err error
		keys, err = in.findDuplicates(ctx, ids, svc, lo, hi)
		return err
	})
	if err != nil || len(keys) == 0 {
		return err
	}
	err = in.retry(ctx, "record events stored twice", func(ctx context.Context) error {
		batch, err := in.conn.PrepareBatch(ctx, "INSERT INTO `"+in.cfg.Database+"`.event_dups (service, type, created_at, event_id, found_at)")
		if err != nil {
			return fmt.Errorf("prepare insert: %w", err)
		}
		defer batch.Close()
		now := time.Now()
		for _, k := range keys {
			if err := batch.Append(k.service, k.typ, k.createdAt, k.id, now); err != nil {
				return fmt.Errorf("append duplicate key: %w", err)
			}
		}
		return batch.Send()
	})
	if err != nil {
		return err
	}
	in.dupsFound.Add(int64(len(keys)))
	in.log.Info("events stored more than once; counts read them once", "keys", len(keys), "example", keys[0].id)
	return nil
}

// dupKey is the events table's sort key: the key ClickHouse merges copies by.
type dupKey struct {
	service, typ, id string
	createdAt        int64
}

// findDuplicates returns the keys among ids (stored under these services,
// createdAt in [lo, hi]) that the events table holds more than once. The ids
// travel as an external table: a batch's worth would overflow the largest
// query ClickHouse parses.
func (in *Ingester) findDuplicates(ctx context.Context, ids, services []string, lo, hi int64) ([]dupKey, error) {
	tbl, err := ext.NewTable("ids", ext.Column("event_id", "String"))
	if err != nil {
		return nil, err
	}
	if _, err := tbl.Block().Columns[0].Append(ids); err != nil {
		return nil, fmt.Errorf("external table of event ids: %w", err)
	}
	ctx = clickhouse.Context(limited(ctx), clickhouse.WithExternalTable(tbl))
	args := make([]any, 0, len(services)+2)
	for _, s := range services {
		args = append(args, s)
	}
	rows, err := in.conn.Query(ctx, "SELECT service, type, created_at, event_id FROM `"+in.cfg.Database+"`.events "+
		"WHERE service IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(services)), ", ")+") AND created_at >= ? AND created_at <= ? "+
		"AND event_id IN (SELECT event_id FROM ids) GROUP BY service, type, created_at, event_id HAVING count() > 1", append(args, lo, hi)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []dupKey
	for rows.Next() {
		var k dupKey
		if err := rows.Scan(&k.service, &k.typ, &k.createdAt, &k.id); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}
