package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dodev/hindsight/ingest"
	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/host"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/replay"
	"github.com/dodev/hindsight/replay/webhook"
)

// TestMetrics runs ingest, the API and a replay worker on a known workload
// and scrapes GET /metrics: the counters equal what happened.
func TestMetrics(t *testing.T) {
	conn, db := chtest.Database(t)
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events"), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer broker.Close()
	httpAddr := freeAddr(t)

	const apiKey = "metrics-key-0123456789abcdef"
	ingestCfg := ingest.Config{Brokers: broker.ListenAddrs(), Database: db, FlushInterval: 100 * time.Millisecond}
	apiCfg := host.Config{Addr: httpAddr, Database: db, APIKey: apiKey}
	workerCfg := replay.WorkerConfig{Database: db, Poll: 50 * time.Millisecond}
	_, in := runStack(t, stack{conn: conn, database: db, log: slog.New(slog.DiscardHandler), ingest: &ingestCfg, api: &apiCfg,
		replay: &workerCfg, policy: webhook.Policy{AllowPrivate: true}})
	ctx := context.Background()
	base := "http://" + httpAddr

	// Ingest: 200 valid events, 2 invalid records, 1 too large.
	opts := sample.TestdataOptions(31)
	opts.Duplicates = 0
	events, err := sample.Events(200, opts)
	require.NoError(t, err)
	var lines bytes.Buffer
	for _, ev := range events {
		lines.Write(ev.Raw)
		lines.WriteByte('\n')
	}
	lines.WriteString("not json\n{\"eventId\":\"x\"}\n")
	lines.WriteString(`{"eventId":"big","type":"platform.test","service":"platform","createdAt":1,"data":{"pad":"` + strings.Repeat("x", 300<<10) + "\"}}\n")
	valueBytes := lines.Len() - 203 // each record is a line without its newline
	_, err = produceLines(ctx, broker.ListenAddrs(), "events", &lines, func(int64) {})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st := in.Stats()
		return st.Consumed == 203 && st.Inserted == 200 && st.DeadLettered == 3
	}, 60*time.Second, 50*time.Millisecond, "%+v", in.Stats())

	// The API: three stats requests.
	get := func(path string) int {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 3 {
		require.Equal(t, http.StatusOK, get("/v1/stats/send?livemode=all"))
	}

	// Replay every event to a receiver that takes them all.
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer recv.Close()
	post := func(path, body string, into any) {
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Less(t, resp.StatusCode, 300)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(into))
	}
	var ep, job struct{ ID string }
	post("/v1/endpoints", `{"url":"`+recv.URL+`","enabled_events":["*"]}`, &ep)
	post("/v1/replays", `{"endpoint_id":"`+ep.ID+`","since":0,"ordered":false,"concurrency":8}`, &job)
	require.Eventually(t, func() bool {
		var st struct{ Status string }
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/replays/"+job.ID, nil)
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.Status == replay.StatusCompleted
	}, 60*time.Second, 50*time.Millisecond)

	// Scraped without a key.
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	value := func(name string, labels ...string) float64 {
		t.Helper()
		f, ok := families[name]
		require.True(t, ok, "no metric %s", name)
		for _, m := range f.Metric {
			if matches(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				}
			}
		}
		t.Fatalf("no %s with %v", name, labels)
		return 0
	}
	assert.EqualValues(t, 203, value("hindsight_ingest_records_total"))
	assert.EqualValues(t, valueBytes, value("hindsight_ingest_bytes_total"))
	assert.EqualValues(t, 0, value("hindsight_api_queries_in_flight"), "no /v1 request runs while /metrics is scraped")
	assert.EqualValues(t, 200, value("hindsight_ingest_rows_inserted_total"))
	assert.EqualValues(t, 2, value("hindsight_ingest_dead_lettered_total", "reason", "invalid"))
	assert.EqualValues(t, 1, value("hindsight_ingest_dead_lettered_total", "reason", "too_large"))
	assert.EqualValues(t, 0, value("hindsight_ingest_dead_lettered_total", "reason", "refused"))
	assert.EqualValues(t, 1, value("hindsight_ingest_up"))
	assert.EqualValues(t, 3, value("hindsight_http_requests_total", "method", "GET", "route", "/v1/stats/:service", "status", "200"))
	assert.EqualValues(t, 200, value("hindsight_replay_attempts_total", "outcome", "delivered"))
	assert.EqualValues(t, 0, value("hindsight_replay_attempts_total", "outcome", "failed"))
	assert.EqualValues(t, 1, value("hindsight_replay_jobs_finished_total", "status", "completed"))
	assert.EqualValues(t, 0, value("hindsight_replay_endpoints_disabled_total"), "the receiver took every delivery")
	assert.Contains(t, families, "hindsight_ingest_insert_duration_seconds")
	assert.Contains(t, families, "hindsight_replay_attempt_duration_seconds")
	assert.Contains(t, families, "hindsight_ingest_consumer_lag_records")
	assert.Contains(t, families, "go_goroutines")
	kafka := 0
	for name := range families {
		if strings.HasPrefix(name, "hindsight_kafka_") {
			kafka++
		}
		assert.False(t, strings.Contains(name, "whep_") || strings.Contains(name, "rpl_"), name)
	}
	assert.NotZero(t, kafka, "franz-go's client metrics")

	// Every query of the Grafana dashboard names metrics this scrape has.
	raw, err := os.ReadFile("../../deploy/grafana/hindsight.json")
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	names := regexp.MustCompile(`\b(?:hindsight|process|go)_[a-z0-9_]+`)
	queries := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			queries++
			found := names.FindAllString(target.Expr, -1)
			assert.NotEmpty(t, found, "panel %q: %s names no metric", p.Title, target.Expr)
			for _, name := range found {
				family := strings.TrimSuffix(name, "_bucket")
				assert.Contains(t, families, family, "panel %q: %s", p.Title, target.Expr)
			}
		}
	}
	assert.GreaterOrEqual(t, queries, 10)
	for _, f := range families {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				assert.NotContains(t, []string{"endpoint_id", "replay_id", "event_id"}, l.GetName(), "no id is a label")
			}
		}
	}
}

// matches reports whether m has every name, value pair of labels.
func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.Label {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// TestMetricsWithoutAPI: a replay-worker process serves GET /metrics on
// --metrics.
func TestMetricsWithoutAPI(t *testing.T) {
	_, db := chtest.Database(t)
	addr := freeAddr(t)
	cmd := exec.Command(binary(t), "replay-worker", "--metrics", addr)
	cmd.Env = append(os.Environ(), "HINDSIGHT_CLICKHOUSE="+chtest.Addr(t), "HINDSIGHT_DATABASE="+db, "HINDSIGHT_LOG_LEVEL=warn")
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	var body []byte
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 100*time.Millisecond)
	assert.Contains(t, string(body), "hindsight_replay_jobs_running 0")
	assert.Contains(t, string(body), "process_resident_memory_bytes")
}

// TestIngestMemoryLimit runs `hindsight ingest` alone: the Go runtime's soft
// memory limit, as GET /metrics shows it, is what ingest's default settings
// hold (ingest.Config.MemoryBudget), or --memory-limit when given.
func TestIngestMemoryLimit(t *testing.T) {
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer broker.Close()
	for _, tc := range []struct {
		args []string
		want float64
	}{
		{nil, 224 << 20}, // 48 MiB of recent ids, 4 batches of 32 MiB, 48 MiB
		{[]string{"--memory-limit", "300"}, 300 << 20},
	} {
		_, db := chtest.Database(t)
		addr := freeAddr(t)
		cmd := exec.Command(binary(t), append([]string{"ingest", "--metrics", addr}, tc.args...)...)
		cmd.Env = append(os.Environ(), "HINDSIGHT_CLICKHOUSE="+chtest.Addr(t), "HINDSIGHT_DATABASE="+db, "HINDSIGHT_LOG_LEVEL=warn",
			"HINDSIGHT_KAFKA="+strings.Join(broker.ListenAddrs(), ","), "GOMEMLIMIT=")
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		var families map[string]*dto.MetricFamily
		require.Eventually(t, func() bool {
			resp, err := http.Get("http://" + addr + "/metrics")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			parser := expfmt.NewTextParser(model.UTF8Validation)
			families, err = parser.TextToMetricFamilies(resp.Body)
			return err == nil && resp.StatusCode == http.StatusOK
		}, 60*time.Second, 100*time.Millisecond)
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		f := families["go_gc_gomemlimit_bytes"]
		require.NotNil(t, f, "go_gc_gomemlimit_bytes")
		assert.Equal(t, tc.want, f.Metric[0].GetGauge().GetValue(), "%v", tc.args)
	}
}

// TestMemoryLimitOf: which soft memory limit each process gets.
func TestMemoryLimitOf(t *testing.T) {
	var cfg ingest.Config
	cfg.ApplyDefaults()
	budget := int64(224 << 20)
	for _, tc := range []struct {
		name     string
		flag     int
		in       *ingest.Config
		others   bool
		env      string
		want     int64
		set, bad bool
	}{
		{"ingest alone", -1, &cfg, false, "", budget, true, false},
		{"ingest beside the API", -1, &cfg, true, "", 0, false, false},
		{"the API alone", -1, nil, true, "", 0, false, false},
		{"GOMEMLIMIT stands", -1, &cfg, false, "1GiB", 0, false, false},
		{"the flag over GOMEMLIMIT", 300, &cfg, false, "1GiB", 300 << 20, true, false},
		{"the flag anywhere", 300, nil, true, "", 300 << 20, true, false},
		{"none", 0, &cfg, false, "", math.MaxInt64, true, false},
		{"negative", -2, &cfg, false, "", 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tc.env)
			got, set, err := memoryLimitOf(tc.flag, tc.in, tc.others)
			if tc.bad {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.set, set)
			assert.Equal(t, tc.want, got)
		})
	}
}
