package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/internal/recent"
	"github.com/dodev/hindsight/schema"
)

// Stats are running totals since the Ingester started.
type Stats struct {
	Consumed     int64 // records read from Kafka
	Bytes        int64 // their values' bytes
	Inserted     int64 // rows ClickHouse acknowledged
	Duplicates   int64 // records skipped as already stored
	StoredTwice  int64 // keys found stored more than once, recorded for counts
	DeadLettered int64 // records sent to the dead-letter topic
	Flushes      int64 // successful batch flushes
}

// Ingester consumes one topic into the events table. Create it with New and
// run it with Run; it is single-use.
type Ingester struct {
	cfg    Config
	conn   Inserter // reads the whole events table, writes the small tables
	client *kgo.Client
	log    *slog.Logger
	// shards are where events are stored: the one server, or each shard of
	// a cluster; slots map eventIds to them (schema.ShardOf).
	shards []shard
	slots  []int

	extra []kgo.Opt // the caller's client options, for the dead-letter producer too

	parser   schema.Parser
	valid    []validRecord // valid records not yet in rows (see addValid)
	hashes   []uint64      // their eventIds' hashes, for the recent set
	validAt  time.Time     // when they were read
	rows     columns
	todo     []*columns // the batch's parts not stored yet, once flushing began
	stored   stored     // what the batch's parts stored so far, for its tail
	dlq      []*kgo.Record
	dlqKinds []deadKind // why each of dlq is there
	dlqBytes int
	last     map[int32]*kgo.Record // newest record per partition in the batch
	started  time.Time             // when the batch's first record arrived
	recent   *recent.IDs

	dlqClient *kgo.Client // producer sized to the dead-letter topic's limit
	dlqLimit  int

	// resumed marks the partitions whose stored rows at and after their
	// first offset of this assignment were loaded into recent (see resume).
	// It is cleared when partitions move, from the rebalance callbacks.
	resumedMu sync.Mutex
	resumed   map[int32]bool

	// tail is the end of the last flush, running while the next batch is
	// read (see tail); tailMu serialises waiting for it.
	tailMu sync.Mutex
	tail   *tail

	touched touched // quarter hours to check the rollup of

	running   atomic.Bool
	flushErr  atomic.Pointer[error]
	consumed  atomic.Int64
	bytes     atomic.Int64
	inserted  atomic.Int64
	dups      atomic.Int64
	dupsFound atomic.Int64
	dead      atomic.Int64
	deadBy    [deadKinds]atomic.Int64
	flushes   atomic.Int64
	metrics   *metrics
	testHooks testHooks
}

// testHooks let tests stop the loop at the points a crash would.
type testHooks struct {
	// afterInsert runs once ClickHouse acknowledged a batch, before offsets are
	// committed; an error ends Run without committing, as a crash would.
	afterInsert func() error
	// afterPart runs once ClickHouse acknowledged one part (one month) of a
	// batch, before ingest looks for copies of its rows stored by others; an
	// error ends Run there, as a crash would.
	afterPart func() error
	// beforeInsert sees each insert's rows before they are sent; an error is
	// taken as ClickHouse's answer to the insert.
	beforeInsert func(*columns) error
	// rollupCheckEvery replaces rollupCheckInterval when not zero.
	rollupCheckEvery time.Duration
}

// New creates an Ingester storing events on the one server conn talks to.
// extra kgo options are appended to the client's (TLS, SASL, a logger).
func New(cfg Config, conn Inserter, log *slog.Logger, extra ...kgo.Opt) (*Ingester, error) {
	return newIngester(cfg, conn, []shard{{conn, "events", insertQuery(cfg.Database, "events")}}, nil, log, extra)
}

// Shard is one shard of a ClickHouse cluster as ingest writes to it: a
// connection that reaches any of its replicas, and its weight.
type Shard struct {
	Conn   Inserter
	Weight int
}

// NewOnCluster creates an Ingester storing events on a cluster laid out by
// schema.MigrateCluster: each event is inserted into its shard's
// events_local through that shard's connection, synchronously, and offsets
// are committed only after every shard a batch touched acknowledged its
// rows. conn reads the cluster's Distributed tables and writes the tables
// every server holds whole. shards are in the cluster's order
// (schema.ClusterShards).
func NewOnCluster(cfg Config, conn Inserter, shards []Shard, log *slog.Logger, extra ...kgo.Opt) (*Ingester, error) {
	if len(shards) == 0 {
		return nil, errors.New("ingest config: a cluster without shards")
	}
	var ss []schema.Shard
	var targets []shard
	for _, s := range shards {
		ss = append(ss, schema.Shard{Weight: s.Weight})
		targets = append(targets, shard{s.Conn, "events" + schema.LocalSuffix, insertQuery(cfg.Database, "events"+schema.LocalSuffix)})
	}
	return newIngester(cfg, conn, targets, schema.Slots(ss), log, extra)
}

// shard is where a share of the events is stored: its events table and
// the statement that inserts into it.
type shard struct {
	conn   Inserter
	table  string
	insert string
}

func newIngester(cfg Config, conn Inserter, shards []shard, slots []int, log *slog.Logger, extra []kgo.Opt) (*Ingester, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingest config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in := &Ingester{
		cfg:     cfg,
		conn:    conn,
		log:     log,
		shards:  shards,
		slots:   slots,
		extra:   extra,
		last:    map[int32]*kgo.Record{},
		recent:  recent.New(cfg.RecentIDs),
		resumed: map[int32]bool{},
	}
	// The batch keeps each record's value until its row is stored, so the
	// events' strings need not be copies (see columns.reset).
	in.parser.Shared = true
	in.metrics = newMetrics(in)
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.RebalanceTimeout(cfg.RebalanceTimeout),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.DisableAutoCommit(),
		// Partitions stay ours from the poll that returned their records until
		// their batch is stored and committed (AllowRebalance).
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(in.partitionsMoved),
		kgo.OnPartitionsLost(in.partitionsMoved),
		kgo.FetchMaxBytes(16 << 20),
		kgo.WithLogger(kgoLogger{log.With("client", "kafka")}),
		kgo.WithHooks(in.metrics.kafka),
	}
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	if cfg.GroupProtocol == "consumer" {
		opts = append(opts, kgo.ServerSideBalancer())
	}
	client, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	in.client = client
	return in, nil
}

func (in *Ingester) partitionsMoved(ctx context.Context, _ *kgo.Client, moved map[string][]int32) {
	in.metrics.forgetLag(moved[in.cfg.Topic])
	// The last batch's offsets are committed before its partitions go.
	if err := in.finishTail(ctx); err != nil {
		in.log.Warn("partitions moved before the last batch was committed; their next owner skips its stored rows", "err", err)
	}
	in.resumedMu.Lock()
	clear(in.resumed)
	in.resumedMu.Unlock()
}

// Stats returns the running totals.
func (in *Ingester) Stats() Stats {
	return Stats{
		Consumed:     in.consumed.Load(),
		Bytes:        in.bytes.Load(),
		Inserted:     in.inserted.Load(),
		Duplicates:   in.dups.Load(),
		StoredTwice:  in.dupsFound.Load(),
		DeadLettered: in.dead.Load(),
		Flushes:      in.flushes.Load(),
	}
}

// Ready reports nil while Run is consuming and the last flush succeeded.
func (in *Ingester) Ready() error {
	if !in.running.Load() {
		return errors.New("ingest is not running")
	}
	if p := in.flushErr.Load(); p != nil {
		return fmt.Errorf("ingest is retrying a failed flush: %w", *p)
	}
	return nil
}

// Run consumes until ctx is done, then stores and commits what it holds and
// closes the Kafka client. It returns nil after a clean stop; ClickHouse or
// Kafka outages make it wait and retry, not return.
func (in *Ingester) Run(ctx context.Context) error {
	defer func() {
		in.abandonTail()
		// Leaving the group is a rebalance: unblock it, or Close waits forever.
		// Nothing uncommitted is committed here: auto-commit is off.
		in.client.AllowRebalance()
		in.client.Close()
	}()
	if err := in.openDLQ(ctx); err != nil {
		return err
	}
	defer in.dlqClient.Close()
	if err := in.warmRecent(ctx); err != nil {
		return err
	}
	in.running.Store(true)
	defer in.running.Store(false)
	resolving := make(chan struct{})
	resolveCtx, stopResolving := context.WithCancel(ctx)
	go func() { defer close(resolving); in.housekeeping(resolveCtx, resolveInterval) }()
	defer func() { stopResolving(); <-resolving }()
	in.log.Info("ingest running", "topic", in.cfg.Topic, "group", in.cfg.Group, "database", in.cfg.Database)

	for {
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if in.pending() > 0 {
			pollCtx, cancel = context.WithDeadline(ctx, in.started.Add(in.cfg.FlushInterval))
		}
		fetches := in.client.PollRecords(pollCtx, in.cfg.BatchSize-in.rows.len())
		cancel()
		if fetches.IsClientClosed() {
			return nil
		}
		recreated := false
		for _, fe := range fetches.Errors() {
			switch {
			case errors.Is(fe.Err, kerr.UnknownTopicID) && fe.Topic == in.cfg.Topic:
				recreated = true
			case !errors.Is(fe.Err, context.Canceled) && !errors.Is(fe.Err, context.DeadlineExceeded):
				in.log.Warn("kafka fetch", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
			}
		}
		now := time.Now()
		for it := fetches.RecordIter(); !it.Done(); {
			if err := in.add(ctx, it.Next(), now); err != nil {
				return in.stop(err)
			}
		}
		in.addValid()
		fetches.EachPartition(in.metrics.observeLag)
		if ctx.Err() != nil {
			return in.stop(nil)
		}
		due := in.pending() > 0 && (in.rows.len() >= in.cfg.BatchSize || in.rows.bytes+in.dlqBytes >= in.cfg.BatchBytes ||
			time.Since(in.started) >= in.cfg.FlushInterval)
		if due {
			if err := in.flush(ctx); err != nil {
				return in.stop(err)
			}
		}
		if recreated {
			if err := in.rejoinRecreated(ctx); err != nil {
				return in.stop(err)
			}
		}
		if in.pending() == 0 {
			in.client.AllowRebalance()
		}
	}
}

// rejoinRecreated handles a topic that was deleted and created again under
// the same name. franz-go keeps consuming the first instance and fails the
// new one with UNKNOWN_TOPIC_ID until the topic is purged from the client
// and added back, so: store what the batch holds, then purge and re-add.
// The broker dropped the group's offsets with the old topic, so the new one
// is read from its start.
func (in *Ingester) rejoinRecreated(ctx context.Context) error {
	in.log.Warn("the topic was deleted and recreated; reading the new one from its start", "topic", in.cfg.Topic)
	if in.pending() > 0 {
		if err := in.flush(ctx); err != nil {
			return err
		}
	}
	if err := in.finishTail(ctx); err != nil {
		return err
	}
	in.client.AllowRebalance()
	in.client.PurgeTopicsFromClient(in.cfg.Topic)
	in.client.AddConsumeTopics(in.cfg.Topic)
	return nil
}

// stop ends Run: on a clean stop (err nil, or ctx cancelled) the batch in hand
// is still stored and committed, under a fresh context because ctx is already
// done and abandoning the batch would only make the next owner redo it.
func (in *Ingester) stop(err error) error {
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if in.pending() > 0 {
		if ferr := in.flush(ctx); ferr != nil {
			return fmt.Errorf("final flush: %w", ferr)
		}
	}
	if ferr := in.finishTail(ctx); ferr != nil {
		return fmt.Errorf("final commit: %w", ferr)
	}
	return nil
}

func (in *Ingester) pending() int { return len(in.last) }

// add validates one record and puts it in the batch (see addValid), the
// dead-letter list, or (a duplicate) nowhere; its offset is committed with
// the batch either way.
func (in *Ingester) add(ctx context.Context, r *kgo.Record, now time.Time) error {
	if err := in.resume(ctx, r); err != nil {
		return err
	}
	in.consumed.Add(1)
	in.bytes.Add(int64(len(r.Value)))
	if in.pending() == 0 {
		in.started = now
	}
	// From here on the record is handled, so its offset may be committed.
	in.last[r.Partition] = r
	if len(r.Value) > in.cfg.MaxEventBytes {
		in.deadLetter(r, deadTooLarge, fmt.Sprintf("record is %d bytes, over the maximum event size of %d bytes", len(r.Value), in.cfg.MaxEventBytes))
		return nil
	}
	ev, err := in.parser.Parse(r.Value)
	if err != nil {
		in.deadLetter(r, deadInvalid, reasonOf(err))
		return nil
	}
	in.valid, in.validAt = append(in.valid, validRecord{ev, r}), now
	in.hashes = append(in.hashes, recent.Hash(ev.ID))
	if len(in.valid) == validGroup {
		in.addValid()
	}
	return nil
}

// validRecord is a valid record waiting for addValid.
type validRecord struct {
	ev schema.Event
	r  *kgo.Record
}

// validGroup is how many valid records addValid takes at once.
const validGroup = 32

// addValid puts the valid records add gathered in the batch, or drops
// those the recent set has seen. The set's slots for the whole group are
// read first (recent.IDs.Prefetch): one by one, each look-up waited for
// two cache misses, 14% of ingest's CPU in a profile of make bench. Run
// adds each poll's records through it, and flush first adds any left.
func (in *Ingester) addValid() {
	in.recent.Prefetch(in.hashes)
	for i, h := range in.hashes {
		v := &in.valid[i]
		if !in.recent.AddHash(h) {
			in.dups.Add(1)
			continue
		}
		in.rows.add(&v.ev, v.r, in.validAt)
	}
	clear(in.valid) // the records are the batch's now, or dropped
	in.valid, in.hashes = in.valid[:0], in.hashes[:0]
}

func (in *Ingester) deadLetter(r *kgo.Record, kind deadKind, reason string) {
	d := deadLetter(in.cfg.Topic+".dlq", r, reason, in.dlqLimit)
	in.dlq = append(in.dlq, d)
	in.dlqKinds = append(in.dlqKinds, kind)
	in.dlqBytes += len(d.Key) + len(d.Value)
}

// resume runs on the first record of a partition after it was assigned to
// us. Rows from that record's offset on may already be stored: this process
// or the partition's previous owner inserted them and stopped before
// committing. Their eventIds go into the recent set, so the redelivered
// copies are dropped as duplicates, and they are checked for copies stored
// by others, as after an insert.
//
// Nothing is skipped by its offset alone: offsets start again at 0 when a
// topic is recreated or moved to another cluster, and a row that was never
// stored (a crash between two inserts) is not in the table to be found. Only
// eventIds that are stored are skipped, which is what dedup means anyway.
// The window is bounded: copies beyond it are left to ReplacingMergeTree.
func (in *Ingester) resume(ctx context.Context, r *kgo.Record) error {
	in.resumedMu.Lock()
	done := in.resumed[r.Partition]
	in.resumedMu.Unlock()
	if done {
		return nil
	}
	window := int64(in.resumeWindow())
	var ids, services []string
	var createdAt []int64
	err := in.retry(ctx, "read stored rows of a resumed partition", func(ctx context.Context) error {
		ids, services, createdAt = ids[:0], services[:0], createdAt[:0]
		rows, err := in.conn.Query(limited(ctx), "SELECT event_id, service, created_at FROM `"+in.cfg.Database+
			"`.events WHERE kafka_topic = ? AND kafka_partition = ? AND kafka_offset >= ? AND kafka_offset < ? LIMIT ?",
			r.Topic, r.Partition, r.Offset, r.Offset+window, window)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, service string
			var at int64
			if err := rows.Scan(&id, &service, &at); err != nil {
				return err
			}
			ids, services, createdAt = append(ids, id), append(services, service), append(createdAt, at)
		}
		return rows.Err()
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		in.recent.Add(id)
	}
	// The previous owner may have stopped between storing these rows and
	// looking for copies of them.
	if err := in.recordDuplicates(ctx, ids, services, createdAt); err != nil {
		return err
	}
	loaded := len(ids)
	in.resumedMu.Lock()
	in.resumed[r.Partition] = true
	in.resumedMu.Unlock()
	if loaded > 0 {
		in.log.Debug("partition resumes over stored rows", "partition", r.Partition, "offset", r.Offset, "stored", loaded)
	}
	return nil
}

// resumeWindow is how many offsets after a resumed partition's first record
// are looked up in the table: a few batches, what a crash or a rebalance can
// leave stored but uncommitted, and at most half the recent set.
func (in *Ingester) resumeWindow() int {
	return min(4*in.cfg.BatchSize, max(in.cfg.RecentIDs/2, 1))
}

// warmRecent loads the eventIds stored in the last hour, so producer retries
// of events stored before a restart are recognised.
func (in *Ingester) warmRecent(ctx context.Context) error {
	return in.retry(ctx, "load recent event ids", func(ctx context.Context) error {
		rows, err := in.conn.Query(limited(ctx), "SELECT event_id FROM `"+in.cfg.Database+
			"`.events WHERE ingested_at >= now() - 3600 LIMIT ?", in.cfg.RecentIDs)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			in.recent.Add(id)
		}
		return rows.Err()
	})
}

// flush stores the batch month by month (and on a cluster shard by shard),
// dead-letters the bad records, then
// commits the offsets of everything the batch covered. A ClickHouse or Kafka
// outage is retried until it ends or ctx does; rows ClickHouse refuses for
// good are dead-lettered. Offsets are never committed past what is stored or
// dead-lettered, and a flush cut short by ctx resumes where it stopped, so
// nothing is inserted twice by the final flush.
func (in *Ingester) flush(ctx context.Context) error {
	in.addValid()
	start, rows := time.Now(), in.rows.len()
	if in.todo == nil && in.rows.len() > 0 {
		in.todo = in.rows.byMonth()
		if len(in.shards) > 1 {
			var parts []*columns
			for _, p := range in.todo {
				parts = append(parts, p.byShard(in.slots)...)
			}
			in.todo = parts
		}
	}
	for len(in.todo) > 0 {
		part := in.todo[0]
		err := in.retry(ctx, "insert events", func(ctx context.Context) error {
			if in.testHooks.beforeInsert != nil {
				if err := in.testHooks.beforeInsert(part); err != nil {
					return permanentIf(err)
				}
			}
			start := time.Now()
			target := in.shards[part.shard]
			err := part.insert(ctx, target.conn, target.insert)
			if err == nil {
				in.metrics.insertSeconds.Observe(time.Since(start).Seconds())
			}
			return permanentIf(err)
		})
		var p permanent
		switch {
		case errors.As(err, &p) && part.len() > 1:
			// Find the rows ClickHouse refuses by halving: the good ones are
			// stored, the refused ones dead-lettered.
			left, right := part.halves()
			in.todo = append([]*columns{left, right}, in.todo[1:]...)
			continue
		case errors.As(err, &p):
			r := part.record(0)
			in.log.Warn("clickhouse refuses a row; dead-lettering it", "source", source(r), "err", p.err)
			in.deadLetter(r, deadRefused, "clickhouse refused the row: "+p.err.Error())
		case err != nil:
			return err
		default:
			in.inserted.Add(int64(part.len()))
			in.stored.add(part)
			in.touched.add(part.createdAt)
			if in.testHooks.afterPart != nil {
				if err := in.testHooks.afterPart(); err != nil {
					return err
				}
			}
		}
		in.todo = in.todo[1:]
	}
	in.todo = nil
	in.rows.reset()
	dead := len(in.dlq)
	if len(in.dlq) > 0 {
		if err := in.sendDeadLetters(ctx); err != nil {
			return err
		}
		if err := in.retry(ctx, "log dead letters", in.logDeadLetters); err != nil {
			return err
		}
		in.dead.Add(int64(len(in.dlq)))
		for _, k := range in.dlqKinds {
			in.deadBy[k].Add(1)
		}
		clear(in.dlq)
		in.dlq, in.dlqKinds, in.dlqBytes = in.dlq[:0], in.dlqKinds[:0], 0
	}
	if in.testHooks.afterInsert != nil {
		if err := in.testHooks.afterInsert(); err != nil {
			return err
		}
	}
	// The previous batch's tail ends first: offsets are committed in order.
	if err := in.finishTail(ctx); err != nil {
		return err
	}
	t := &tail{stored: in.stored, recs: make([]*kgo.Record, 0, len(in.last))}
	for _, r := range in.last {
		t.recs = append(t.recs, r)
	}
	in.startTail(ctx, t)
	in.stored = stored{}
	clear(in.last)
	in.log.Debug("batch stored", "rows", rows, "dead_lettered", dead, "partitions", len(t.recs), "took", time.Since(start))
	return nil
}

// stored is what a batch's inserts stored: the rows to look for copies of.
type stored struct {
	ids, services []string // services: each once
	createdAt     []int64
}

func (s *stored) add(c *columns) {
	s.ids = append(s.ids, c.eventID...)
	s.createdAt = append(s.createdAt, c.createdAt...)
	for _, svc := range c.service {
		if !slices.Contains(s.services, svc) {
			s.services = append(s.services, svc)
		}
	}
}

// tail is the end of a flush, run while the next batch is read: the look-up
// for copies of the rows the batch stored (see recordDuplicates), then the
// commit of its offsets. Tails run one at a time, in batch order; one that
// failed because its context ended is run again by the next finishTail. A
// rebalance waits for the tail (partitionsMoved), as a commit in
// OnPartitionsRevoked does.
type tail struct {
	stored stored
	looked bool          // the look-up for copies is done
	recs   []*kgo.Record // the batch's newest record per partition
	done   chan struct{}
	err    error // set before done is closed
}

func (in *Ingester) startTail(ctx context.Context, t *tail) {
	t.done = make(chan struct{})
	in.tailMu.Lock()
	in.tail = t
	in.tailMu.Unlock()
	go func() {
		defer close(t.done)
		t.err = in.runTail(ctx, t)
	}()
}

func (in *Ingester) runTail(ctx context.Context, t *tail) error {
	if !t.looked {
		if err := in.recordDuplicates(ctx, t.stored.ids, t.stored.services, t.stored.createdAt); err != nil {
			return err
		}
		t.looked = true
	}
	if err := in.client.CommitRecords(ctx, t.recs...); err != nil {
		if ctx.Err() != nil {
			// Cut short by a stop: the final finishTail commits again.
			return err
		}
		// The rows are stored; whoever reads these partitions next finds them
		// in the table (resume), so this is not a loss.
		in.log.Warn("commit offsets", "err", err)
	}
	in.flushes.Add(1)
	return nil
}

// finishTail waits for the tail in flight, if any, and runs it again under
// ctx if it failed.
func (in *Ingester) finishTail(ctx context.Context) error {
	in.tailMu.Lock()
	defer in.tailMu.Unlock()
	t := in.tail
	if t == nil {
		return nil
	}
	<-t.done
	if t.err != nil {
		if t.err = in.runTail(ctx, t); t.err != nil {
			return t.err
		}
	}
	in.tail = nil
	return nil
}

// abandonTail waits for the tail in flight to return and drops it: Run is
// ending without a clean stop, as a crash would, so what it did not commit
// is read again by the partitions' next owner.
func (in *Ingester) abandonTail() {
	in.tailMu.Lock()
	defer in.tailMu.Unlock()
	if in.tail != nil {
		<-in.tail.done
		in.tail = nil
	}
}

// permanentIf marks ClickHouse refusing the rows themselves as permanent.
func permanentIf(err error) error {
	if err != nil && rowsRefused(err) {
		return permanent{err}
	}
	return err
}

// retry runs op until it succeeds or ctx ends, backing off with jitter
// between attempts and reporting the failure through Ready meanwhile.
func (in *Ingester) retry(ctx context.Context, what string, op func(context.Context) error) error {
	wait := in.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		var p permanent
		if errors.As(err, &p) {
			return err
		}
		if err == nil {
			if attempt > 1 {
				in.log.Info(what+" recovered", "attempts", attempt)
			}
			in.flushErr.Store(nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = fmt.Errorf("%s: %w", what, err)
		in.flushErr.Store(&err)
		in.log.Warn("retrying", "op", what, "attempt", attempt, "wait", wait, "err", err)
		jitter := time.Duration(rand.Int64N(int64(wait)/5 + 1))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait + jitter):
		}
		wait = min(2*wait, in.cfg.RetryMax)
	}
}

// limited bounds a statement ingest runs outside an insert (start-up and
// resume scans): a table grown past what the server can scan quickly must
// fail and be retried, not hold a partition for ever.
func limited(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"max_execution_time": 60,
	}))
}
