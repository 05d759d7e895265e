package ingest

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/dodev/hindsight/schema"
)

// Config is the ingest component's configuration. Zero fields take the
// defaults of ApplyDefaults.
type Config struct {
	// Brokers are the Kafka seed brokers, host:port. Required.
	Brokers []string
	// Topic is read; invalid records go to Topic + ".dlq". Default "events".
	Topic string
	// Group is the consumer group. Default "hindsight-ingest".
	Group string
	// InstanceID, when set, makes this a static member of the group (KIP-345):
	// a restarted process with the same ID takes its old place at once
	// instead of waiting for the old session to time out. Use a stable name
	// per process, such as a pod name. Default: dynamic membership.
	InstanceID string
	// SessionTimeout is how long the group waits for a member that stopped
	// heartbeating before it takes its partitions back. A process killed
	// without leaving the group holds its partitions, and any rebalance, that
	// long. Default 10 s (Kafka's default before 3.0; franz-go's is 45 s).
	SessionTimeout time.Duration
	// GroupProtocol is the consumer group protocol: "consumer" (KIP-848, the
	// broker assigns partitions; Kafka 4.0 and later, and franz-go falls back
	// to classic on older brokers) or "classic" (join and sync rounds led by
	// one member). Default "consumer": a member killed without leaving holds
	// its partitions for one session timeout and stalls nobody else, where a
	// classic round waits on dead members and can elect one to lead. With an
	// InstanceID the default is "classic": there a restarted static member
	// takes its old place at once (KIP-345), where KIP-848 holds a crashed
	// static member's place for its session timeout.
	GroupProtocol string
	// RebalanceTimeout is how long a rebalance waits for members to rejoin.
	// Ingest rejoins once the batch in hand is stored, so a member still
	// retrying a flush after this is dropped from the group (its rows are
	// stored when ClickHouse answers; the partitions' next owner skips them
	// by eventId). Default 20 s (franz-go's is 60 s).
	RebalanceTimeout time.Duration
	// Database holds the events table. Default schema.DefaultDatabase.
	Database string
	// BatchSize is the most rows one batch carries, one insert. Default
	// 100,000: each insert writes a part of every table it feeds, which
	// ClickHouse merges later, so larger batches cost it less per row.
	BatchSize int
	// BatchBytes is the most record bytes (values stored plus dead letters)
	// a batch holds before it is flushed, whatever its row count. Default
	// 32 MiB, about 100,000 records of 300 B.
	BatchBytes int
	// MaxEventBytes is the largest record value stored as an event; larger
	// records are dead-lettered. Default 256 KiB.
	MaxEventBytes int
	// FlushInterval is the longest a record waits in memory before its batch
	// is inserted. Default 1 s.
	FlushInterval time.Duration
	// RecentIDs is how many recent eventIds are remembered to drop producer
	// retries that land on another partition. Default 2,097,152 (48 MB).
	RecentIDs int
	// RetryMin and RetryMax bound the backoff while ClickHouse or the
	// dead-letter topic refuses writes. Defaults 200 ms and 10 s.
	RetryMin, RetryMax time.Duration
	// EventsRetention, when set, is how long events are kept (see
	// schema.ApplyRetention, applied at start and every hour). Default 0:
	// kept forever.
	EventsRetention time.Duration
}

// Defaults.
const (
	DefaultTopic            = "events"
	DefaultGroup            = "hindsight-ingest"
	DefaultBatchSize        = 100_000
	DefaultBatchBytes       = 32 << 20
	DefaultMaxEventBytes    = schema.DefaultMaxEventBytes
	DefaultFlushInterval    = time.Second
	DefaultGroupProtocol    = "consumer"
	DefaultSessionTimeout   = 10 * time.Second
	DefaultRebalanceTimeout = 20 * time.Second
	DefaultRecentIDs        = 1 << 21
)

// ApplyDefaults fills zero fields with their defaults.
func (c *Config) ApplyDefaults() {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Database == "" {
		c.Database = schema.DefaultDatabase
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.GroupProtocol == "" {
		c.GroupProtocol = DefaultGroupProtocol
		if c.InstanceID != "" {
			c.GroupProtocol = "classic"
		}
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = DefaultRebalanceTimeout
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = DefaultMaxEventBytes
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.RecentIDs == 0 {
		c.RecentIDs = DefaultRecentIDs
	}
	if c.RetryMin == 0 {
		c.RetryMin = 200 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 10 * time.Second
	}
}

// RegisterFlagsAndApplyDefaults applies the defaults, then registers a flag
// for each setting an operator tunes, bound to its field with that default,
// as Grafana Tempo's components do: each default is written once, in
// ApplyDefaults. Brokers and Database are the caller's (cmd parses
// addresses, and the database is every component's). Call ApplyDefaults
// again after parsing: the group protocol's default follows --instance-id.
func (c *Config) RegisterFlagsAndApplyDefaults(fs *flag.FlagSet) {
	c.ApplyDefaults()
	fs.StringVar(&c.Topic, "topic", c.Topic, "topic to consume; invalid records go to TOPIC.dlq")
	fs.StringVar(&c.Group, "group", c.Group, "consumer group")
	fs.StringVar(&c.InstanceID, "instance-id", c.InstanceID, "static group membership: a stable name for this process (e.g. the pod name) lets a restart rejoin at once")
	fs.DurationVar(&c.SessionTimeout, "session-timeout", c.SessionTimeout, "how long the group waits for a silent member (a killed process) before moving its partitions")
	fs.StringVar(&c.GroupProtocol, "group-protocol", "", "consumer group protocol: consumer (KIP-848; classic on brokers before Kafka 4.0) or classic; default "+
		DefaultGroupProtocol+", classic with --instance-id")
	fs.DurationVar(&c.RebalanceTimeout, "rebalance-timeout", c.RebalanceTimeout, "how long a rebalance waits for members to rejoin")
	fs.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "rows per ClickHouse insert")
	fs.IntVar(&c.BatchBytes, "batch-bytes", c.BatchBytes, "record bytes a batch holds before it is inserted, whatever its row count")
	fs.IntVar(&c.MaxEventBytes, "max-event-bytes", c.MaxEventBytes, "largest record stored as an event; larger ones are dead-lettered")
	fs.DurationVar(&c.FlushInterval, "flush-interval", c.FlushInterval, "longest wait before a batch is inserted")
	fs.IntVar(&c.RecentIDs, "recent-ids", c.RecentIDs, "recent eventIds remembered to drop producer retries (about 24 B each)")
	fs.DurationVar(&c.EventsRetention, "events-retention", c.EventsRetention, "how long events are kept (e.g. 8760h); 0 keeps them forever")
}

// MemoryBudget is about what ingest needs at these settings, a soft limit
// for the Go runtime (cmd sets it for a process that runs ingest alone):
// the recent eventIds (24 B each), a batch's records, those fetched ahead
// and the batch's columns (4 batches' bytes: the columns hold about 350 B
// a row besides the record's bytes, which they share), and 48 MiB for the
// rest (the driver's blocks of 4 MiB at most among them) and for the
// collector's room. Without a limit the collector lets the heap grow to
// twice what is live. Near the limit it collects more often; it never fails
// an allocation. At the defaults, 224 MiB: the process's RSS is the limit
// and about 20 MiB more (its code and the runtime's own).
func (c *Config) MemoryBudget() int64 {
	return 24*int64(c.RecentIDs) + 4*int64(c.BatchBytes) + 48<<20
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: no brokers given")
	}
	if c.Topic == "" {
		return errors.New("topic: empty")
	}
	if c.Group == "" {
		return errors.New("group: empty")
	}
	if err := schema.ValidateDatabase(c.Database); err != nil {
		return err
	}
	if c.BatchSize < 1 || c.BatchSize > 1_000_000 {
		return fmt.Errorf("batch size %d: want 1 to 1,000,000", c.BatchSize)
	}
	if c.GroupProtocol != "consumer" && c.GroupProtocol != "classic" {
		return fmt.Errorf("group protocol %q: want consumer or classic", c.GroupProtocol)
	}
	if c.SessionTimeout < 6*time.Second || c.SessionTimeout > 5*time.Minute {
		return fmt.Errorf("session timeout %s: want 6s (Kafka's smallest by default) to 5m", c.SessionTimeout)
	}
	if c.RebalanceTimeout < time.Second || c.RebalanceTimeout > 10*time.Minute {
		return fmt.Errorf("rebalance timeout %s: want 1s to 10m", c.RebalanceTimeout)
	}
	if c.BatchBytes < 1<<20 || c.BatchBytes > 1<<30 {
		return fmt.Errorf("batch bytes %d: want 1 MiB to 1 GiB", c.BatchBytes)
	}
	if c.MaxEventBytes < 1<<10 || c.MaxEventBytes > 8<<20 {
		return fmt.Errorf("max event bytes %d: want 1 KiB to 8 MiB", c.MaxEventBytes)
	}
	if c.FlushInterval < 10*time.Millisecond || c.FlushInterval > time.Minute {
		return fmt.Errorf("flush interval %s: want 10ms to 1m", c.FlushInterval)
	}
	if c.RecentIDs < 1 {
		return fmt.Errorf("recent ids %d: want at least 1", c.RecentIDs)
	}
	if c.RetryMin <= 0 || c.RetryMax < c.RetryMin {
		return fmt.Errorf("retry backoff %s..%s: want 0 < min <= max", c.RetryMin, c.RetryMax)
	}
	return nil
}
