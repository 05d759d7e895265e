package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/schema"
)

// Dead letters are records that are not valid events, that are larger than
// Config.MaxEventBytes, or that ClickHouse refused for good. Each is produced
// to "<topic>.dlq" with its original key, value and headers plus:
//
//	error      why it was refused
//	source     topic/partition/offset it was read from
//	truncated  the original value's size, when the value had to be cut to fit
//	           the dead-letter topic's max.message.bytes
//
// When the dead-letter topic cannot take them (it cannot be created, we may
// not write to it), they go to ClickHouse's dead_letters table instead, so
// that one bad record never stops ingest.

// defaultDLQLimit is what a dead-letter record may weigh when the topic's
// max.message.bytes cannot be read: franz-go's default producer batch limit,
// below Kafka's default max.message.bytes (1,048,588).
const defaultDLQLimit = 1_000_012

// dlqAttempt bounds one attempt to produce a batch's dead letters.
const dlqAttempt = 30 * time.Second

// dlqOverhead is room left in a produce batch for the batch and record
// framing around a record's key, value and headers.
const dlqOverhead = 512

// deadLetter builds the dead-letter record of r, cutting the value (and, if
// it must, the key) so the record fits within limit bytes.
func deadLetter(topic string, r *kgo.Record, reason string, limit int) *kgo.Record {
	headers := append(r.Headers[:len(r.Headers):len(r.Headers)],
		kgo.RecordHeader{Key: "error", Value: []byte(reason)},
		kgo.RecordHeader{Key: "source", Value: []byte(source(r))},
	)
	key, value := r.Key, r.Value
	budget := limit - dlqOverhead - 64 // the truncated header itself
	for _, h := range headers {
		budget -= len(h.Key) + len(h.Value) + 10
	}
	if len(key)+len(value) > budget {
		headers = append(headers, kgo.RecordHeader{Key: "truncated", Value: strconv.AppendInt(nil, int64(len(value)), 10)})
		budget = max(budget, 0)
		key = key[:min(len(key), budget/4)]
		value = value[:min(len(value), budget-len(key))]
	}
	return &kgo.Record{Topic: topic, Key: key, Value: value, Headers: headers, Timestamp: r.Timestamp}
}

// source names where a record was read: topic/partition/offset.
func source(r *kgo.Record) string { return fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset) }

func reasonOf(err error) string {
	var ie *schema.InvalidError
	if errors.As(err, &ie) {
		return ie.Reason
	}
	return err.Error()
}

// openDLQ makes sure the dead-letter topic exists, reads how large a record
// it accepts, and opens a producer sized to that. Failing to create the topic
// or read its limit is not fatal: the cluster may auto-create topics or
// forbid us to create them, and unusable topics fall back to ClickHouse.
func (in *Ingester) openDLQ(ctx context.Context) error {
	topic := in.cfg.Topic + ".dlq"
	adm := kadm.NewClient(in.client)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := adm.CreateTopic(ctx, -1, -1, nil, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		in.log.Warn("create dead-letter topic", "topic", topic, "err", err)
	}
	limit := defaultDLQLimit
	if configs, err := adm.DescribeTopicConfigs(ctx, topic); err == nil {
		if rc, err := configs.On(topic, nil); err == nil && rc.Err == nil {
			for _, c := range rc.Configs {
				if c.Key == "max.message.bytes" && c.Value != nil {
					if n, err := strconv.Atoi(*c.Value); err == nil && n > dlqOverhead*4 {
						limit = n
					}
				}
			}
		}
	}
	in.dlqLimit = limit
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(in.cfg.Brokers...),
		kgo.ProducerBatchMaxBytes(int32(limit)),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		// No RecordDeliveryTimeout: franz-go counts it from the record's
		// timestamp, and a dead letter keeps its source record's, so a
		// backlog's dead letters would time out before their first try.
		// Each attempt is bounded by its context instead (sendDeadLetters).
	}, in.extra...)
	in.dlqClient, err = kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("dead-letter producer: %w", err)
	}
	in.log.Debug("dead-letter topic", "topic", topic, "max_record_bytes", limit)
	return nil
}

// sendDeadLetters produces the batch's dead letters. A Kafka outage is
// retried like a ClickHouse one; a topic that cannot take them makes them go
// to ClickHouse's dead_letters table instead.
func (in *Ingester) sendDeadLetters(ctx context.Context) error {
	err := in.retry(ctx, "produce to dead-letter topic", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, dlqAttempt)
		defer cancel()
		err := in.dlqClient.ProduceSync(ctx, in.dlq...).FirstErr()
		if dlqUnusable(err) {
			return permanent{err}
		}
		return err
	})
	var p permanent
	if !errors.As(err, &p) {
		return err
	}
	in.log.Error("dead-letter topic refuses records; storing them in ClickHouse's dead_letters table",
		"topic", in.cfg.Topic+".dlq", "records", len(in.dlq), "err", p.err)
	return in.retry(ctx, "store dead letters in ClickHouse", func(ctx context.Context) error {
		return in.storeDeadLetters(ctx, p.err)
	})
}

// storeDeadLetters writes the batch's dead letters to the dead_letters table.
func (in *Ingester) storeDeadLetters(ctx context.Context, why error) error {
	batch, err := in.conn.PrepareBatch(ctx, "INSERT INTO `"+in.cfg.Database+
		"`.dead_letters (source, error, dlq_error, headers, key, value, truncated, at)")
	if err != nil {
		return fmt.Errorf("prepare dead letters: %w", err)
	}
	defer batch.Close()
	now := time.Now()
	for _, r := range in.dlq {
		var reason, source, truncated string
		var names, values []string
		for _, h := range r.Headers {
			switch h.Key {
			case "error":
				reason = string(h.Value)
			case "source":
				source = string(h.Value)
			case "truncated":
				truncated = string(h.Value)
			default:
				names, values = append(names, h.Key), append(values, string(h.Value))
			}
		}
		orig, _ := strconv.ParseInt(truncated, 10, 64)
		if err := batch.Append(source, reason, why.Error(), headerPairs(names, values), string(r.Key), string(r.Value), uint64(orig), now); err != nil {
			return fmt.Errorf("append dead letter: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d dead letters: %w", len(in.dlq), err)
	}
	return nil
}

// headerPairs renders the record's own headers as name: value lines.
func headerPairs(names, values []string) string {
	var b []byte
	for i := range names {
		b = append(b, names[i]...)
		b = append(b, ": "...)
		b = append(b, strconv.Quote(values[i])...)
		b = append(b, '\n')
	}
	return string(b)
}

// maxLoggedReason is how much of a dead letter's reason the log keeps.
const maxLoggedReason = 1 << 10

// logDeadLetters records the batch's dead letters in dead_letter_log: when,
// which kind, why and where from.
func (in *Ingester) logDeadLetters(ctx context.Context) error {
	batch, err := in.conn.PrepareBatch(ctx, "INSERT INTO `"+in.cfg.Database+"`.dead_letter_log (at, kind, reason, source)")
	if err != nil {
		return fmt.Errorf("prepare dead-letter log: %w", err)
	}
	defer batch.Close()
	now := time.Now().UnixMilli()
	for i, r := range in.dlq {
		reason, src := header(r, "error"), header(r, "source")
		if len(reason) > maxLoggedReason {
			reason = strings.ToValidUTF8(reason[:maxLoggedReason], "")
		}
		if err := batch.Append(now, deadKindNames[in.dlqKinds[i]], reason, src); err != nil {
			return fmt.Errorf("append to dead-letter log: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("log %d dead letters: %w", len(in.dlq), err)
	}
	return nil
}

// header is the value of a record's header key, "" without one.
func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
