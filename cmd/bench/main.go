// Command bench measures Hindsight against what its users would run
// instead, on one machine in one go, and prints each figure beside its
// peer's from the same run, with their ratio; with -out it writes the
// tables and the machine's description to a file (docs/benchmarks.md under
// `make bench`). `make bench-short` runs it small, in `make test`, so it
// keeps working.
//
//   - Ingest: one topic of sample events (2% of them sent twice) on the
//     embedded broker, read from its start to the last row visible by
//     `hindsight ingest` (a child process, with its defaults; its CPU and
//     peak RSS), by `kcat -C | clickhouse-client FORMAT JSONEachRow` and by
//     ClickHouse's Kafka engine with a materialized view (both four
//     columns, no payload), and by `clickhouse-client` inserting the same
//     rows, parsed beforehand, as TSV into Hindsight's own events table.
//     The rows and distinct eventIds each stored are counted after.
//   - Stats: `GET /v1/stats/send`, a day series over a month, from one
//     client and then from 8 at once against `hindsight api` (a child
//     process; its peak RSS), p50 and p99, beside the same statement sent
//     to ClickHouse directly the same way.
//   - Replay: an unordered replay (64 in flight) by `hindsight
//     replay-worker` (a child process; its peak RSS), created through the
//     API, to a loopback receiver, beside a bare net/http loop posting the
//     same bodies to it, 64 at a time; once with every first attempt
//     answered, once with one event in ten answered 500 at its first.
//
// Everything runs on a private ClickHouse (chlocal) and an in-process
// broker; it needs kcat and clickhouse-client on PATH.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dodev/hindsight/internal/chlocal"
	"github.com/dodev/hindsight/replay"
)

// config is what a run measures, and where it writes.
type config struct {
	bin          string // the hindsight binary
	events       int    // records in the ingest topic
	statsEvents  int    // events in the stats month
	replayEvents int    // events each replay delivers
	rounds       int    // stats requests per client
	out          string // the report's path; "" prints only
	chProfile    bool   // keep ClickHouse's query and part logs, print them per section
}

func (c *config) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.bin, "bin", "bin/hindsight", "the hindsight binary to measure")
	fs.IntVar(&c.events, "events", 1_300_000, "records in the ingest topic")
	fs.IntVar(&c.statsEvents, "stats-events", 10_000_000, "events in the month the stats requests count")
	fs.IntVar(&c.replayEvents, "replay-events", 100_000, "events each replay delivers")
	fs.IntVar(&c.rounds, "rounds", 25, "stats requests per client: one client, then 8")
	fs.StringVar(&c.out, "out", "", "write the report here as Markdown (docs/benchmarks.md)")
	fs.BoolVar(&c.chProfile, "clickhouse-profile", false,
		"keep ClickHouse's query_log and part_log and print, after each section, its statements by total duration and the parts each table got (they cost the server a little: not for the figures)")
}

func (c *config) validate() error {
	if c.events < 1000 || c.statsEvents < 1000 || c.replayEvents < 1000 || c.rounds < 1 {
		return fmt.Errorf("-events %d, -stats-events %d, -replay-events %d, -rounds %d: want at least 1000, 1000, 1000 and 1",
			c.events, c.statsEvents, c.replayEvents, c.rounds)
	}
	if _, err := os.Stat(c.bin); err != nil {
		return fmt.Errorf("-bin: %w (make build)", err)
	}
	return nil
}

func main() {
	var cfg config
	cfg.registerFlags(flag.CommandLine)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// rig is what every measurement shares: the ClickHouse server, a
// connection to it, the broker and a scratch directory.
type rig struct {
	cfg     config
	dir     string
	ch      *chlocal.Server
	conn    driver.Conn
	brokers []string
	log     *slog.Logger
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	bin, err := filepath.Abs(cfg.bin)
	if err != nil {
		return err
	}
	cfg.bin = bin
	dir, err := os.MkdirTemp("", "hindsight-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The Kafka engine's JSONEachRow reads four fields of events that hold
	// more; its reads take the default profile's settings.
	start := chlocal.StartWithSettings
	if cfg.chProfile {
		start = chlocal.StartLogged
	}
	ch, err := start(ctx, filepath.Join(dir, "clickhouse"), map[string]string{"input_format_skip_unknown_fields": "1"}, log)
	if err != nil {
		return fmt.Errorf("start clickhouse: %w", err)
	}
	defer ch.Stop()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr}, DialTimeout: 5 * time.Second, ReadTimeout: time.Hour,
		MaxOpenConns: 16})
	if err != nil {
		return err
	}
	defer conn.Close()
	// The wake topic is where the replay section's API announces replays
	// to its worker, created beforehand as an operator would.
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic), kfake.SeedTopics(1, replay.DefaultWakeTopic))
	if err != nil {
		return fmt.Errorf("start the broker: %w", err)
	}
	defer broker.Close()
	r := &rig{cfg: cfg, dir: dir, ch: ch, conn: conn, brokers: broker.ListenAddrs(), log: log}

	var rep report
	if rep.machine, err = r.machine(ctx); err != nil {
		return err
	}
	// section runs one measurement, then, with -clickhouse-profile, prints
	// what ClickHouse spent on it.
	section := func(name string, measure func() error) error {
		since := time.Now()
		if cfg.chProfile {
			// The logs keep whole seconds: start on one, so the statements
			// of the section before, all finished, fall before it.
			since = since.Truncate(time.Second).Add(time.Second)
			if err := sleep(ctx, time.Until(since)); err != nil {
				return err
			}
		}
		if err := measure(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if cfg.chProfile {
			return r.chProfile(ctx, os.Stdout, name, since)
		}
		return nil
	}
	log.Info("ingest", "records", cfg.events)
	if err := section("ingest", func() (err error) { rep.ingest, err = r.ingest(ctx); return err }); err != nil {
		return err
	}
	log.Info("stats", "events", cfg.statsEvents)
	if err := section("stats", func() (err error) { rep.stats, err = r.stats(ctx); return err }); err != nil {
		return err
	}
	log.Info("replay", "events", cfg.replayEvents)
	if err := section("replay", func() (err error) { rep.replay, err = r.replay(ctx, cfg.replayEvents); return err }); err != nil {
		return err
	}
	rep.write(os.Stdout)
	if cfg.out != "" {
		f, err := os.Create(cfg.out)
		if err != nil {
			return err
		}
		rep.writeMarkdown(f)
		if err := f.Close(); err != nil {
			return err
		}
		log.Info("report written", "path", cfg.out)
	}
	return nil
}

// child starts the hindsight binary with args and env (added to this
// process's), its output to a log in the scratch directory; it dies with
// this process. Stop it with stopChild.
func (r *rig) child(name string, env []string, args ...string) (*childProc, error) {
	logf, err := os.Create(filepath.Join(r.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	c, err := startChild(r.cfg.bin, logf, append(env, "HINDSIGHT_CLICKHOUSE="+r.ch.Addr, "HINDSIGHT_LOG_LEVEL=warn"), args...)
	if err != nil {
		logf.Close()
		return nil, err
	}
	return c, nil
}

// logTail returns the end of a child's log, for an error.
func (r *rig) logTail(name string) string {
	f, err := os.Open(filepath.Join(r.dir, name+".log"))
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 2000 {
		_, _ = f.Seek(st.Size()-2000, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
