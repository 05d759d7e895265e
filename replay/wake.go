package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Wakes. A worker looks for new replays every WorkerConfig.Poll, and a
// worker in the API's process is also woken when its API creates one
// (API.OnCreate, Worker.Wake). Workers in other processes hear of a new
// replay through Kafka when the API has an Announcer: it produces each new
// replay's id to the wake topic, and every worker listening there
// (WorkerConfig.Wakes) looks at once. Polls go on: a wake only makes a look
// sooner, so a wake lost (Kafka down, the topic missing) costs at most a
// poll. A listening worker creates the topic where it is missing.

// DefaultWakeTopic is the wake topic's name unless set. One partition is
// enough; its records are a replay id each, worth nothing after a second.
const DefaultWakeTopic = "hindsight.replays"

// WakeSource is where a worker hears of new replays.
type WakeSource struct {
	Brokers []string
	Topic   string
}

// Announcer tells workers in other processes of new replays.
type Announcer struct {
	cl  *kgo.Client
	log *slog.Logger
}

// NewAnnouncer connects to the brokers lazily: a broker that is down costs
// announcements, never a request.
func NewAnnouncer(brokers []string, topic string, log *slog.Logger) (*Announcer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
		kgo.MaxBufferedRecords(256), kgo.RecordDeliveryTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("replay announcer: %w", err)
	}
	return &Announcer{cl: cl, log: log}, nil
}

// Announce produces id to the wake topic without waiting; one that cannot
// be buffered or delivered is logged and dropped.
func (a *Announcer) Announce(id string) {
	a.cl.TryProduce(context.Background(), &kgo.Record{Value: []byte(id)}, func(_ *kgo.Record, err error) {
		if err != nil {
			a.log.Warn("announce a new replay to the workers (they will find it at their next poll)", "replay", id, "err", err)
		}
	})
}

// Close sends what is buffered, for a second at most, and disconnects.
func (a *Announcer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = a.cl.Flush(ctx)
	a.cl.Close()
}

// listen wakes the worker for each record produced to its wake topic since
// since (by the record's time, so one produced while the listener was still
// finding its place counts too), until ctx ends.
func (w *Worker) listen(ctx context.Context, src *WakeSource, since time.Time) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(src.Brokers...), kgo.ConsumeTopics(src.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(since.UnixMilli())), kgo.AllowAutoTopicCreation())
	if err != nil {
		w.log.Warn("listen for new replays (polling only)", "err", err)
		return
	}
	defer cl.Close()
	w.createWakeTopic(ctx, cl, src.Topic)
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		if fetches.NumRecords() > 0 {
			w.Wake()
			continue
		}
		// An error alone (the topic not there yet, a broker down): the polls
		// go on meanwhile, so wait a little rather than ask again at once.
		fetches.EachError(func(topic string, p int32, err error) {
			w.log.Debug("listen for new replays", "topic", topic, "partition", p, "err", err)
		})
		if sleep(ctx, time.Second) != nil {
			return
		}
	}
}

// createWakeTopic creates the wake topic, one partition, where it is
// missing: a broker that does not create topics as they are first used
// would refuse every announcement. Failing (not allowed to, a broker down)
// costs only wakes.
func (w *Worker) createWakeTopic(ctx context.Context, cl *kgo.Client, topic string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, topic)
	switch {
	case err == nil:
		w.log.Info("wake topic created", "topic", topic)
	case !errors.Is(err, kerr.TopicAlreadyExists):
		w.log.Warn("create the wake topic (new replays wait for the next poll until it exists)", "topic", topic, "err", err)
	}
}
