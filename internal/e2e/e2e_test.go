package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/internal/apitest"
	"github.com/dodev/hindsight/internal/webhooktest"
)

// The images real users pull; overridden by environment variables.
const (
	defaultClickHouseImage = "clickhouse/clickhouse-server:25.8"
	defaultKafkaImage      = "apache/kafka:4.1.0"
)

func image(env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

// stack is the containers the package's tests share, and the binary.
type stack struct {
	clickhouse string // host:port of the native protocol
	kafka      string // host:port
	bin        string
	containers []testcontainers.Container
}

var (
	once     sync.Once
	shared   stack
	startErr error
	seq      atomic.Int64
)

func TestMain(m *testing.M) {
	// This machine's Docker needs both (ENVIRONMENT.md): no ryuk image can be
	// pulled, and wait strategies must dial the loopback address.
	for k, v := range map[string]string{"TESTCONTAINERS_RYUK_DISABLED": "true", "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1"} {
		if os.Getenv(k) == "" {
			os.Setenv(k, v)
		}
	}
	code := m.Run()
	for _, c := range shared.containers {
		_ = testcontainers.TerminateContainer(c)
	}
	if shared.bin != "" {
		os.RemoveAll(filepath.Dir(shared.bin))
	}
	os.Exit(code)
}

// dockerOrSkip skips the test without Docker, unless Docker is required.
func dockerOrSkip(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("container suite: skipped in -short mode")
	}
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		p, err := testcontainers.ProviderDefault.GetProvider()
		if err != nil {
			return err
		}
		defer p.Close()
		return p.Health(context.Background())
	}()
	if err == nil {
		return
	}
	if os.Getenv("HINDSIGHT_REQUIRE_DOCKER") != "" {
		t.Fatalf("Docker is required (HINDSIGHT_REQUIRE_DOCKER is set) but not usable: %v", err)
	}
	t.Skipf("container suite skipped: no usable Docker (%v)", err)
}

func start(t *testing.T) stack {
	t.Helper()
	dockerOrSkip(t)
	once.Do(func() { startErr = startStack() })
	require.NoError(t, startErr)
	return shared
}

func startStack() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	dir, err := os.MkdirTemp("", "hindsight-e2e-")
	if err != nil {
		return err
	}
	shared.bin = filepath.Join(dir, "hindsight")
	if out, err := exec.Command("go", "build", "-o", shared.bin, "../../cmd/hindsight").CombinedOutput(); err != nil {
		return fmt.Errorf("build hindsight: %v\n%s", err, out)
	}

	ch, err := testcontainers.Run(ctx, image("HINDSIGHT_TEST_CLICKHOUSE_IMAGE", defaultClickHouseImage),
		testcontainers.WithExposedPorts("9000/tcp", "8123/tcp"),
		// Current images refuse the passwordless default user over the
		// network unless told to skip their user setup.
		testcontainers.WithEnv(map[string]string{"CLICKHOUSE_SKIP_USER_SETUP": "1"}),
		testcontainers.WithWaitStrategy(wait.ForHTTP("/ping").WithPort("8123/tcp").WithStartupTimeout(3*time.Minute)),
	)
	if ch != nil {
		shared.containers = append(shared.containers, ch)
	}
	if err != nil {
		return fmt.Errorf("start clickhouse: %w", err)
	}
	if shared.clickhouse, err = ch.PortEndpoint(ctx, "9000/tcp", ""); err != nil {
		return fmt.Errorf("clickhouse endpoint: %w", err)
	}

	kafka, err := startKafka(ctx, image("HINDSIGHT_TEST_KAFKA_IMAGE", defaultKafkaImage))
	if kafka != nil {
		shared.containers = append(shared.containers, kafka)
	}
	return err
}

// startKafka runs the broker on the host's network: Kafka hands clients the
// address it advertises, which must be the one they dial, and a mapped port
// is not known to the broker inside the container.
func startKafka(ctx context.Context, img string) (testcontainers.Container, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) { hc.NetworkMode = "host" }),
	}
	if strings.Contains(img, "hindsight-broker") {
		opts = append(opts, testcontainers.WithCmd("--listen", addr))
	} else {
		controller := "127.0.0.1:" + strconv.Itoa(ports[1])
		opts = append(opts, testcontainers.WithEnv(map[string]string{
			"KAFKA_NODE_ID":                                  "1",
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_LISTENERS":                                "PLAINTEXT://" + addr + ",CONTROLLER://" + controller,
			"KAFKA_ADVERTISED_LISTENERS":                     "PLAINTEXT://" + addr,
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
			"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@" + controller,
			"KAFKA_INTER_BROKER_LISTENER_NAME":               "PLAINTEXT",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
			"KAFKA_NUM_PARTITIONS":                           "4",
		}))
	}
	c, err := testcontainers.Run(ctx, img, opts...)
	if err != nil {
		return c, fmt.Errorf("start kafka (%s): %w", img, err)
	}
	shared.kafka = addr
	// Ready when it answers metadata requests.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return c, err
	}
	defer cl.Close()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := kadm.NewClient(cl).BrokerMetadata(pctx)
		cancel()
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return c, fmt.Errorf("kafka (%s) not ready: %w", img, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// serve runs `hindsight serve` for one test: its own database, topic and
// group, on a free port. It returns the API's base URL. With
// HINDSIGHT_TEST_HINDSIGHT_IMAGE set (make test sets local/hindsight:dev,
// built from the repository's Dockerfile) it runs that image, as users
// deploy it, and waits for Docker to call it healthy; otherwise the binary
// built from this checkout, as a host process.
func serve(t *testing.T, s stack, db, topic string) string {
	t.Helper()
	ports, err := freePorts(1)
	require.NoError(t, err)
	httpAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	env := map[string]string{
		"HINDSIGHT_KAFKA": s.kafka, "HINDSIGHT_CLICKHOUSE": s.clickhouse, "HINDSIGHT_DATABASE": db,
		"HINDSIGHT_TOPIC": topic, "HINDSIGHT_GROUP": topic + "-ingest", "HINDSIGHT_HTTP": httpAddr,
		"HINDSIGHT_API_KEY": apiKey, "HINDSIGHT_FLUSH_INTERVAL": "200ms",
		// The test's webhook receiver listens on loopback.
		"HINDSIGHT_ALLOW_PRIVATE_ENDPOINTS": "true",
	}
	if img := os.Getenv("HINDSIGHT_TEST_HINDSIGHT_IMAGE"); img != "" {
		serveImage(t, img, env)
	} else {
		cmd := exec.Command(s.bin, "serve")
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Env = append(os.Environ(), cmd.Env...)
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("hindsight serve output:\n%s", logs.String())
			}
		})
	}
	base := "http://" + httpAddr
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 2*time.Minute, 200*time.Millisecond, "hindsight serve did not become ready")
	return base
}

// serveImage runs the Hindsight image's default command (serve) on the
// host's network, where the broker advertises itself and the test's
// receiver listens, and waits for its HEALTHCHECK to pass.
func serveImage(t *testing.T, img string, env map[string]string) {
	t.Helper()
	ctx := context.Background()
	c, err := testcontainers.Run(ctx, img, testcontainers.WithEnv(env),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) { hc.NetworkMode = "host" }))
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				if logs, err := c.Logs(ctx); err == nil {
					b, _ := io.ReadAll(logs)
					t.Logf("hindsight container output:\n%s", b)
				}
			}
			_ = testcontainers.TerminateContainer(c)
		})
	}
	require.NoError(t, err, "run %s", img)
	require.Eventually(t, func() bool {
		st, err := c.State(ctx)
		return err == nil && st.Health != nil && st.Health.Status == "healthy"
	}, 2*time.Minute, time.Second, "%s: Docker's HEALTHCHECK never passed", img)
}

const apiKey = "e2e-containers-key-0123456789"

func getJSON(t *testing.T, url string, into any) int {
	t.Helper()
	return apitest.Get(t, url, apiKey, into)
}

// sampleCounts reads the sample with encoding/json: distinct eventIds per
// type of live events, and the lines themselves.
func sampleCounts(t *testing.T) ([][]byte, map[string]map[string]float64, int) {
	t.Helper()
	raw, err := os.ReadFile("../../testdata/events.ndjson")
	require.NoError(t, err)
	var lines [][]byte
	counts := map[string]map[string]float64{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := append([]byte(nil), sc.Bytes()...)
		lines = append(lines, line)
		var ev struct {
			EventID, Type, Service string
			Livemode               *bool
		}
		require.NoError(t, json.Unmarshal(line, &ev))
		if seen[ev.EventID] {
			continue
		}
		seen[ev.EventID] = true
		if ev.Livemode != nil && !*ev.Livemode {
			continue
		}
		if counts[ev.Service] == nil {
			counts[ev.Service] = map[string]float64{}
		}
		counts[ev.Service][ev.Type]++
	}
	return lines, counts, len(seen)
}

// TestProduceQueryList produces the sample and a few bad records with
// franz-go, then checks every service's counts over HTTP, pages through the
// listing, and reads the bad records off the dead-letter topic.
func TestProduceQueryList(t *testing.T) {
	s := start(t)
	n := seq.Add(1)
	db, topic := fmt.Sprintf("e2e_%d_%d", os.Getpid(), n), fmt.Sprintf("events-e2e-%d-%d", os.Getpid(), n)
	base := serve(t, s, db, topic)

	lines, want, unique := sampleCounts(t)
	bad := [][]byte{[]byte(`not json`), []byte(`{"eventId":"x","type":"send.email.sent","service":"send","data":{},"createdAt":1}`)}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer cl.Close()
	var recs []*kgo.Record
	for _, v := range append(lines, bad...) {
		recs = append(recs, &kgo.Record{Value: v})
	}
	require.NoError(t, cl.ProduceSync(context.Background(), recs...).FirstErr())

	const rng = "from=2026-10-01T00:00:00Z&to=2026-11-02T00:00:00Z"
	for service, byType := range want {
		var total float64
		for _, c := range byType {
			total += c
		}
		var body struct {
			Totals struct {
				Events float64            `json:"events"`
				ByType map[string]float64 `json:"by_type"`
			} `json:"totals"`
		}
		require.Eventually(t, func() bool {
			getJSON(t, base+"/v1/stats/"+service+"?"+rng, &body)
			return body.Totals.Events == total
		}, 2*time.Minute, 250*time.Millisecond, "%s: want %v events, have %v", service, total, body.Totals.Events)
		for typ, c := range byType {
			assert.Equal(t, c, body.Totals.ByType[typ], "%s %s", service, typ)
		}
	}

	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 100)
		var page struct {
			Data       []struct{ EventID string } `json:"data"`
			NextCursor *string                    `json:"next_cursor"`
		}
		u := base + "/v1/events?livemode=all&limit=1000&" + rng
		if cursor != "" {
			u += "&cursor=" + cursor
		}
		require.Equal(t, http.StatusOK, getJSON(t, u, &page))
		for _, e := range page.Data {
			assert.False(t, seen[e.EventID], "listed twice: %s", e.EventID)
			seen[e.EventID] = true
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	assert.Len(t, seen, unique, "the listing holds every eventId once")

	dlq, err := kgo.NewClient(kgo.SeedBrokers(s.kafka), kgo.ConsumeTopics(topic+".dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer dlq.Close()
	reasons := map[string]string{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(reasons) < len(bad) && ctx.Err() == nil {
		dlq.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == "error" {
					reasons[string(r.Value)] = string(h.Value)
				}
			}
		})
	}
	assert.Contains(t, reasons[string(bad[0])], "not JSON")
	assert.Contains(t, reasons[string(bad[1])], "missing data.messageId")

	replayToReceiver(t, base, unique)
}

// replayToReceiver creates an endpoint for every event type, replays the
// whole sample to it, and checks each delivery with the Standard Webhooks
// reference library: every eventId arrives once, signed, with its
// original bytes.
func replayToReceiver(t *testing.T, base string, unique int) {
	t.Helper()
	recv := webhooktest.New(t)
	var ep struct{ ID, Secret string }
	require.Equal(t, http.StatusCreated, post(t, base+"/v1/endpoints", map[string]any{"url": recv.URL + "/hook", "enabled_events": []string{"*"}}, &ep))
	recv.SetSecret(ep.Secret)
	var job struct{ ID, Status string }
	require.Equal(t, http.StatusAccepted, post(t, base+"/v1/replays", map[string]any{"endpoint_id": ep.ID, "since": "2026-10-01T00:00:00Z",
		"until": "2026-11-02T00:00:00Z", "ordered": false, "concurrency": 16}, &job))
	var state struct {
		Status                     string
		Matched, Delivered, Failed int
	}
	require.Eventually(t, func() bool {
		getJSON(t, base+"/v1/replays/"+job.ID, &state)
		return state.Status == "completed" || state.Status == "failed" || state.Status == "cancelled"
	}, 2*time.Minute, 200*time.Millisecond, "replay %s: %+v", job.ID, state)
	assert.Equal(t, "completed", state.Status)
	assert.Equal(t, unique, state.Matched)
	assert.Equal(t, unique, state.Delivered)
	assert.Zero(t, recv.Bad(), "every delivery verified with the reference library")
	got := recv.Counts()
	assert.Len(t, got, unique, "every eventId delivered")
	for id, n := range got {
		assert.Equal(t, 1, n, "%s delivered once", id)
	}
}

func post(t *testing.T, url string, body, into any) int {
	t.Helper()
	return apitest.Do(t, http.MethodPost, url, apiKey, body, into)
}
