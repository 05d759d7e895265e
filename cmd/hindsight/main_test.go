package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dodev/hindsight/ingest"
	"github.com/dodev/hindsight/internal/apitest"
	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/host"
	"github.com/dodev/hindsight/internal/sample"
)

func TestMain(m *testing.M) {
	code := chtest.Main(m)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// binary builds the hindsight binary once for the package's tests, which
// run it as users do.
func binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "hindsight-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "hindsight")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

// TestBadSettingsExitTwo runs the real binary: every bad or missing setting
// is one line naming it, and exit code 2.
func TestBadSettingsExitTwo(t *testing.T) {
	bin := binary(t)
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		says string
	}{
		{"no command", nil, nil, "no command"},
		{"unknown command", []string{"frobnicate"}, nil, "unknown command"},
		{"serve without kafka", []string{"serve", "--clickhouse", "127.0.0.1:9000", "--api-key", "0123456789abcdef0"}, nil, "--kafka (HINDSIGHT_KAFKA) is required"},
		{"serve without clickhouse", []string{"serve"}, nil, "--clickhouse (HINDSIGHT_CLICKHOUSE) is required"},
		{"api without key", []string{"api", "--clickhouse", "127.0.0.1:9000"}, nil, "api key"},
		{"bad address", []string{"migrate", "--clickhouse", "nohost"}, nil, "--clickhouse \"nohost\": want host:port"},
		{"bad env value", []string{"ingest", "--clickhouse", "127.0.0.1:9000", "--kafka", "127.0.0.1:9092"}, []string{"HINDSIGHT_BATCH_SIZE=lots"}, "HINDSIGHT_BATCH_SIZE"},
		{"bad memory limit", []string{"ingest", "--clickhouse", "127.0.0.1:9000", "--kafka", "127.0.0.1:9092", "--memory-limit", "-5"}, nil, "--memory-limit -5"},
		{"bad env address", []string{"migrate"}, []string{"HINDSIGHT_CLICKHOUSE=::::"}, "--clickhouse"},
		{"bad database", []string{"migrate", "--clickhouse", "127.0.0.1:9000", "--database", "a;b"}, nil, "--database"},
		{"unknown flag", []string{"serve", "--nope"}, nil, "flag provided but not defined: -nope"},
		{"bad log level", []string{"migrate", "--clickhouse", "127.0.0.1:9000", "--log-level", "loud"}, nil, "--log-level"},
		{"bad log format", []string{"migrate", "--clickhouse", "127.0.0.1:9000", "--log-format", "xml"}, nil, "--log-format"},
		{"produce without file", []string{"produce"}, nil, "want one FILE"},
		{"dev bad listen", []string{"dev", "--kafka-listen", "9092"}, nil, "--kafka-listen"},
		{"bad metrics address", []string{"replay-worker", "--clickhouse", "127.0.0.1:9000", "--metrics", "9100"}, nil, "--metrics \"9100\": want host:port"},
		{"keys without a subcommand", []string{"keys"}, nil, "want create, list or revoke"},
		{"bad notify url", []string{"replay-worker", "--clickhouse", "127.0.0.1:9000", "--notify-url", "ftp://127.0.0.1/x"}, nil, "notify url"},
		{"private notify url", []string{"replay-worker", "--clickhouse", "127.0.0.1:9000", "--notify-url", "http://127.0.0.1:9/x"}, nil, "notify url"},
		{"bad notify secret", []string{"api", "--clickhouse", "127.0.0.1:9000", "--api-key", "0123456789abcdef0", "--notify-url", "https://example.com/n", "--notify-secret", "nope"}, nil, "notify secret"},
		{"keys with a bad scope", []string{"keys", "create", "--clickhouse", "127.0.0.1:9000", "--name", "x", "--scopes", "stats:write"}, nil, "unknown scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(os.Environ(), tc.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, stderr.String())
			assert.Equal(t, 2, ee.ExitCode(), stderr.String())
			last := strings.TrimSpace(stderr.String())
			last = last[strings.LastIndex(last, "\n")+1:]
			assert.Contains(t, last, tc.says)
			assert.True(t, strings.HasPrefix(last, "hindsight: "), last)
		})
	}
}

func TestEnvName(t *testing.T) {
	assert.Equal(t, "HINDSIGHT_KAFKA_LISTEN", envName("kafka-listen"))
	assert.Equal(t, "HINDSIGHT_API_KEY", envName("api-key"))
}

// TestEndToEnd produces the sample with franz-go into a kfake broker, runs
// ingest and the API as `serve` wires them against a real ClickHouse, and
// checks the counts over HTTP against counts made here from the file.
func TestEndToEnd(t *testing.T) {
	conn, db := chtest.Database(t)
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events"), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer broker.Close()
	brokers := broker.ListenAddrs()

	httpAddr := freeAddr(t)

	const apiKey = "e2e-key-0123456789abcdef"
	ingestCfg := ingest.Config{Brokers: brokers, Database: db, FlushInterval: 100 * time.Millisecond}
	apiCfg := host.Config{Addr: httpAddr, Database: db, APIKey: apiKey}
	ctx := context.Background()
	apiURL, _ := runStack(t, stack{conn: conn, database: db, log: slog.New(slog.DiscardHandler), ingest: &ingestCfg, api: &apiCfg})

	f, err := os.Open("../../testdata/events.ndjson")
	require.NoError(t, err)
	defer f.Close()
	n, err := produceLines(ctx, brokers, "events", f, func(int64) {})
	require.NoError(t, err)

	want := sampleCounts(t, "send", "true")
	var got map[string]any
	require.Eventually(t, func() bool {
		got = statsOver(t, apiURL, apiKey, "send", "true")
		return got["events"] == float64(total(want))
	}, 30*time.Second, 100*time.Millisecond, "produced %d; want %d send events, got %v", n, total(want), got)
	for typ, c := range want {
		assert.EqualValues(t, c, got["by_type"].(map[string]any)[typ], typ)
	}
	all := statsOver(t, apiURL, apiKey, "platform", "all")
	assert.EqualValues(t, total(sampleCounts(t, "platform", "all")), all["events"])
}

// runStack runs s until the test ends, and returns once it is ready: the
// API's URL and the ingester, where s has them.
func runStack(t *testing.T, s stack) (string, *ingest.Ingester) {
	t.Helper()
	type up struct {
		url string
		in  *ingest.Ingester
	}
	ready := make(chan up, 1)
	s.ready = func(u string, in *ingest.Ingester) { ready <- up{u, in} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case u := <-ready:
		return u.url, u.in
	case err := <-done:
		t.Fatalf("stack stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("stack not ready")
	}
	return "", nil
}

func total(m map[string]uint64) uint64 {
	var n uint64
	for _, c := range m {
		n += c
	}
	return n
}

// sampleCounts counts distinct eventIds per type of one service in the
// sample, with encoding/json rather than the code under test.
func sampleCounts(t *testing.T, service, livemode string) map[string]uint64 {
	t.Helper()
	raw, err := os.ReadFile("../../testdata/events.ndjson")
	require.NoError(t, err)
	counts := map[string]uint64{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var ev struct {
			EventID, Type, Service string
			Livemode               *bool
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev))
		live := ev.Livemode == nil || *ev.Livemode
		if ev.Service != service || seen[ev.EventID] || (livemode == "true" && !live) || (livemode == "false" && live) {
			continue
		}
		seen[ev.EventID] = true
		counts[ev.Type]++
	}
	return counts
}

func statsOver(t *testing.T, apiURL, key, service, livemode string) map[string]any {
	t.Helper()
	u := fmt.Sprintf("%s/v1/stats/%s?from=2026-10-01T00:00:00Z&to=2026-11-02T00:00:00Z&livemode=%s", apiURL, service, livemode)
	var body struct {
		Totals map[string]any `json:"totals"`
	}
	require.Equal(t, http.StatusOK, apitest.Get(t, u, key, &body))
	return body.Totals
}

func TestProgressLine(t *testing.T) {
	assert.Equal(t, "[===============>              ]  50% 100 events 100/s ", progressLine(100, 50, 100, time.Second))
	assert.Equal(t, "[==============================] 100% 7 events 7/s ", progressLine(7, 100, 100, time.Second))
	assert.Equal(t, "42 events 21/s ", progressLine(42, 0, 0, 2*time.Second))
	lag := 0.25
	assert.Equal(t, "following: 5210 delivered, 3 failed, 41/s, lag 0.2s ",
		replayLine(replayStatus{Status: "following", Delivered: 5210, Failed: 3, Rate: 41.2, LagSeconds: &lag}))
}

// TestPoolsCarryLimits: every statement on a component's pool carries
// max_memory_usage, and max_execution_time where the pool sets one.
func TestPoolsCarryLimits(t *testing.T) {
	c := common{clickhouse: chtest.Addr(t), user: "default"}
	for _, tc := range []struct {
		seconds  int
		wantTime string
	}{{60, "60"}, {0, "0"}} {
		conn, err := dialClickHouse(c, nil, 2, tc.seconds)
		require.NoError(t, err)
		settings := map[string]string{}
		rows, err := conn.Query(context.Background(), "SELECT name, value FROM system.settings WHERE name IN ('max_memory_usage', 'max_execution_time')")
		require.NoError(t, err)
		for rows.Next() {
			var name, value string
			require.NoError(t, rows.Scan(&name, &value))
			settings[name] = value
		}
		require.NoError(t, rows.Err())
		rows.Close()
		conn.Close()
		assert.Equal(t, fmt.Sprint(maxQueryMemory), settings["max_memory_usage"])
		assert.Equal(t, tc.wantTime, settings["max_execution_time"])
	}
}

// TestLogFormat: logs are JSON when stderr is not a terminal (a pipe here,
// a log collector in production), text when asked.
func TestLogFormat(t *testing.T) {
	bin := binary(t)
	closed := freeAddr(t) // nothing answers there
	firstLine := func(args ...string) string {
		cmd := exec.Command(bin, append([]string{"migrate", "--clickhouse", closed}, args...)...)
		stderr, err := cmd.StderrPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		line, err := bufio.NewReader(stderr).ReadString('\n')
		require.NoError(t, err)
		return line
	}
	var rec map[string]any
	line := firstLine()
	require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
	assert.Equal(t, "WARN", rec["level"])
	assert.Equal(t, "waiting for clickhouse", rec["msg"])
	assert.True(t, strings.HasPrefix(firstLine("--log-format", "text"), "time="))
}

// TestMigrateRebuildsRollups: `hindsight migrate --rebuild-rollups` builds
// the stats rollup, engagements and links again from the events, as a user whose
// rollup went wrong (here emptied by hand) runs it, and says what it did.
func TestMigrateRebuildsRollups(t *testing.T) {
	bin := binary(t)
	conn, db := chtest.MigratedDatabase(t)
	ctx := context.Background()
	events, err := sample.Events(500, sample.TestdataOptions(2))
	require.NoError(t, err)
	chtest.InsertEvents(t, conn, db, events)
	rolled := func() uint64 {
		var n uint64
		require.NoError(t, conn.QueryRow(ctx, "SELECT sum(events) FROM "+db+".stats_rollup").Scan(&n))
		return n
	}
	require.EqualValues(t, len(events), rolled())
	engaged := func() uint64 {
		var n uint64
		require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM "+db+".engagements").Scan(&n))
		return n
	}
	opens := engaged()
	require.NotZero(t, opens)
	// linked is how many quarter hours' links were built from the
	// engagements they hold.
	linked := func() uint64 {
		var n uint64
		require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM (SELECT created_at, sum(events) AS n FROM "+db+".engagement_counts GROUP BY created_at) "+
			"ANY INNER JOIN (SELECT created_at, argMax(events, version) AS linked FROM "+db+".links_checked GROUP BY created_at) USING created_at WHERE n = linked").Scan(&n))
		return n
	}
	var engagedSteps uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(DISTINCT intDiv(created_at, 900000)) FROM "+db+".engagements").Scan(&engagedSteps))
	for _, table := range []string{"stats_rollup", "rollup_totals", "engagements", "engagement_counts", "links_checked", "engagement_links"} {
		require.NoError(t, conn.Exec(ctx, "TRUNCATE TABLE "+db+"."+table))
	}
	require.Zero(t, rolled())
	require.Zero(t, linked())

	out, err := exec.Command(bin, "migrate", "--clickhouse", chtest.Addr(t), "--database", db, "--rebuild-rollups").Output()
	require.NoError(t, err)
	assert.Contains(t, string(out), "stats rollup, engagements and links rebuilt from the events")
	assert.Contains(t, string(out), "; 0 quarter hours read from the events")
	assert.EqualValues(t, len(events), rolled())
	assert.Equal(t, opens, engaged(), "and engagements")
	assert.Equal(t, engagedSteps, linked(), "and the links of every quarter hour with engagements")
}

// freeAddr is a loopback address nothing listens on: a port the kernel
// handed out and that was closed again, for a process under test to listen
// on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}
