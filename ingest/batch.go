package ingest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/dodev/hindsight/schema"
)

// columns is one insert's rows, column by column, in schema.EventColumns
// order: appending a column slice to the driver's batch avoids boxing every
// value of every row.
type columns struct {
	eventID, typ, service         []string
	createdAt                     []int64
	livemode, known               []uint8
	messageID                     []string
	messageHash                   []uint64
	recipientDomain, senderDomain []string
	bounceType                    []string
	hasCarrier, hasInventory      []uint8
	npa, voice, format            []string
	textLength                    []int64
	durationSec                   []float64
	raw                           [][]byte
	kafkaTopic                    []string
	kafkaPartition                []int32
	kafkaOffset                   []int64
	ingestedAt                    []time.Time
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func (c *columns) add(ev *schema.Event, topic string, partition int32, offset int64, now time.Time) {
	c.eventID = append(c.eventID, ev.ID)
	c.typ = append(c.typ, ev.Type)
	c.service = append(c.service, ev.Service)
	c.createdAt = append(c.createdAt, ev.CreatedAt)
	c.livemode = append(c.livemode, b2u(ev.Livemode))
	c.known = append(c.known, b2u(ev.Known))
	d := &ev.Dims
	c.messageID = append(c.messageID, d.MessageID)
	c.messageHash = append(c.messageHash, d.MessageHash)
	c.recipientDomain = append(c.recipientDomain, d.RecipientDomain)
	c.senderDomain = append(c.senderDomain, d.SenderDomain)
	c.bounceType = append(c.bounceType, d.BounceType)
	c.hasCarrier = append(c.hasCarrier, b2u(d.HasCarrier))
	c.hasInventory = append(c.hasInventory, b2u(d.HasInventory))
	c.npa = append(c.npa, d.NPA)
	c.voice = append(c.voice, d.Voice)
	c.format = append(c.format, d.Format)
	c.textLength = append(c.textLength, d.TextLength)
	c.durationSec = append(c.durationSec, d.DurationSec)
	c.raw = append(c.raw, ev.Raw)
	c.kafkaTopic = append(c.kafkaTopic, topic)
	c.kafkaPartition = append(c.kafkaPartition, partition)
	c.kafkaOffset = append(c.kafkaOffset, offset)
	c.ingestedAt = append(c.ingestedAt, now)
}

func (c *columns) len() int { return len(c.eventID) }

// values lists the column slices in schema.EventColumns order.
func (c *columns) values() []any {
	return []any{
		c.eventID, c.typ, c.service, c.createdAt, c.livemode, c.known,
		c.messageID, c.messageHash, c.recipientDomain, c.senderDomain, c.bounceType,
		c.hasCarrier, c.hasInventory, c.npa, c.voice, c.format,
		c.textLength, c.durationSec, c.raw,
		c.kafkaTopic, c.kafkaPartition, c.kafkaOffset, c.ingestedAt,
	}
}

// reset empties the columns, keeping their memory for the next batch.
func (c *columns) reset() {
	clear(c.raw) // drop the references so the records' memory can be freed
	*c = columns{
		eventID: c.eventID[:0], typ: c.typ[:0], service: c.service[:0], createdAt: c.createdAt[:0],
		livemode: c.livemode[:0], known: c.known[:0], messageID: c.messageID[:0], messageHash: c.messageHash[:0],
		recipientDomain: c.recipientDomain[:0], senderDomain: c.senderDomain[:0], bounceType: c.bounceType[:0],
		hasCarrier: c.hasCarrier[:0], hasInventory: c.hasInventory[:0], npa: c.npa[:0], voice: c.voice[:0],
		format: c.format[:0], textLength: c.textLength[:0], durationSec: c.durationSec[:0], raw: c.raw[:0],
		kafkaTopic: c.kafkaTopic[:0], kafkaPartition: c.kafkaPartition[:0], kafkaOffset: c.kafkaOffset[:0],
		ingestedAt: c.ingestedAt[:0],
	}
}

// Inserter is the part of a ClickHouse connection ingest needs.
type Inserter interface {
	PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error)
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

var _ Inserter = (driver.Conn)(nil)

func insertQuery(db string) string {
	return "INSERT INTO `" + db + "`.events (" + strings.Join(schema.EventColumns, ", ") + ")"
}

// insert sends the columns as one batch.
func (c *columns) insert(ctx context.Context, conn Inserter, query string) error {
	batch, err := conn.PrepareBatch(ctx, query)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	defer batch.Close()
	for i, v := range c.values() {
		if err := batch.Column(i).Append(v); err != nil {
			return fmt.Errorf("append column %s: %w", schema.EventColumns[i], err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert batch of %d events: %w", c.len(), err)
	}
	return nil
}
