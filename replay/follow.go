package replay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/internal/recent"
	"github.com/dodev/hindsight/schema"
)

// A follow is a replay that goes on after its range: once it has
// delivered every matching event stored when it started, it reads new
// events from the Kafka topic ingest consumes, in the order ingest reads
// them (partition by partition), so an event that arrives late, its
// createdAt older than events already sent, is delivered too.
//
// The hand-off: when the job starts it takes ingest's committed offsets.
// Ingest commits an offset only once every record before it is stored, so
// the range (read from ClickHouse after that) holds every event before
// them, and the follow reads from them on. Events stored between those
// offsets and the range's end may be delivered twice; receivers dedupe on
// webhook-id. The job saves its offsets as its pages settle (see flight), so
// a successor resumes there, repeating at most the pages it had in flight.

// KafkaSource is where follows read: ingest's brokers, topic and consumer
// group, and the largest record ingest stores (0: its default).
type KafkaSource struct {
	Brokers       []string
	Topic, Group  string
	MaxEventBytes int
}

// followFrom returns the offsets a follow starts from: ingest's committed
// offset of each partition of the topic, or its start where ingest has
// committed none (it has stored nothing of it).
func (w *Worker) followFrom(ctx context.Context) (map[int32]int64, error) {
	src := w.cfg.Kafka
	cl, err := kgo.NewClient(kgo.SeedBrokers(src.Brokers...))
	if err != nil {
		return nil, fmt.Errorf("follow: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, src.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("follow: partitions of %s: %w", src.Topic, err)
	}
	// A group that never committed has nothing stored: Kafka answers with
	// no offsets, kfake with GROUP_ID_NOT_FOUND.
	committed, err := adm.FetchOffsets(ctx, src.Group)
	if err != nil && !errors.Is(err, kadm.ErrEmpty) && !errors.Is(err, kerr.GroupIDNotFound) {
		return nil, fmt.Errorf("follow: offsets of group %s: %w", src.Group, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		out[o.Partition] = 0
		if c, ok := committed.Lookup(src.Topic, o.Partition); ok && c.Err == nil && c.At >= 0 {
			out[o.Partition] = c.At
		}
	})
	return out, nil
}

// follow delivers, after the range, each matching event read from Kafka
// from job.FollowOffsets on, until ctx ends (a cancel, the endpoint's
// disabling, the lease lost, the worker stopping) or the endpoint is gone.
func (w *Worker) follow(ctx context.Context, job *Job, patterns []schema.Pattern, f *flight) error {
	if job.Status != StatusFollowing {
		// The range is done: its cursor goes past every createdAt, so the
		// job, resumed by another worker or after a pause, follows at once.
		job.Status, job.CursorAt, job.CursorID = StatusFollowing, schema.MaxCreatedAt, ""
		if err := w.store.SaveJob(ctx, *job); err != nil {
			return err
		}
		w.log.Info("replay following", "replay", job.ID, "endpoint", job.EndpointID, "delivered", job.Delivered)
	}
	filters, err := schema.FiltersOf(job.Filters)
	if err != nil {
		return w.finish(ctx, *job, StatusFailed, "bad filters: "+err.Error())
	}
	offsets := map[int32]kgo.Offset{}
	for p, at := range job.FollowOffsets {
		offsets[p] = kgo.NewOffset().At(at)
	}
	src := w.cfg.Kafka
	cl, err := kgo.NewClient(kgo.SeedBrokers(src.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{src.Topic: offsets}),
		kgo.FetchMaxWait(time.Second))
	if err != nil {
		return fmt.Errorf("follow: kafka client: %w", err)
	}
	defer cl.Close()
	var parser schema.Parser
	seen := recent.New(followRecent)
	since := job.Since.UnixMilli()
	maxBytes := cmp.Or(src.MaxEventBytes, schema.DefaultMaxEventBytes)
	var ep Endpoint
	var read time.Time // when ep was read
	for {
		// With pages in flight, come back soon to count them as they settle.
		poll, cancel := ctx, context.CancelFunc(func() {})
		if f.inFlight() {
			poll, cancel = context.WithTimeout(ctx, followCommitEvery)
		}
		fetches := cl.PollRecords(poll, w.cfg.PageSize)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				w.log.Warn("follow: kafka fetch", "replay", job.ID, "topic", topic, "partition", p, "err", err)
			}
		})
		var page []event
		var last *kgo.Record
		next := map[int32]int64{} // the offsets once this page is delivered
		behind := false
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if n := len(p.Records); n > 0 && p.Records[n-1].Offset+1 < p.HighWatermark {
				behind = true
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			next[r.Partition], last = r.Offset+1, r
			// What ingest would not store is not delivered: too large,
			// invalid, a copy of an event just read, or not this job's.
			if len(r.Value) > maxBytes {
				return
			}
			ev, err := parser.Parse(r.Value)
			if err != nil || ev.CreatedAt < since || !job.Livemode.Match(ev.Livemode) || !schema.MatchAny(patterns, ev.Type) ||
				!filters.Match(&ev) || !seen.Add(ev.ID) {
				return
			}
			page = append(page, event{id: ev.ID, typ: ev.Type, createdAt: ev.CreatedAt, raw: r.Value})
		})
		if last == nil {
			// Nothing new: count what settled meanwhile.
			if err := w.commit(ctx, job, f); err != nil {
				return err
			}
			continue
		}
		// The endpoint's URL, secrets and state, read at most once a second
		// (watch ends ctx at once when it is disabled).
		if time.Since(read) >= time.Second {
			if ep, err = w.endpointOf(ctx, *job); errors.Is(err, errGone) {
				return w.end(ctx, job, f, StatusFailed, "endpoint "+job.EndpointID+" was deleted")
			} else if err != nil {
				return err
			}
			read = time.Now()
		}
		var lag time.Duration
		if behind {
			lag = max(time.Since(last.Timestamp), 0)
		}
		// Only a settled page moves the offsets: a job stopped or paused
		// before then reads it again.
		if err := w.hand(ctx, job, f, ep, page, func(j *Job) { maps.Copy(j.FollowOffsets, next); j.Lag = lag }); err != nil {
			return err
		}
		if err := w.commit(ctx, job, f); err != nil {
			return err
		}
	}
}

// followCommitEvery is how soon a follow with pages in flight counts those
// that settled, when no new records come.
const followCommitEvery = 100 * time.Millisecond

// followRecent is how many recent eventIds a follow remembers, to deliver a
// producer's retry once.
const followRecent = 100_000
