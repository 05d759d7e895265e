package ingest

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

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
	// raw are the records' values as strings sharing their bytes (see
	// add).
	raw            []string
	kafkaTopic     []string
	kafkaPartition []int32
	kafkaOffset    []int64
	ingestedAt     []time.Time
	recipients     [][]string

	// keys, headers and timestamps (ms) are the rest of the rows' Kafka
	// records, not inserted: a row ClickHouse refuses for good is
	// dead-lettered as it was read (see record). The records themselves are
	// not kept: franz-go makes those of a fetched batch in one array, kept
	// whole while any of them is.
	keys       [][]byte
	headers    [][]kgo.RecordHeader
	timestamps []int64
	// bytes is the sum of the rows' record values.
	bytes int
	// shard is the index of the shard the rows go to (on a cluster; see
	// byShard).
	shard int
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func (c *columns) add(ev *schema.Event, r *kgo.Record, now time.Time) {
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
	// The driver copies a []byte row into a new string before appending it
	// to its column, an allocation per record; a string is appended as is.
	// Nothing writes to a fetched record's value, so the string may share
	// its bytes, which the batch holds on to until it is stored, as the
	// event's other strings do (schema.Parser.Shared).
	c.raw = append(c.raw, unsafe.String(unsafe.SliceData(ev.Raw), len(ev.Raw)))
	c.kafkaTopic = append(c.kafkaTopic, r.Topic)
	c.kafkaPartition = append(c.kafkaPartition, r.Partition)
	c.kafkaOffset = append(c.kafkaOffset, r.Offset)
	c.ingestedAt = append(c.ingestedAt, now)
	c.recipients = append(c.recipients, d.Recipients)
	c.keys = append(c.keys, r.Key)
	c.headers = append(c.headers, r.Headers)
	c.timestamps = append(c.timestamps, r.Timestamp.UnixMilli())
	c.bytes += len(r.Value)
}

// pick returns the rows at idx, in that order, as new columns.
func (c *columns) pick(idx []int) *columns {
	p := &columns{shard: c.shard}
	for _, i := range idx {
		p.eventID = append(p.eventID, c.eventID[i])
		p.typ = append(p.typ, c.typ[i])
		p.service = append(p.service, c.service[i])
		p.createdAt = append(p.createdAt, c.createdAt[i])
		p.livemode = append(p.livemode, c.livemode[i])
		p.known = append(p.known, c.known[i])
		p.messageID = append(p.messageID, c.messageID[i])
		p.messageHash = append(p.messageHash, c.messageHash[i])
		p.recipientDomain = append(p.recipientDomain, c.recipientDomain[i])
		p.senderDomain = append(p.senderDomain, c.senderDomain[i])
		p.bounceType = append(p.bounceType, c.bounceType[i])
		p.hasCarrier = append(p.hasCarrier, c.hasCarrier[i])
		p.hasInventory = append(p.hasInventory, c.hasInventory[i])
		p.npa = append(p.npa, c.npa[i])
		p.voice = append(p.voice, c.voice[i])
		p.format = append(p.format, c.format[i])
		p.textLength = append(p.textLength, c.textLength[i])
		p.durationSec = append(p.durationSec, c.durationSec[i])
		p.raw = append(p.raw, c.raw[i])
		p.kafkaTopic = append(p.kafkaTopic, c.kafkaTopic[i])
		p.kafkaPartition = append(p.kafkaPartition, c.kafkaPartition[i])
		p.kafkaOffset = append(p.kafkaOffset, c.kafkaOffset[i])
		p.ingestedAt = append(p.ingestedAt, c.ingestedAt[i])
		p.recipients = append(p.recipients, c.recipients[i])
		p.keys = append(p.keys, c.keys[i])
		p.headers = append(p.headers, c.headers[i])
		p.timestamps = append(p.timestamps, c.timestamps[i])
		p.bytes += len(c.raw[i])
	}
	return p
}

// record is row i's Kafka record as it was read.
func (c *columns) record(i int) *kgo.Record {
	return &kgo.Record{
		Topic: c.kafkaTopic[i], Partition: c.kafkaPartition[i], Offset: c.kafkaOffset[i],
		Key: c.keys[i], Value: []byte(c.raw[i]), Headers: c.headers[i], Timestamp: time.UnixMilli(c.timestamps[i]),
	}
}

// month is the events table's partition of a createdAt: months since 1970
// in UTC, as toYYYYMM(toDateTime(created_at / 1000, 'UTC')) divides them.
func month(createdAtMs int64) int64 {
	y, m, _ := time.UnixMilli(createdAtMs).UTC().Date()
	return int64(y)*12 + int64(m)
}

// byMonth splits the rows by table partition, so that each insert writes one
// part: ClickHouse writes a block spanning several partitions part by part
// (a crash in between stores some of them) and refuses blocks of more than
// max_partitions_per_insert_block (100) partitions on current servers.
func (c *columns) byMonth() []*columns {
	return c.groupBy(func(i int) int { return int(month(c.createdAt[i])) })
}

// byShard splits the rows by the shard of their eventId (schema.ShardOf),
// each part marked with its shard.
func (c *columns) byShard(slots []int) []*columns {
	parts := c.groupBy(func(i int) int { return schema.ShardOf(c.eventID[i], slots) })
	for _, p := range parts {
		p.shard = schema.ShardOf(p.eventID[0], slots)
	}
	return parts
}

// groupBy splits the rows by key, in the order keys first appear. The
// common case, one key, returns c itself without copying.
func (c *columns) groupBy(key func(i int) int) []*columns {
	first := key(0)
	i := 1
	for i < c.len() && key(i) == first {
		i++
	}
	if i == c.len() {
		return []*columns{c}
	}
	var order []int
	idx := map[int][]int{}
	for i := range c.len() {
		k := key(i)
		if _, ok := idx[k]; !ok {
			order = append(order, k)
		}
		idx[k] = append(idx[k], i)
	}
	parts := make([]*columns, len(order))
	for i, k := range order {
		parts[i] = c.pick(idx[k])
	}
	return parts
}

// halves splits the rows in two, to find the ones ClickHouse refuses.
func (c *columns) halves() (*columns, *columns) {
	n := c.len()
	left, right := make([]int, 0, n/2), make([]int, 0, n-n/2)
	for i := range n {
		if i < n/2 {
			left = append(left, i)
		} else {
			right = append(right, i)
		}
	}
	return c.pick(left), c.pick(right)
}

func (c *columns) len() int { return len(c.eventID) }

// values lists rows lo to hi of the column slices, in schema.EventColumns
// order, but for the last, recipients (see appendRecipients).
func (c *columns) values(lo, hi int) []any {
	return []any{
		c.eventID[lo:hi], c.typ[lo:hi], c.service[lo:hi], c.createdAt[lo:hi], c.livemode[lo:hi], c.known[lo:hi],
		c.messageID[lo:hi], c.messageHash[lo:hi], c.recipientDomain[lo:hi], c.senderDomain[lo:hi], c.bounceType[lo:hi],
		c.hasCarrier[lo:hi], c.hasInventory[lo:hi], c.npa[lo:hi], c.voice[lo:hi], c.format[lo:hi],
		c.textLength[lo:hi], c.durationSec[lo:hi], c.raw[lo:hi],
		c.kafkaTopic[lo:hi], c.kafkaPartition[lo:hi], c.kafkaOffset[lo:hi], c.ingestedAt[lo:hi],
	}
}

// appendRecipients appends rows lo to hi of recipients to col. The driver
// appends a [][]string column by reflection, with an allocation per row and
// per address; a row of pointers to its addresses goes in with one, and a
// row without addresses with none.
func (c *columns) appendRecipients(col driver.BatchColumn, lo, hi int) error {
	var ptrs []*string
	for _, addrs := range c.recipients[lo:hi] {
		ptrs = ptrs[:0]
		for i := range addrs {
			ptrs = append(ptrs, &addrs[i])
		}
		row := ptrs
		if len(addrs) == 0 {
			row = nil
		}
		if err := col.AppendRow(row); err != nil {
			return err
		}
	}
	return nil
}

// reset empties the columns, keeping their memory for the next batch. The
// strings are cleared too: they share the records' bytes (see add), which
// would stay in memory as long as a string left past the end pointed to them.
func (c *columns) reset() {
	for _, col := range [][]string{c.eventID, c.typ, c.service, c.messageID, c.recipientDomain, c.senderDomain,
		c.bounceType, c.npa, c.voice, c.format, c.raw} {
		clear(col)
	}
	clear(c.keys)
	clear(c.headers)
	clear(c.recipients)
	*c = columns{
		eventID: c.eventID[:0], typ: c.typ[:0], service: c.service[:0], createdAt: c.createdAt[:0],
		livemode: c.livemode[:0], known: c.known[:0], messageID: c.messageID[:0], messageHash: c.messageHash[:0],
		recipientDomain: c.recipientDomain[:0], senderDomain: c.senderDomain[:0], bounceType: c.bounceType[:0],
		hasCarrier: c.hasCarrier[:0], hasInventory: c.hasInventory[:0], npa: c.npa[:0], voice: c.voice[:0],
		format: c.format[:0], textLength: c.textLength[:0], durationSec: c.durationSec[:0], raw: c.raw[:0],
		kafkaTopic: c.kafkaTopic[:0], kafkaPartition: c.kafkaPartition[:0], kafkaOffset: c.kafkaOffset[:0],
		ingestedAt: c.ingestedAt[:0], recipients: c.recipients[:0],
		keys: c.keys[:0], headers: c.headers[:0], timestamps: c.timestamps[:0],
	}
}

// Inserter is the part of a ClickHouse connection ingest needs.
type Inserter interface {
	PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error)
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
	// Exec and ServerVersion apply the events' retention (schema.Conn).
	Exec(ctx context.Context, query string, args ...any) error
	ServerVersion() (*driver.ServerVersion, error)
}

var _ Inserter = (driver.Conn)(nil)

func insertQuery(db, table string) string {
	return "INSERT INTO `" + db + "`." + table + " (" + strings.Join(schema.EventColumns, ", ") + ")"
}

// insertBlock is the most rows sent in one block of an insert. An insert of
// more sends several blocks, and the driver's columns, emptied after each,
// are filled again without growing: building one block of a whole batch
// grew them row by row, copying every value about four times over. The
// driver makes its columns anew for every insert, so they still grow once
// per insert, to a block's size: at 8,192 rows that was a quarter of all
// ingest allocated; at 2,048 it is a twentieth. The server puts the blocks
// of one insert back together (up to min_insert_block_size_rows, a million
// by default) before storing them, so an insert still writes one part per
// partition (TestInsertWritesOnePart).
const insertBlock = 2048

// insertBlockBytes bounds a block by its records' bytes as well: the driver
// holds a block's strings two or three times over (its column, the encoded
// block, the compressed one), so a batch of large events sent as one block
// held about five times its bytes.
const insertBlockBytes = 4 << 20

// insertSettings keep an insert's blocks together whatever its size: the
// server stores what it has gathered once it holds min_insert_block_size_rows
// rows (1,048,576 by default, more than Config.BatchSize allows) or
// min_insert_block_size_bytes bytes (256 MiB by default, less than a batch
// of Config.BatchBytes may hold in columns).
var insertSettings = clickhouse.WithSettings(clickhouse.Settings{"min_insert_block_size_bytes": 16 << 30})

// blockEnd is where the block of rows starting at lo ends: after
// insertBlock rows, or once its records hold insertBlockBytes, and after
// one row at least.
func (c *columns) blockEnd(lo int) int {
	hi, bytes := lo, 0
	for hi < min(lo+insertBlock, c.len()) && (hi == lo || bytes+len(c.raw[hi]) <= insertBlockBytes) {
		bytes += len(c.raw[hi])
		hi++
	}
	return hi
}

// insert sends the columns as one insert.
func (c *columns) insert(ctx context.Context, conn Inserter, query string) error {
	batch, err := conn.PrepareBatch(clickhouse.Context(ctx, insertSettings), query)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	defer batch.Close()
	for lo, hi := 0, 0; lo < c.len(); lo = hi {
		hi = c.blockEnd(lo)
		values := c.values(lo, hi)
		for i, v := range values {
			if err := batch.Column(i).Append(v); err != nil {
				return fmt.Errorf("append column %s: %w", schema.EventColumns[i], err)
			}
		}
		if err := c.appendRecipients(batch.Column(len(values)), lo, hi); err != nil {
			return fmt.Errorf("append column %s: %w", schema.EventColumns[len(values)], err)
		}
		if hi < c.len() {
			if err := batch.Flush(); err != nil {
				return fmt.Errorf("insert batch of %d events: send rows %d to %d: %w", c.len(), lo, hi, err)
			}
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert batch of %d events: %w", c.len(), err)
	}
	return nil
}
