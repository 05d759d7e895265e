package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/dodev/hindsight/ingest"
	"github.com/dodev/hindsight/internal/chlocal"
	"github.com/dodev/hindsight/internal/host"
	"github.com/dodev/hindsight/replay"
	"github.com/dodev/hindsight/replay/webhook"
)

func runDev(ctx context.Context, args []string) error {
	fs := newFlags("dev")
	var c common
	c.register(fs, "")
	var dataDir, httpAddr, kafkaListen, topic, apiKey, load string
	var notify notifyFlags
	fs.StringVar(&dataDir, "data", ".hindsight", "directory for the broker's and ClickHouse's data")
	fs.StringVar(&httpAddr, "http", host.DefaultAddr, "HTTP listen address")
	fs.StringVar(&kafkaListen, "kafka-listen", defaultKafka, "address the embedded Kafka broker listens on")
	fs.StringVar(&topic, "topic", ingest.DefaultTopic, "topic to consume")
	fs.StringVar(&apiKey, "api-key", "", "bearer key for /v1 (default: generated once and kept in the data directory)")
	fs.StringVar(&load, "load", "", "NDJSON file to produce once, the first time this data directory starts")
	notify.register(fs)
	if err := fs.parse(args); err != nil {
		return helpOK(err)
	}
	for name, addr := range map[string]string{"http": httpAddr, "kafka-listen": kafkaListen} {
		if err := checkAddr(name, addr); err != nil {
			return err
		}
	}
	if load != "" {
		if _, err := os.Stat(load); err != nil {
			return usagef("--load: %v", err)
		}
	}
	log, err := c.check(true)
	if err != nil {
		return err
	}
	if c.cluster != "" && c.clickhouse == "" {
		return usagef("--cluster needs --clickhouse: dev's own ClickHouse is one server")
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if apiKey == "" {
		if apiKey, err = devAPIKey(dataDir); err != nil {
			return err
		}
	}

	if c.clickhouse == "" {
		ch, err := chlocal.Start(ctx, filepath.Join(dataDir, "clickhouse"), log.With("component", "clickhouse"))
		if errors.Is(err, chlocal.ErrNoBinary) {
			return fmt.Errorf("%w\n%s", err, chlocal.InstallHint)
		}
		if err != nil {
			return err
		}
		defer ch.Stop()
		c.clickhouse = ch.Addr
	}

	broker, err := startBroker(kafkaListen, filepath.Join(dataDir, "kafka"), topic, 4)
	if err != nil {
		return err
	}
	defer broker.Close()

	conn, err := openClickHouse(ctx, c, log)
	if err != nil {
		return err
	}
	defer conn.Close()

	ingestCfg := ingest.Config{Brokers: []string{kafkaListen}, Topic: topic, Database: c.database}
	apiCfg := host.Config{Addr: httpAddr, Database: c.database, APIKey: apiKey}
	replayCfg := replay.WorkerConfig{Database: c.database}
	replayCfg.ApplyDefaults()
	s := stack{
		conn: conn, database: c.database, cluster: c.cluster, log: log,
		dial: func(addrs []string, conns, maxSeconds int) (driver.Conn, error) {
			return dialClickHouse(c, addrs, conns, maxSeconds)
		},
		ingest: &ingestCfg, api: &apiCfg, replay: &replayCfg,
		// A developer's receiver runs on this machine or its network; cloud
		// metadata (link-local) stays refused.
		policy: webhook.Policy{AllowPrivate: true},
	}
	if s.notifier, err = notify.notifier(ctx, s.policy, log); err != nil {
		return err
	}
	s.ready = func(apiURL string, _ *ingest.Ingester) {
		fmt.Printf("hindsight dev ready: api %s (Authorization: Bearer %s) · kafka %s · clickhouse %s · data %s\n",
			apiURL, apiKey, kafkaListen, c.clickhouse, dataDir)
		if load != "" {
			if err := loadOnce(ctx, dataDir, load, kafkaListen, topic); err != nil {
				log.Error("load sample", "file", load, "err", err)
			}
		}
		fmt.Printf("try: curl -H 'Authorization: Bearer %s' '%s/v1/stats/send?from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z'\n", apiKey, apiURL)
		fmt.Printf("or open %s/ and sign in with the key (the sample is in October 2026)\n", apiURL)
	}
	return s.run(ctx)
}

// devAPIKey returns HINDSIGHT_API_KEY's stand-in for dev: a random key made
// on first start and kept in the data directory, so curl lines keep working.
func devAPIKey(dir string) (string, error) {
	path := filepath.Join(dir, "api-key")
	if b, err := os.ReadFile(path); err == nil {
		if k := strings.TrimSpace(string(b)); k != "" {
			return k, nil
		}
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate api key: %w", err)
	}
	key := "hs_dev_" + hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("keep api key: %w", err)
	}
	return key, nil
}

// loadOnce produces file into the broker unless this data directory already
// loaded it, so a restart does not send the sample twice.
func loadOnce(ctx context.Context, dataDir, file, broker, topic string) error {
	marker := filepath.Join(dataDir, "loaded-"+filepath.Base(file))
	if _, err := os.Stat(marker); err == nil {
		fmt.Printf("sample %s was loaded on an earlier start\n", file)
		return nil
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	n, err := produceLines(ctx, []string{broker}, topic, f, func(int64) {})
	if err != nil {
		return err
	}
	fmt.Printf("loaded %d sample events from %s in %s\n", n, file, time.Since(start).Round(time.Millisecond))
	return os.WriteFile(marker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}
