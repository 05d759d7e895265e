package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dodev/hindsight/ingest"
	"github.com/dodev/hindsight/internal/dashboard"
	"github.com/dodev/hindsight/internal/host"
	"github.com/dodev/hindsight/query"
	"github.com/dodev/hindsight/replay"
	"github.com/dodev/hindsight/replay/webhook"
	"github.com/dodev/hindsight/schema"
)

// Connection pools. Each component has its own, so that sixteen slow stats
// queries cannot hold the connections ingest inserts with or the replay
// worker renews its leases with.
const (
	apiConns    = 16
	ingestConns = 4
	replayConns = 16
	// maxQueryMemory bounds what any one statement may use on the server.
	maxQueryMemory = 4 << 30
)

// dialClickHouse returns a pool of up to conns native-protocol connections
// (opened lazily) to --clickhouse, or to the first of addrs that answers
// when given (the replicas of one shard). Every statement on it carries
// max_memory_usage, and max_execution_time when given (seconds; 0 leaves it
// to the statement).
func dialClickHouse(c common, addrs []string, conns, maxSeconds int) (driver.Conn, error) {
	settings := clickhouse.Settings{"max_memory_usage": maxQueryMemory}
	if maxSeconds > 0 {
		settings["max_execution_time"] = maxSeconds
	}
	if addrs == nil {
		addrs = strings.Split(c.clickhouse, ",")
		for i := range addrs {
			addrs[i] = strings.TrimSpace(addrs[i])
		}
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:         addrs,
		Auth:         clickhouse.Auth{Username: c.user, Password: c.password},
		DialTimeout:  5 * time.Second,
		ReadTimeout:  5 * time.Minute,
		MaxOpenConns: conns,
		MaxIdleConns: conns,
		Settings:     settings,
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", strings.Join(addrs, ","), err)
	}
	return conn, nil
}

// openClickHouse opens the API's pool (also used to migrate) and waits up
// to a minute for the server to answer, as it may still be starting
// (compose, dev).
func openClickHouse(ctx context.Context, c common, log *slog.Logger) (driver.Conn, error) {
	conn, err := dialClickHouse(c, nil, apiConns, 0)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		err := conn.Ping(ctx)
		if err == nil {
			return conn, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			conn.Close()
			return nil, fmt.Errorf("clickhouse %s does not answer: %w", c.clickhouse, err)
		}
		log.Warn("waiting for clickhouse", "addr", c.clickhouse, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// stack is what one process runs: ingest, the API, or both.
type stack struct {
	conn driver.Conn // the API's pool, also used to migrate
	// dial opens the other components' own pools, to addrs when given;
	// nil shares conn (tests).
	dial     func(addrs []string, conns, maxSeconds int) (driver.Conn, error)
	database string
	cluster  string // "": one server
	log      *slog.Logger
	ingest   *ingest.Config       // nil: no ingest here
	api      *host.Config         // nil: no API here
	replay   *replay.WorkerConfig // nil: no replay worker here
	policy   webhook.Policy       // where deliveries may connect
	// notifier, if set, posts notifications: endpoints disabled and
	// enabled again, replays that failed.
	notifier *replay.Notifier
	// wakes, if set, is where the API announces new replays and the
	// worker listens for them.
	wakes *replay.WakeSource
	// metricsAddr, without an API here, is where GET /metrics listens.
	metricsAddr string
	// ready, if set, is called once the API listens and ingest consumes.
	ready func(apiURL string, in *ingest.Ingester)
}

// run migrates, then runs the stack's components until ctx ends or one fails,
// and stops them all.
func (s stack) run(ctx context.Context) error {
	if _, err := schema.MigrateCluster(ctx, s.conn, s.database, s.cluster); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// On a cluster, ingest and the replay worker both connect by its shards.
	var shards []schema.Shard
	if s.cluster != "" {
		var err error
		if shards, err = schema.ClusterShards(ctx, s.conn, s.cluster); err != nil {
			return err
		}
	}
	var pools []driver.Conn
	defer func() {
		for _, p := range pools {
			_ = p.Close()
		}
	}()
	pool := func(addrs []string, conns, maxSeconds int) (driver.Conn, error) {
		if s.dial == nil {
			return s.conn, nil
		}
		conn, err := s.dial(addrs, conns, maxSeconds)
		if err == nil {
			pools = append(pools, conn)
		}
		return conn, err
	}
	// Build everything first: a bad setting then stops us before anything runs.
	var in *ingest.Ingester
	var ready []host.ReadyFunc
	if s.ingest != nil {
		conn, err := pool(nil, ingestConns, 0)
		if err != nil {
			return err
		}
		if in, err = s.newIngester(conn, shards, pool); err != nil {
			return err
		}
		ready = append(ready, in.Ready)
	}
	sender := webhook.NewSender(s.policy, version)
	notifier := s.notifier
	var worker *replay.Worker
	if s.replay != nil && s.ingest != nil {
		// Follows read where this process's ingest reads.
		s.replay.Kafka = &replay.KafkaSource{Brokers: s.ingest.Brokers, Topic: s.ingest.Topic, Group: s.ingest.Group,
			MaxEventBytes: s.ingest.MaxEventBytes}
	}
	if s.replay != nil {
		s.replay.Wakes = s.wakes
		if s.cluster != "" {
			// A worker failing over to another server reads a replica
			// that may lag behind the one its rival wrote its claim to.
			s.replay.LeaseSettle = max(s.replay.LeaseSettle, replay.ClusterLeaseSettle)
		}
		// On a cluster every worker talks to the cluster's first server
		// that answers, in the cluster's order, so a lease claim is read
		// where it was written rather than after its replication.
		var addrs []string
		for _, sh := range shards {
			addrs = append(addrs, sh.Replicas...)
		}
		conn, err := pool(addrs, replayConns, 60)
		if err != nil {
			return err
		}
		if worker, err = replay.NewWorker(*s.replay, conn, sender, s.log.With("component", "replay")); err != nil {
			return usagef("%v", err)
		}
		worker.NotifyTo(notifier)
	}
	// GET /metrics serves the process' own metrics and every component's.
	process := prometheus.NewRegistry()
	process.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gatherers := prometheus.Gatherers{process}
	if in != nil {
		gatherers = append(gatherers, in.Metrics())
	}
	if worker != nil {
		gatherers = append(gatherers, worker.Metrics())
	}
	var srv *http.Server
	var ln net.Listener
	apiURL := ""
	switch {
	case s.api != nil:
		var announcer *replay.Announcer
		if s.wakes != nil {
			var err error
			if announcer, err = replay.NewAnnouncer(s.wakes.Brokers, s.wakes.Topic, s.log.With("component", "replay-api")); err != nil {
				return err
			}
			defer announcer.Close()
		}
		h, err := s.newHost(sender, notifier, worker, announcer, ready)
		if err != nil {
			return err
		}
		h.AddMetrics(gatherers...)
		if srv, ln, err = h.Listen(); err != nil {
			return err
		}
		apiURL = "http://" + ln.Addr().String()
	case s.metricsAddr != "":
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
		var err error
		if srv, ln, err = host.Listen(s.metricsAddr, mux, host.ServerConfig{}); err != nil {
			return err
		}
		s.log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	}

	// Then run them; the first to fail stops the others.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	if in != nil {
		wg.Go(func() {
			if err := in.Run(ctx); err != nil {
				cancel(fmt.Errorf("ingest: %w", err))
			}
		})
	}
	if notifier != nil {
		wg.Go(func() { notifier.Run(ctx) })
	}
	if worker != nil {
		wg.Go(func() {
			if err := worker.Run(ctx); err != nil {
				cancel(fmt.Errorf("replay worker: %w", err))
			}
		})
	}
	if srv != nil {
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				cancel(fmt.Errorf("http: %w", err))
			}
		})
		wg.Go(func() {
			<-ctx.Done()
			// ctx is done; shutting down gets a fresh deadline of its own.
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer scancel()
			_ = srv.Shutdown(sctx)
		})
	}
	if s.ready != nil {
		wg.Go(func() {
			for in != nil && in.Ready() != nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
			s.ready(apiURL, in)
		})
	}
	<-ctx.Done()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// newHost builds the HTTP host and mounts every module's routes on it:
// query's and replay's on /v1, the dashboard at /. A replay created through
// it wakes worker, the one in this process (nil: none), and is announced to
// the others by announcer (nil: none).
func (s stack) newHost(sender *webhook.Sender, notifier *replay.Notifier, worker *replay.Worker, announcer *replay.Announcer,
	ready []host.ReadyFunc) (*host.Host, error) {
	h, err := host.New(*s.api, s.conn, s.log.With("component", "api"), ready...)
	if err != nil {
		return nil, usagef("%v", err)
	}
	q, err := query.New(query.Config{Database: s.database, CursorKey: s.api.APIKey}, s.conn, s.log.With("component", "query"))
	if err != nil {
		return nil, usagef("%v", err)
	}
	q.Register(h.V1())
	replays := replay.NewAPI(s.database, s.conn, sender, s.api.APIKey, s.log.With("component", "replay-api"))
	replays.NotifyTo(notifier)
	if worker != nil || announcer != nil {
		replays.OnCreate(func(id string) {
			if worker != nil {
				worker.Wake()
			}
			if announcer != nil {
				announcer.Announce(id)
			}
		})
	}
	replays.Register(h.V1())
	dashboard.Register(h.Root())
	return h, nil
}

// notifyFlags are where Hindsight posts its own notifications, and their
// secret: the same flags on every command that disables endpoints or runs
// replays.
type notifyFlags struct{ url, secret string }

func (n *notifyFlags) register(fs *flagSet) {
	fs.StringVar(&n.url, "notify-url", "", "post signed notifications (Standard Webhooks) here when an endpoint is disabled or enabled again and when a replay ends failed")
	fs.StringVar(&n.secret, "notify-secret", "", "the notifications' signing secret (whsec_...); without it, one is made and printed at start")
}

// notifier checks the URL and the secret; nil without a URL. Without a
// secret it makes one and prints it (never logs it: logs carry no secrets).
func (n notifyFlags) notifier(ctx context.Context, p webhook.Policy, log *slog.Logger) (*replay.Notifier, error) {
	if n.url == "" {
		return nil, nil
	}
	secret := n.secret
	if secret == "" {
		var err error
		if secret, err = webhook.NewSecret(); err != nil {
			return nil, err
		}
	}
	notifier, err := replay.NewNotifier(ctx, n.url, secret, webhook.NewSender(p, version), log.With("component", "notify"))
	if err != nil {
		return nil, usagef("%v", err)
	}
	if n.secret == "" {
		fmt.Fprintf(os.Stderr, "hindsight: notifications to %s are signed with %s (give --notify-secret to keep one across restarts)\n", n.url, secret)
	}
	return notifier, nil
}

// newIngester builds ingest on the server, or on the cluster's shards: a
// pool per shard, reaching the shard's replicas in order.
func (s stack) newIngester(conn driver.Conn, shards []schema.Shard, pool func([]string, int, int) (driver.Conn, error)) (*ingest.Ingester, error) {
	log := s.log.With("component", "ingest")
	if s.cluster == "" {
		in, err := ingest.New(*s.ingest, conn, log)
		if err != nil {
			return nil, usagef("%v", err)
		}
		return in, nil
	}
	var targets []ingest.Shard
	for i, sh := range shards {
		c, err := pool(sh.Replicas, ingestConns, 0)
		if err != nil {
			return nil, err
		}
		targets = append(targets, ingest.Shard{Conn: c, Weight: sh.Weight})
		log.Info("cluster shard", "cluster", s.cluster, "shard", i+1, "weight", sh.Weight, "replicas", sh.Replicas)
	}
	in, err := ingest.NewOnCluster(*s.ingest, conn, targets, log)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return in, nil
}

func runRoles(ctx context.Context, name string, args []string, withIngest, withAPI, withReplay bool) error {
	fs := newFlags(name)
	var c common
	c.register(fs, "")
	var kafka string
	var ingestCfg ingest.Config
	if withIngest {
		fs.StringVar(&kafka, "kafka", "", "Kafka seed brokers, host:port,...")
		ingestCfg.RegisterFlagsAndApplyDefaults(fs.FlagSet)
	}
	var apiCfg host.Config
	if withAPI {
		apiCfg.RegisterFlagsAndApplyDefaults(fs.FlagSet)
	}
	var allowPrivate bool
	var notify notifyFlags
	if withAPI || withReplay {
		fs.BoolVar(&allowPrivate, "allow-private-endpoints", false, "let webhooks reach loopback and private addresses (never link-local)")
		notify.register(fs)
	}
	memoryLimit := -1
	fs.IntVar(&memoryLimit, "memory-limit", memoryLimit, "soft memory limit in MiB for the Go runtime (as GOMEMLIMIT); 0: none; "+
		"default: GOMEMLIMIT if set, else for ingest alone what its settings hold (ingest.Config.MemoryBudget), else none")
	var metricsAddr string
	if !withAPI {
		fs.StringVar(&metricsAddr, "metrics", "", "serve GET /metrics (Prometheus) on this host:port; the API's port serves it where the API runs")
	}
	var replayCfg replay.WorkerConfig
	var followTopic, followGroup string
	if withReplay {
		replayCfg.RegisterFlagsAndApplyDefaults(fs.FlagSet)
		if !withIngest {
			// serve's follows read where its ingest reads.
			fs.StringVar(&kafka, "kafka", "", "Kafka seed brokers ingest reads, host:port,...: this worker then runs follows (replays that go on after their range) "+
				"and starts the replays APIs announce on --wake-topic at once")
			fs.StringVar(&followTopic, "topic", ingest.DefaultTopic, "the topic ingest reads, for follows")
			fs.StringVar(&followGroup, "group", ingest.DefaultGroup, "ingest's consumer group, whose committed offsets a follow starts from")
		}
	}
	if withAPI && !withIngest && !withReplay {
		fs.StringVar(&kafka, "kafka", "", "Kafka seed brokers, host:port,...: new replays are announced there (--wake-topic), "+
			"so replay-workers in other processes start them at once rather than at their next poll")
	}
	wakeTopic := replay.DefaultWakeTopic
	if withAPI || withReplay {
		fs.StringVar(&wakeTopic, "wake-topic", wakeTopic, "with --kafka: the topic where APIs announce new replays and workers listen for them")
	}
	if err := fs.parse(args); err != nil {
		return helpOK(err)
	}
	log, err := c.check(false)
	if err != nil {
		return err
	}
	if metricsAddr != "" {
		if err := checkAddr("metrics", metricsAddr); err != nil {
			return err
		}
	}
	s := stack{database: c.database, cluster: c.cluster, log: log, metricsAddr: metricsAddr, policy: webhook.Policy{AllowPrivate: allowPrivate}}
	if s.notifier, err = notify.notifier(ctx, s.policy, log); err != nil {
		return err
	}
	if kafka != "" && (withAPI || withReplay) {
		brokers, err := checkAddrs("kafka", kafka)
		if err != nil {
			return err
		}
		s.wakes = &replay.WakeSource{Brokers: brokers, Topic: wakeTopic}
	}
	if withReplay {
		replayCfg.Database = c.database
		if !withIngest && kafka != "" {
			brokers, err := checkAddrs("kafka", kafka)
			if err != nil {
				return err
			}
			replayCfg.Kafka = &replay.KafkaSource{Brokers: brokers, Topic: followTopic, Group: followGroup}
		}
		if err := replayCfg.Validate(); err != nil {
			return usagef("%v", err)
		}
		s.replay = &replayCfg
	}
	if withIngest {
		if ingestCfg.Brokers, err = checkAddrs("kafka", kafka); err != nil {
			return err
		}
		ingestCfg.Database = c.database
		ingestCfg.ApplyDefaults()
		if err := ingestCfg.Validate(); err != nil {
			return usagef("%v", err)
		}
		s.ingest = &ingestCfg
	}
	if withAPI {
		if err := checkAddr("http", apiCfg.Addr); err != nil {
			return err
		}
		apiCfg.Database = c.database
		if err := apiCfg.Validate(); err != nil {
			return usagef("%v", err)
		}
		s.api = &apiCfg
	}
	limit, set, err := memoryLimitOf(memoryLimit, s.ingest, withAPI || withReplay)
	if err != nil {
		return err
	}
	if set {
		debug.SetMemoryLimit(limit)
		if limit < math.MaxInt64 {
			log.Info("soft memory limit", "mib", limit>>20)
		}
	}
	s.ready = func(apiURL string, _ *ingest.Ingester) {
		log.Info("hindsight "+name+" ready", "api", apiURL, "clickhouse", c.clickhouse, "kafka", kafka)
	}
	conn, err := openClickHouse(ctx, c, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	s.conn = conn
	s.dial = func(addrs []string, conns, maxSeconds int) (driver.Conn, error) {
		return dialClickHouse(c, addrs, conns, maxSeconds)
	}
	return s.run(ctx)
}

// memoryLimitOf is the soft memory limit to set, in bytes, if any (set
// false leaves the runtime's), from --memory-limit in MiB (-1: not given;
// 0: none, math.MaxInt64 to the runtime). Ingest's memory is bounded by its
// settings, the API's and the worker's by their load, so only a process
// running ingest alone gets one by default. GOMEMLIMIT, which the runtime
// has applied already, stands unless the flag is given.
func memoryLimitOf(flagMiB int, in *ingest.Config, others bool) (limit int64, set bool, err error) {
	switch {
	case flagMiB < -1:
		return 0, false, usagef("--memory-limit %d: want MiB, or 0 for none", flagMiB)
	case flagMiB == 0:
		return math.MaxInt64, true, nil
	case flagMiB > 0:
		return int64(flagMiB) << 20, true, nil
	case os.Getenv("GOMEMLIMIT") != "" || in == nil || others:
		return 0, false, nil
	}
	return in.MemoryBudget(), true, nil
}

func runMigrate(ctx context.Context, args []string) error {
	fs := newFlags("migrate")
	var c common
	c.register(fs, "")
	rebuild := fs.Bool("rebuild-rollups", false, "after migrating, build the stats rollup, engagements and links again from the events table")
	if err := fs.parse(args); err != nil {
		return helpOK(err)
	}
	log, err := c.check(false)
	if err != nil {
		return err
	}
	conn, err := openClickHouse(ctx, c, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	v, err := schema.MigrateCluster(ctx, conn, c.database, c.cluster)
	if err != nil {
		return err
	}
	fmt.Printf("database %s is at schema version %d\n", c.database, v)
	if !*rebuild {
		return nil
	}
	began := time.Now()
	unchecked, err := schema.RebuildRollups(ctx, conn, c.database, c.cluster)
	if err != nil {
		return err
	}
	fmt.Printf("stats rollup, engagements and links rebuilt from the events in %s; %d quarter hours read from the events (holding copies, or stored into while it ran)\n",
		time.Since(began).Round(time.Millisecond), unchecked)
	return nil
}
