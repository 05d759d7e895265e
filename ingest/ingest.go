package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/schema"
)

// Stats are running totals since the Ingester started.
type Stats struct {
	Consumed     int64 // records read from Kafka
	Inserted     int64 // rows ClickHouse acknowledged
	Duplicates   int64 // records skipped as already stored
	DeadLettered int64 // records sent to the dead-letter topic
	Flushes      int64 // successful batch flushes
}

// Ingester consumes one topic into the events table. Create it with New and
// run it with Run; it is single-use.
type Ingester struct {
	cfg    Config
	conn   Inserter
	client *kgo.Client
	log    *slog.Logger
	query  string

	parser  schema.Parser
	rows    columns
	dlq     []*kgo.Record
	last    map[int32]*kgo.Record // newest record per partition in the batch
	started time.Time             // when the batch's first record arrived
	recent  *recentIDs

	// floors holds, per partition, the highest offset already stored in
	// ClickHouse; records at or below it are redeliveries of stored rows. It is
	// reset when partitions move, from the client's rebalance callbacks.
	floorsMu sync.Mutex
	floors   map[int32]int64

	running   atomic.Bool
	flushErr  atomic.Pointer[error]
	consumed  atomic.Int64
	inserted  atomic.Int64
	dups      atomic.Int64
	dead      atomic.Int64
	flushes   atomic.Int64
	testHooks testHooks
}

// testHooks let tests stop the loop at the points a crash would.
type testHooks struct {
	// afterInsert runs once ClickHouse acknowledged a batch, before offsets are
	// committed; an error ends Run without committing, as a crash would.
	afterInsert func() error
}

// New creates an Ingester. extra kgo options are appended to the client's
// (TLS, SASL, a logger).
func New(cfg Config, conn Inserter, log *slog.Logger, extra ...kgo.Opt) (*Ingester, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingest config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in := &Ingester{
		cfg:    cfg,
		conn:   conn,
		log:    log,
		query:  insertQuery(cfg.Database),
		last:   map[int32]*kgo.Record{},
		recent: newRecentIDs(cfg.RecentIDs),
		floors: map[int32]int64{},
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.DisableAutoCommit(),
		// Partitions stay ours from the poll that returned their records until
		// their batch is stored and committed (AllowRebalance).
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(in.partitionsMoved),
		kgo.OnPartitionsLost(in.partitionsMoved),
		kgo.FetchMaxBytes(16 << 20),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	}
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	client, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	in.client = client
	return in, nil
}

func (in *Ingester) partitionsMoved(_ context.Context, _ *kgo.Client, _ map[string][]int32) {
	in.floorsMu.Lock()
	clear(in.floors)
	in.floorsMu.Unlock()
}

// Stats returns the running totals.
func (in *Ingester) Stats() Stats {
	return Stats{
		Consumed:     in.consumed.Load(),
		Inserted:     in.inserted.Load(),
		Duplicates:   in.dups.Load(),
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
		// Leaving the group is a rebalance: unblock it, or Close waits forever.
		// Nothing uncommitted is committed here: auto-commit is off.
		in.client.AllowRebalance()
		in.client.Close()
	}()
	in.ensureDLQTopic(ctx)
	if err := in.warmRecent(ctx); err != nil {
		return err
	}
	in.running.Store(true)
	defer in.running.Store(false)
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
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.Canceled) && !errors.Is(fe.Err, context.DeadlineExceeded) {
				in.log.Warn("kafka fetch", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
			}
		}
		now := time.Now()
		for it := fetches.RecordIter(); !it.Done(); {
			if err := in.add(ctx, it.Next(), now); err != nil {
				return in.stop(err)
			}
		}
		if ctx.Err() != nil {
			return in.stop(nil)
		}
		due := in.pending() > 0 && (in.rows.len() >= in.cfg.BatchSize || time.Since(in.started) >= in.cfg.FlushInterval)
		if due {
			if err := in.flush(ctx); err != nil {
				return in.stop(err)
			}
		}
		if in.pending() == 0 {
			in.client.AllowRebalance()
		}
	}
}

// stop ends Run: on a clean stop (err nil, or ctx cancelled) the batch in hand
// is still stored and committed, under a fresh context because ctx is already
// done and abandoning the batch would only make the next owner redo it.
func (in *Ingester) stop(err error) error {
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if in.pending() == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ferr := in.flush(ctx); ferr != nil {
		return fmt.Errorf("final flush: %w", ferr)
	}
	return nil
}

func (in *Ingester) pending() int { return len(in.last) }

// add validates one record and puts it in the batch, the dead-letter list, or
// (a duplicate) nowhere; its offset is committed with the batch either way.
func (in *Ingester) add(ctx context.Context, r *kgo.Record, now time.Time) error {
	floor, err := in.floor(ctx, r.Partition)
	if err != nil {
		return err
	}
	in.consumed.Add(1)
	if in.pending() == 0 {
		in.started = now
	}
	// From here on the record is handled, so its offset may be committed.
	in.last[r.Partition] = r
	if r.Offset <= floor {
		in.dups.Add(1)
		return nil
	}
	ev, err := in.parser.Parse(r.Value)
	if err != nil {
		in.dlq = append(in.dlq, deadLetter(in.cfg.Topic+".dlq", r, err))
		return nil
	}
	if !in.recent.add(ev.ID) {
		in.dups.Add(1)
		return nil
	}
	in.rows.add(&ev, r.Topic, r.Partition, r.Offset, now)
	return nil
}

func deadLetter(topic string, r *kgo.Record, err error) *kgo.Record {
	reason := err.Error()
	var ie *schema.InvalidError
	if errors.As(err, &ie) {
		reason = ie.Reason
	}
	headers := append(r.Headers[:len(r.Headers):len(r.Headers)],
		kgo.RecordHeader{Key: "error", Value: []byte(reason)},
		kgo.RecordHeader{Key: "source", Value: fmt.Appendf(nil, "%s/%d/%d", r.Topic, r.Partition, r.Offset)},
	)
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: headers, Timestamp: r.Timestamp}
}

// floor returns the highest offset of partition p already in ClickHouse, or
// -1, reading it once per assignment.
func (in *Ingester) floor(ctx context.Context, p int32) (int64, error) {
	in.floorsMu.Lock()
	f, ok := in.floors[p]
	in.floorsMu.Unlock()
	if ok {
		return f, nil
	}
	err := in.retry(ctx, "read stored offsets", func(ctx context.Context) error {
		rows, err := in.conn.Query(ctx, "SELECT count(), max(kafka_offset) FROM `"+in.cfg.Database+
			"`.events WHERE kafka_topic = ? AND kafka_partition = ?", in.cfg.Topic, p)
		if err != nil {
			return err
		}
		defer rows.Close()
		var n uint64
		var top int64
		if rows.Next() {
			if err := rows.Scan(&n, &top); err != nil {
				return err
			}
		}
		f = -1
		if n > 0 {
			f = top
		}
		return rows.Err()
	})
	if err != nil {
		return 0, err
	}
	in.floorsMu.Lock()
	in.floors[p] = f
	in.floorsMu.Unlock()
	if f >= 0 {
		in.log.Debug("partition resumes after stored offset", "partition", p, "offset", f)
	}
	return f, nil
}

// warmRecent loads the eventIds stored in the last hour, so producer retries
// of events stored before a restart are recognised.
func (in *Ingester) warmRecent(ctx context.Context) error {
	return in.retry(ctx, "load recent event ids", func(ctx context.Context) error {
		rows, err := in.conn.Query(ctx, "SELECT event_id FROM `"+in.cfg.Database+
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
			in.recent.add(id)
		}
		return rows.Err()
	})
}

// flush stores the batch, dead-letters the bad records, then commits the
// offsets of everything the batch covered. A ClickHouse or Kafka failure is
// retried until it succeeds or ctx ends; offsets are never committed past
// what is stored.
func (in *Ingester) flush(ctx context.Context) error {
	n := in.rows.len()
	if n > 0 {
		if err := in.retry(ctx, "insert events", func(ctx context.Context) error {
			return in.rows.insert(ctx, in.conn, in.query)
		}); err != nil {
			return err
		}
	}
	if len(in.dlq) > 0 {
		if err := in.retry(ctx, "produce to dead-letter topic", func(ctx context.Context) error {
			return in.client.ProduceSync(ctx, in.dlq...).FirstErr()
		}); err != nil {
			return err
		}
	}
	if in.testHooks.afterInsert != nil {
		if err := in.testHooks.afterInsert(); err != nil {
			return err
		}
	}
	recs := make([]*kgo.Record, 0, len(in.last))
	for _, r := range in.last {
		recs = append(recs, r)
	}
	if err := in.client.CommitRecords(ctx, recs...); err != nil {
		// The rows are stored; whoever reads these partitions next skips them by
		// their stored offsets, so this is not a loss.
		in.log.Warn("commit offsets", "err", err)
	}
	in.inserted.Add(int64(n))
	in.dead.Add(int64(len(in.dlq)))
	in.flushes.Add(1)
	in.rows.reset()
	clear(in.dlq)
	in.dlq = in.dlq[:0]
	clear(in.last)
	return nil
}

// retry runs op until it succeeds or ctx ends, backing off with jitter
// between attempts and reporting the failure through Ready meanwhile.
func (in *Ingester) retry(ctx context.Context, what string, op func(context.Context) error) error {
	wait := in.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := op(ctx)
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

// ensureDLQTopic creates the dead-letter topic if the cluster lacks it, with
// the broker's default partitions and replication. Failing is not fatal: the
// cluster may auto-create topics or forbid us to create them.
func (in *Ingester) ensureDLQTopic(ctx context.Context) {
	adm := kadm.NewClient(in.client)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := adm.CreateTopic(ctx, -1, -1, nil, in.cfg.Topic+".dlq")
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		in.log.Warn("create dead-letter topic", "topic", in.cfg.Topic+".dlq", "err", err)
	}
}
