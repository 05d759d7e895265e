package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/ingest"
	"github.com/dodev/hindsight/internal/proctest"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/schema"
)

const topic = "events"

// ingestRun is one path's drain of the topic.
type ingestRun struct {
	Path   string
	Took   time.Duration // from its start to the last row visible
	Rows   uint64        // rows stored
	Unique uint64        // distinct eventIds stored
	// CPU and PeakRSS are hindsight's own (0 for the peers).
	CPU     time.Duration
	PeakRSS int64
	// ServerCPU is the ClickHouse server's, from the path's start until
	// the merges of what it stored are done.
	ServerCPU time.Duration
}

// ingestResult is the ingest section: every path over the same records.
type ingestResult struct {
	Records, Unique int
	Runs            []ingestRun // hindsight first
}

// peerColumns are the four columns the peers store of each event.
const peerColumns = "eventId String, type String, service String, createdAt Int64"

func (r *rig) ingest(ctx context.Context) (ingestResult, error) {
	opts := sample.TestdataOptions(7)
	opts.Duplicates, opts.Unknown = 0.02, 0
	values := sample.Generate(r.cfg.events, opts)
	res := ingestResult{Records: len(values)}
	seen := map[string]bool{}
	var p schema.Parser
	for _, v := range values {
		ev, err := p.Parse(v)
		if err != nil {
			return res, fmt.Errorf("a sample event: %w", err)
		}
		seen[ev.ID] = true
	}
	res.Unique = len(seen)
	if err := proctest.Produce(r.brokers, topic, values, 20_000, 0); err != nil {
		return res, err
	}
	for _, path := range []func(context.Context, [][]byte) (ingestRun, error){r.ingestHindsight, r.ingestKcat, r.ingestKafkaEngine, r.ingestTSV} {
		before, err := proctest.CPUTime(r.ch.PID())
		if err != nil {
			return res, err
		}
		run, err := path(ctx, values)
		if err != nil {
			return res, err
		}
		if err := r.mergesDone(ctx); err != nil {
			return res, err
		}
		after, err := proctest.CPUTime(r.ch.PID())
		if err != nil {
			return res, err
		}
		run.ServerCPU = after - before
		r.log.Info("drained", "path", run.Path, "took", run.Took.Round(time.Millisecond), "events/s", math.Round(float64(len(values))/run.Took.Seconds()))
		res.Runs = append(res.Runs, run)
	}
	return res, nil
}

// ingestHindsight runs `hindsight ingest` until its consumer group has
// committed the end of every partition: every row stored before.
func (r *rig) ingestHindsight(ctx context.Context, values [][]byte) (ingestRun, error) {
	run := ingestRun{Path: "`hindsight ingest`"}
	const db = "bench_ingest"
	if _, err := schema.Migrate(ctx, r.conn, db); err != nil {
		return run, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		return run, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return run, fmt.Errorf("end offsets: %w", err)
	}
	c, err := r.child("ingest", []string{"HINDSIGHT_KAFKA=" + strings.Join(r.brokers, ","), "HINDSIGHT_DATABASE=" + db}, "ingest")
	if err != nil {
		return run, err
	}
	defer c.stop()
	start := time.Now()
	for {
		if err := c.sample(); err != nil {
			return run, fmt.Errorf("%w\n%s", err, r.logTail("ingest"))
		}
		committed, err := adm.FetchOffsets(ctx, ingest.DefaultGroup)
		if err == nil && caughtUp(committed, ends) {
			break
		}
		if time.Since(start) > 30*time.Minute {
			return run, fmt.Errorf("hindsight ingest did not catch up in 30 minutes\n%s", r.logTail("ingest"))
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return run, err
		}
	}
	run.Took = time.Since(start)
	if run.CPU, err = c.cpu(); err != nil {
		return run, err
	}
	run.PeakRSS = c.peak
	run.Rows, run.Unique, err = r.stored(ctx, db+".events", "event_id")
	return run, err
}

// mergesDone waits until the server merges nothing, at most a minute: the
// parts a path wrote are merged in the background, part of what storing
// them costs, and the next path should start on an idle server.
func (r *rig) mergesDone(ctx context.Context) error {
	for start := time.Now(); time.Since(start) < time.Minute; {
		var n uint64
		if err := r.conn.QueryRow(ctx, "SELECT count() FROM system.merges").Scan(&n); err != nil {
			return fmt.Errorf("merges in progress: %w", err)
		}
		if n == 0 {
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	r.log.Warn("merges still running after a minute; the next path starts beside them")
	return nil
}

// caughtUp reports whether the committed offsets reach every end.
func caughtUp(committed kadm.OffsetResponses, ends kadm.ListedOffsets) bool {
	ok := true
	ends.Each(func(e kadm.ListedOffset) {
		c, found := committed.Lookup(e.Topic, e.Partition)
		ok = ok && found && c.At >= e.Offset
	})
	return ok
}

// ingestKcat pipes kcat's read of the topic into clickhouse-client.
func (r *rig) ingestKcat(ctx context.Context, _ [][]byte) (ingestRun, error) {
	run := ingestRun{Path: "`kcat -C | clickhouse-client FORMAT JSONEachRow`, 4 columns"}
	if err := r.peerTable(ctx, "kcat"); err != nil {
		return run, err
	}
	script := fmt.Sprintf("set -o pipefail; kcat -C -b %s -t %s -o beginning -e -q -f '%%s\\n' | %s --input_format_skip_unknown_fields=1 --query 'INSERT INTO bench_peers.kcat FORMAT JSONEachRow'",
		strings.Join(r.brokers, ","), topic, r.client())
	start := time.Now()
	if out, err := exec.CommandContext(ctx, "bash", "-c", script).CombinedOutput(); err != nil {
		return run, fmt.Errorf("kcat | clickhouse-client: %w\n%s", err, out)
	}
	run.Took = time.Since(start)
	var err error
	run.Rows, run.Unique, err = r.stored(ctx, "bench_peers.kcat", "eventId")
	return run, err
}

// ingestKafkaEngine has ClickHouse read the topic itself, through a Kafka
// table and a materialized view, until every record is stored.
func (r *rig) ingestKafkaEngine(ctx context.Context, values [][]byte) (ingestRun, error) {
	run := ingestRun{Path: "ClickHouse Kafka engine + materialized view, 4 columns"}
	if err := r.peerTable(ctx, "kafka"); err != nil {
		return run, err
	}
	// A new group starts at the end of the topic (librdkafka's default
	// auto.offset.reset, which 18.16 leaves alone): commit its start first.
	const group = "bench-kafka-engine"
	if err := commitStart(ctx, r.brokers, group); err != nil {
		return run, err
	}
	queue := fmt.Sprintf("CREATE TABLE bench_peers.kafka_queue (%s) ENGINE = Kafka('%s', '%s', '%s', 'JSONEachRow')",
		peerColumns, strings.Join(r.brokers, ","), topic, group)
	if err := r.conn.Exec(ctx, queue); err != nil {
		return run, err
	}
	start := time.Now()
	if err := r.conn.Exec(ctx, "CREATE MATERIALIZED VIEW bench_peers.kafka_mv TO bench_peers.kafka AS SELECT eventId, type, service, createdAt FROM bench_peers.kafka_queue"); err != nil {
		return run, err
	}
	for {
		var n uint64
		if err := r.conn.QueryRow(ctx, "SELECT count() FROM bench_peers.kafka").Scan(&n); err != nil {
			return run, err
		}
		if n >= uint64(len(values)) {
			break
		}
		if time.Since(start) > 30*time.Minute {
			return run, fmt.Errorf("the Kafka engine stored %d of %d records in 30 minutes", n, len(values))
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return run, err
		}
	}
	run.Took = time.Since(start)
	for _, stmt := range []string{"DROP TABLE bench_peers.kafka_mv", "DROP TABLE bench_peers.kafka_queue"} {
		if err := r.conn.Exec(ctx, stmt); err != nil {
			return run, err
		}
	}
	var err error
	run.Rows, run.Unique, err = r.stored(ctx, "bench_peers.kafka", "eventId")
	return run, err
}

// commitStart commits, for group, the start of every partition of the
// topic.
func commitStart(ctx context.Context, brokers []string, group string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("start offsets: %w", err)
	}
	commit := kadm.Offsets{}
	starts.Each(func(o kadm.ListedOffset) { commit.AddOffset(topic, o.Partition, o.Offset, -1) })
	if _, err := adm.CommitOffsets(ctx, group, commit); err != nil {
		return fmt.Errorf("commit %s's start: %w", group, err)
	}
	return nil
}

// ingestTSV parses the records as ingest does beforehand, then times
// clickhouse-client inserting them as TSV into Hindsight's events table
// (its views included): what ClickHouse alone costs for Hindsight's rows.
func (r *rig) ingestTSV(ctx context.Context, values [][]byte) (ingestRun, error) {
	run := ingestRun{Path: "`clickhouse-client` inserting the rows, parsed beforehand, as TSV into Hindsight's events table"}
	const db = "bench_tsv"
	if _, err := schema.Migrate(ctx, r.conn, db); err != nil {
		return run, err
	}
	path := filepath.Join(r.dir, "events.tsv")
	if err := writeTSV(path, values); err != nil {
		return run, err
	}
	f, err := os.Open(path)
	if err != nil {
		return run, err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "bash", "-c", r.client()+" --query 'INSERT INTO "+db+".events ("+strings.Join(schema.EventColumns, ", ")+") FORMAT TabSeparated'")
	cmd.Stdin = f
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return run, fmt.Errorf("clickhouse-client: %w\n%s", err, out)
	}
	run.Took = time.Since(start)
	run.Rows, run.Unique, err = r.stored(ctx, db+".events", "event_id")
	return run, err
}

// writeTSV writes the rows ingest would store for values, as
// TabSeparated.
func writeTSV(path string, values [][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var p schema.Parser
	now := time.Now()
	var line []byte
	for i, v := range values {
		ev, err := p.Parse(v)
		if err != nil {
			f.Close()
			return err
		}
		ev.Raw = v
		line = line[:0]
		for j, col := range schema.EventRow(&ev, topic, 0, int64(i), now) {
			if j > 0 {
				line = append(line, '\t')
			}
			line = appendTSV(line, col)
		}
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// appendTSV appends v as a TabSeparated field.
func appendTSV(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return appendEscaped(b, v, false)
	case []string:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '\'')
			b = appendEscaped(b, s, true)
			b = append(b, '\'')
		}
		return append(b, ']')
	case time.Time:
		return v.UTC().AppendFormat(b, time.DateTime)
	case float64:
		return strconv.AppendFloat(b, v, 'g', -1, 64)
	default:
		return fmt.Append(b, v)
	}
}

// appendEscaped escapes what TabSeparated escapes (backslash, tab,
// newline) and, in an array's quoted element, the quote.
func appendEscaped(b []byte, s string, quoted bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == '\'' && quoted:
			b = append(b, '\\', '\'')
		case c == '\t':
			b = append(b, '\\', 't')
		case c == '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}

// peerTable creates the peers' database and a four-column table in it.
func (r *rig) peerTable(ctx context.Context, name string) error {
	for _, stmt := range []string{"CREATE DATABASE IF NOT EXISTS bench_peers",
		"CREATE TABLE bench_peers." + name + " (" + peerColumns + ") ENGINE = MergeTree() ORDER BY (service, type, createdAt)"} {
		if err := r.conn.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// stored counts the rows of table and its distinct values of id.
func (r *rig) stored(ctx context.Context, table, id string) (rows, unique uint64, err error) {
	err = r.conn.QueryRow(ctx, "SELECT count(), uniqExact("+id+") FROM "+table).Scan(&rows, &unique)
	return rows, unique, err
}

// client is the clickhouse-client command for the server, as shell words.
func (r *rig) client() string {
	host, port, _ := strings.Cut(r.ch.Addr, ":")
	bin := "clickhouse-client"
	if _, err := exec.LookPath(bin); err != nil {
		bin = "clickhouse client"
	}
	return bin + " --host " + host + " --port " + port
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
