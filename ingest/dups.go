package ingest

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/dodev/hindsight/schema"
)

// Ingest stores each eventId once as far as one process can tell (the recent
// set, resume), but two processes can each store a copy: the old owner of a
// partition still flushing while the new one reads it, or a producer's retry
// that reached two partitions owned by different processes. ClickHouse merges
// such copies late or never, so once a batch is stored ingest asks which of
// the rows it stored are now stored more than once and records those keys in
// event_dups, where counts find them (schema.Counted), before it commits the
// batch's offsets (see tail). Of two processes storing copies of one event,
// the one whose insert ends last sees both.

// recordDuplicates looks up which of the stored events (ids and createdAt,
// under services) are stored more than once and records their keys in
// event_dups.
func (in *Ingester) recordDuplicates(ctx context.Context, ids, services []string, createdAt []int64) error {
	if len(ids) == 0 {
		return nil
	}
	var keys []dupKey
	// The version orders this record after any resolution made by a look-up
	// that began before this one, which cannot have seen the copy found now.
	version := uint64(time.Now().UnixNano())
	err := in.retry(ctx, "look for events stored twice", func(ctx context.Context) error {
		var err error
		keys, err = in.findDuplicates(ctx, ids, createdAt, services)
		return err
	})
	if err != nil || len(keys) == 0 {
		return err
	}
	if err := in.retry(ctx, "record events stored twice", func(ctx context.Context) error {
		return in.writeDups(ctx, keys, false, version)
	}); err != nil {
		return err
	}
	in.dupsFound.Add(int64(len(keys)))
	in.log.Info("events stored more than once; counts read them once", "keys", len(keys), "example", keys[0].id)
	return nil
}

// writeDups appends event_dups rows for keys: recorded, or resolved.
func (in *Ingester) writeDups(ctx context.Context, keys []dupKey, resolved bool, version uint64) error {
	batch, err := in.conn.PrepareBatch(ctx, "INSERT INTO `"+in.cfg.Database+"`.event_dups (service, type, created_at, event_id, found_at, resolved, version)")
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	defer batch.Close()
	now := time.Now()
	for _, k := range keys {
		if err := batch.Append(k.service, k.typ, k.createdAt, k.id, now, b2u(resolved), version); err != nil {
			return fmt.Errorf("append duplicate key: %w", err)
		}
	}
	return batch.Send()
}

// resolveMerged looks again at recorded keys found at least minAge ago and
// marks resolved those ClickHouse has merged into one row, so counts over
// their range are plain reads again. It returns how many it resolved.
func (in *Ingester) resolveMerged(ctx context.Context, minAge time.Duration) (int, error) {
	version := uint64(time.Now().UnixNano()) // before the look-up: see recordDuplicates
	rows, err := in.conn.Query(limited(ctx), "SELECT any(service), type, created_at, event_id FROM `"+in.cfg.Database+"`.event_dups "+
		"WHERE found_at <= ? GROUP BY type, created_at, event_id HAVING argMax(resolved, version) = 0 LIMIT ?",
		time.Now().Add(-minAge).Truncate(time.Second), resolveBatch)
	if err != nil {
		return 0, fmt.Errorf("read recorded duplicates: %w", err)
	}
	var keys []dupKey
	for rows.Next() {
		var k dupKey
		if err := rows.Scan(&k.service, &k.typ, &k.createdAt, &k.id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read recorded duplicates: %w", err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(keys) == 0 {
		return 0, err
	}
	ids, services, createdAt := make([]string, len(keys)), make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		ids[i], services[i], createdAt[i] = k.id, k.service, k.createdAt
	}
	still, err := in.findDuplicates(ctx, ids, createdAt, services)
	if err != nil {
		return 0, fmt.Errorf("look up recorded duplicates: %w", err)
	}
	stillDup := make(map[dupKey]bool, len(still))
	for _, k := range still {
		stillDup[k] = true
	}
	keys = slices.DeleteFunc(keys, func(k dupKey) bool { return stillDup[k] })
	if len(keys) == 0 {
		return 0, nil
	}
	if err := in.writeDups(ctx, keys, true, version); err != nil {
		return 0, fmt.Errorf("resolve merged duplicates: %w", err)
	}
	return len(keys), nil
}

// resolveBatch is the most recorded keys one resolveMerged pass looks at.
const resolveBatch = 10_000

// resolveInterval is how often ingest looks again at recorded keys, and how
// old a record must be to be looked at: merges of small parts take minutes.
const resolveInterval = 10 * time.Minute

// retentionEvery is how often ingest applies the events' retention.
const retentionEvery = time.Hour

// housekeeping runs resolveMerged every interval (jittered), checks the
// quarter hours it stored into every rollupCheckInterval and every
// unchecked one at start and every rollupSweepEvery, and applies the
// events' retention at start and every retentionEvery, until ctx ends.
func (in *Ingester) housekeeping(ctx context.Context, interval time.Duration) {
	resolve := time.After(interval + time.Duration(rand.Int64N(int64(interval)/5+1)))
	retain := time.After(0)
	check := time.After(cmp.Or(in.testHooks.rollupCheckEvery, rollupCheckInterval))
	sweep := time.After(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-check:
			check = time.After(cmp.Or(in.testHooks.rollupCheckEvery, rollupCheckInterval))
			if _, err := in.checkRollup(ctx, false); err != nil && ctx.Err() == nil {
				in.log.Warn("check the stats rollup", "err", err)
			}
		case <-sweep:
			sweep = time.After(rollupSweepEvery)
			n, err := in.checkRollup(ctx, true)
			switch {
			case err != nil && ctx.Err() == nil:
				in.log.Warn("check the stats rollup", "err", err)
			case err == nil:
				in.log.Info("stats rollup checked against the events", "quarter_hours_read_from_events", n)
			}
		case <-resolve:
			resolve = time.After(interval + time.Duration(rand.Int64N(int64(interval)/5+1)))
			n, err := in.resolveMerged(ctx, interval)
			switch {
			case err != nil && ctx.Err() == nil:
				in.log.Warn("resolve merged duplicates", "err", err)
			case n > 0:
				in.log.Info("copies merged by ClickHouse; their counts are plain reads again", "keys", n)
			}
		case <-retain:
			retain = time.After(retentionEvery)
			if in.cfg.EventsRetention <= 0 {
				continue
			}
			dropped, err := in.applyRetention(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				in.log.Warn("apply the events' retention", "err", err)
			case len(dropped) > 0:
				in.log.Info("events past their retention dropped", "months", dropped, "retention", in.cfg.EventsRetention)
			}
		}
	}
}

// applyRetention applies the events' retention on the server, or on each
// shard of the cluster through its connection.
func (in *Ingester) applyRetention(ctx context.Context) ([]string, error) {
	if in.slots == nil {
		return schema.ApplyRetention(ctx, in.conn, in.cfg.Database, schema.EventsRetained, in.cfg.EventsRetention, time.Now())
	}
	var dropped []string
	for i, s := range in.shards {
		d, err := schema.ApplyRetention(ctx, s.conn, in.cfg.Database, schema.EventsRetained.OnShard(), in.cfg.EventsRetention, time.Now())
		if err != nil {
			return dropped, fmt.Errorf("shard %d: %w", i+1, err)
		}
		dropped = append(dropped, d...)
	}
	return dropped, nil
}

// dupKey is the events table's sort key: the key ClickHouse merges copies by.
type dupKey struct {
	service, typ, id string
	createdAt        int64
}

// span is a range of createdAt in ms, both ends included.
type span struct{ lo, hi int64 }

// Copies are looked for in the createdAt spans of the stored events: the
// sort key (service, type, created_at) keeps the read to the rows near them.
// One event produced an hour late must not make a batch read the whole
// hour, so the batch's createdAt values are split into spans wherever they
// are more than spanGap apart, at most maxSpans of them (at the widest
// gaps). spansOf takes the values sorted.
const (
	spanGap  = 60_000
	maxSpans = 64
)

func spansOf(at []int64) []span {
	var cuts []int // at[i] starts a new span
	for i := 1; i < len(at); i++ {
		if at[i]-at[i-1] > spanGap {
			cuts = append(cuts, i)
		}
	}
	if len(cuts) >= maxSpans {
		slices.SortFunc(cuts, func(a, b int) int { return cmp.Compare(at[b]-at[b-1], at[a]-at[a-1]) })
		cuts = cuts[:maxSpans-1]
		slices.Sort(cuts)
	}
	spans := make([]span, 0, len(cuts)+1)
	start := 0
	for _, c := range append(cuts, len(at)) {
		spans = append(spans, span{at[start], at[c-1]})
		start = c
	}
	return spans
}

// findDuplicates returns the keys the events table holds more than once at
// the createdAt values of the stored events (ids, createdAt, under services,
// named once or once per event): theirs, and any other event's stored at
// the same millisecond. Every copy of an eventId is on the shard it maps
// to, so on a cluster each shard is asked about its own events.
func (in *Ingester) findDuplicates(ctx context.Context, ids []string, createdAt []int64, services []string) ([]dupKey, error) {
	services = slices.Compact(slices.Sorted(slices.Values(services)))
	if len(in.shards) == 1 {
		return findDuplicatesOn(ctx, in.shards[0], in.cfg.Database, createdAt, services)
	}
	byShard := make([][]int64, len(in.shards))
	for i, id := range ids {
		s := schema.ShardOf(id, in.slots)
		byShard[s] = append(byShard[s], createdAt[i])
	}
	var keys []dupKey
	for i, at := range byShard {
		if len(at) == 0 {
			continue
		}
		found, err := findDuplicatesOn(ctx, in.shards[i], in.cfg.Database, at, services)
		if err != nil {
			return nil, fmt.Errorf("shard %d: %w", i+1, err)
		}
		keys = append(keys, found...)
	}
	return keys, nil
}

// findDuplicatesOn is findDuplicates on one shard, in two steps. The first
// finds the createdAt values at which an eventId is stored more than once,
// grouping the rows by createdAt and a hash of the eventId: two numbers,
// and no set of the batch's eventIds to build and probe, which takes about
// half the CPU of grouping by the whole key. Copies are rare, so that
// usually ends the look-up. The second reads the keys stored more than once at those
// values, grouped by the whole key, so a hash two eventIds share is no copy.
// Both steps read every row at the values asked about, so they also find
// the copies of an event of another batch stored at the same millisecond,
// which are copies all the same.
func findDuplicatesOn(ctx context.Context, on shard, db string, createdAt []int64, services []string) ([]dupKey, error) {
	var at []int64
	err := groupsStoredTwice(ctx, on, db, createdAt, services, "created_at", "created_at, cityHash64(event_id)", func(rows driver.Rows) error {
		var v int64
		err := rows.Scan(&v)
		at = append(at, v)
		return err
	})
	if err != nil || len(at) == 0 {
		return nil, err
	}
	const key = "service, type, created_at, event_id"
	var keys []dupKey
	err = groupsStoredTwice(ctx, on, db, at, services, key, key, func(rows driver.Rows) error {
		var k dupKey
		err := rows.Scan(&k.service, &k.typ, &k.createdAt, &k.id)
		keys = append(keys, k)
		return err
	})
	return keys, err
}

// groupsStoredTwice reads the shard's events at the createdAt values (under
// services), grouped by groupBy, and scans cols of each group of more than
// one row. Rows are matched by createdAt first (PREWHERE, an Int64 set)
// within spansOf the values, which keeps the read to the rows near them. The
// values travel as an external table, at: a batch's worth would overflow the
// largest query ClickHouse parses.
func groupsStoredTwice(ctx context.Context, on shard, db string, createdAt []int64, services []string, cols, groupBy string,
	scan func(driver.Rows) error) error {
	createdAt = slices.Clone(createdAt)
	slices.Sort(createdAt)
	createdAt = slices.Compact(createdAt)
	tbl, err := ext.NewTable("at", ext.Column("created_at", "Int64"))
	if err != nil {
		return err
	}
	if _, err := tbl.Block().Columns[0].Append(createdAt); err != nil {
		return fmt.Errorf("external table of createdAt values: %w", err)
	}
	ctx = clickhouse.Context(limited(ctx), clickhouse.WithExternalTable(tbl))
	spans := spansOf(createdAt)
	args := make([]any, 0, len(services)+2*len(spans))
	for _, s := range services {
		args = append(args, s)
	}
	within := make([]string, len(spans))
	for i, s := range spans {
		within[i] = "created_at >= ? AND created_at <= ?"
		args = append(args, s.lo, s.hi)
	}
	rows, err := on.conn.Query(ctx, "SELECT "+cols+" FROM `"+db+"`."+on.table+" PREWHERE created_at IN (SELECT created_at FROM at) "+
		"WHERE service IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(services)), ", ")+") AND ("+strings.Join(within, " OR ")+") "+
		"GROUP BY "+groupBy+" HAVING count() > 1", args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
