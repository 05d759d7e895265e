//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dodev/hindsight/internal/chlocal"
	"github.com/dodev/hindsight/internal/proctest"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/schema"
)

// The suite's own ClickHouse server (so an outage here touches no other
// package's tests) and binary, shared by its tests.
var (
	server  *chlocal.Server
	binPath string
	dbSeq   int
	results []result
	resMu   sync.Mutex
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "hindsight-faults-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if binPath, err = proctest.Build(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if server, err = chlocal.Start(ctx, filepath.Join(dir, "clickhouse"), nil); err != nil {
			fmt.Fprintln(os.Stderr, "the fault suite needs a ClickHouse server:", err)
			return 1
		}
		defer server.Stop()
		code := m.Run()
		// The report is what happened, failures included.
		if path := os.Getenv("HINDSIGHT_FAULTS_REPORT"); path != "" {
			if err := writeReport(path); err != nil {
				fmt.Fprintln(os.Stderr, "write report:", err)
				return 1
			}
		}
		return code
	}()
	os.Exit(code)
}

// result is one fault's line in the report.
type result struct {
	Failed                          bool // the test failed
	Fault, Injected                 string
	Produced, Valid, Invalid        int // records produced; unique valid eventIds; invalid records
	Stored, Lost, Doubled, APICount int
	DLQ                             int // distinct invalid records found on the dead-letter topic
	Recovery                        time.Duration
}

func record(r result) {
	resMu.Lock()
	defer resMu.Unlock()
	results = append(results, r)
}

// rig is one fault's world: a broker, a database, the processes it started.
type rig struct {
	t      *testing.T
	broker *kfake.Cluster
	conn   driver.Conn
	db     string
	procs  []*exec.Cmd
	stream sample.Stream
	apiURL string
}

const apiKey = "faults-key-0123456789abcdef"

func newRig(t *testing.T, partitions int) *rig {
	t.Helper()
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), "events"), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	t.Cleanup(broker.Close)
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{server.Addr}, DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	dbSeq++
	r := &rig{t: t, broker: broker, conn: conn, db: fmt.Sprintf("faults_%d_%d", os.Getpid(), dbSeq)}
	t.Cleanup(func() {
		for _, p := range r.procs {
			if p.ProcessState == nil {
				_ = p.Process.Kill()
				_ = p.Wait()
			}
		}
	})
	return r
}

// start runs `hindsight <role>` against the rig's broker, server and database.
func (r *rig) start(role string, args ...string) *exec.Cmd {
	r.t.Helper()
	if role == "ingest" {
		// Extra flags for every ingest process, to look into a failure:
		// HINDSIGHT_FAULTS_INGEST_ARGS="--group-protocol classic".
		args = append(args, strings.Fields(os.Getenv("HINDSIGHT_FAULTS_INGEST_ARGS"))...)
	}
	dir := os.Getenv("HINDSIGHT_FAULTS_LOGS") // keep the processes' logs there
	if dir == "" {
		dir = r.t.TempDir()
	}
	cmd := proctest.Start(r.t, binPath, filepath.Join(dir, fmt.Sprintf("%s-%s-%d.log", r.db, role, len(r.procs))),
		[]string{"HINDSIGHT_KAFKA=" + strings.Join(r.broker.ListenAddrs(), ","), "HINDSIGHT_CLICKHOUSE=" + server.Addr,
			"HINDSIGHT_DATABASE=" + r.db, "HINDSIGHT_LOG_LEVEL=" + logLevel(), "HINDSIGHT_API_KEY=" + apiKey},
		append([]string{role}, args...)...)
	r.procs = append(r.procs, cmd)
	return cmd
}

func logLevel() string {
	if l := os.Getenv("HINDSIGHT_FAULTS_LOG_LEVEL"); l != "" {
		return l
	}
	return "warn"
}

func kill(cmd *exec.Cmd, sig syscall.Signal) {
	_ = cmd.Process.Signal(sig)
	_ = cmd.Wait()
}

func streamOptions(seed uint64, dupShare float64) sample.Options {
	o := sample.TestdataOptions(seed)
	o.Duplicates = dupShare
	o.Unknown = 0
	return o
}

// produce sends values to the topic (see proctest.Produce).
func (r *rig) produce(values [][]byte, chunk int, pause time.Duration) error {
	return proctest.Produce(r.broker.ListenAddrs(), "events", values, chunk, pause)
}

// produceInBackground produces values as produce does and closes the
// channel it returns when done.
func (r *rig) produceInBackground(values [][]byte, chunk int, pause time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.produce(values, chunk, pause); err != nil {
			r.t.Errorf("producer: %v", err)
		}
	}()
	return done
}

// clickHouseOutage stops the suite's ClickHouse server for d, then starts
// it again on the same ports and data.
func clickHouseOutage(t *testing.T, d time.Duration) {
	server.Stop()
	time.Sleep(d)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := server.Restart(ctx); err != nil {
		t.Errorf("restart clickhouse: %v", err)
	}
}

func (r *rig) count(q string) int {
	var n uint64
	if err := r.conn.QueryRow(context.Background(), q); err.Err() != nil {
		return -1
	} else if err.Scan(&n) != nil {
		return -1
	}
	return int(n)
}

func (r *rig) stored() int { return r.count("SELECT count() FROM " + r.db + ".events") }

// distinct counts the eventIds stored, each once.
func (r *rig) distinct() int { return r.count("SELECT uniqExact(event_id) FROM " + r.db + ".events") }

// waitStored waits until every unique valid eventId is stored, up to limit.
// It counts distinct eventIds, not rows: under a rebalance some batches are
// stored twice, and counting rows would stop the wait while the last events
// are still on their way.
func (r *rig) waitStored(limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	want := len(r.stream.Valid)
	for time.Since(start) < limit {
		if r.distinct() >= want {
			time.Sleep(2 * time.Second) // anything later would be a duplicate
			return time.Since(start), true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start), false
}

// dlqValues reads every record on events.dlq and returns the distinct
// original values among them (a truncated one counts by its kept start).
func (r *rig) dlqValues() map[string]bool {
	r.t.Helper()
	got, err := proctest.TopicValues(r.broker.ListenAddrs(), "events.dlq")
	require.NoError(r.t, err)
	return got
}

// apiCount asks a `hindsight api` process for every service's events over
// the stream's range, test mode included, and sums them.
func (r *rig) apiCount(from, to string) int {
	r.t.Helper()
	if r.apiURL == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(r.t, err)
		addr := ln.Addr().String()
		ln.Close()
		r.start("api", "--http", addr)
		r.apiURL = "http://" + addr
	}
	total := 0
	for _, svc := range []string{"send", "telco", "talk", "voip", "transcribe", "platform"} {
		var body struct {
			Totals struct {
				Events int `json:"events"`
			} `json:"totals"`
		}
		require.Eventually(r.t, func() bool {
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v1/stats/%s?from=%s&to=%s&livemode=all", r.apiURL, svc, from, to), nil)
			req.Header.Set("Authorization", "Bearer "+apiKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&body) == nil
		}, 30*time.Second, 100*time.Millisecond)
		total += body.Totals.Events
	}
	return total
}

// check counts what the fault left and asserts nothing was lost or doubled.
func (r *rig) check(fault, injected string, recovery time.Duration, from, to string) {
	r.t.Helper()
	s := r.stream
	stored := r.stored()
	distinct := r.distinct()
	missing := 0
	ids := make([]string, 0, len(s.Valid))
	for id := range s.Valid {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	storedIDs := map[string]bool{}
	rows, err := r.conn.Query(context.Background(), "SELECT DISTINCT event_id FROM "+r.db+".events")
	require.NoError(r.t, err)
	for rows.Next() {
		var id string
		require.NoError(r.t, rows.Scan(&id))
		storedIDs[id] = true
	}
	rows.Close()
	for _, id := range ids {
		if !storedIDs[id] {
			missing++
		}
	}
	dlq := r.dlqValues()
	onDLQ := 0
	for v := range s.Invalid {
		if dlq[v] || truncatedOn(dlq, v) {
			onDLQ++
		}
	}
	// The quarter hours are checked against the events, as the next ingest
	// to start would: the API then counts from the rollup wherever they
	// pass, and from the events where copies were stored.
	ctx := context.Background()
	unchecked, err := schema.CheckRollup(ctx, r.conn, r.db, 0, math.MaxInt64)
	require.NoError(r.t, err)
	var steps uint64
	require.NoError(r.t, r.conn.QueryRow(ctx, "SELECT count(DISTINCT created_at) FROM "+r.db+".stats_rollup").Scan(&steps))
	r.t.Logf("%s: the rollup counts %d of %d quarter hours; copies leave the rest to the events", fault, int(steps)-unchecked, steps)
	api := r.apiCount(from, to)
	res := result{Fault: fault, Injected: injected, Produced: len(s.Values), Valid: len(s.Valid), Invalid: len(s.Invalid),
		Stored: distinct, Lost: missing, Doubled: stored - distinct, APICount: api, DLQ: onDLQ, Recovery: recovery}
	r.t.Logf("%s: %+v", fault, res)
	ok := assert.Zero(r.t, missing, "valid eventIds lost")
	ok = assert.Equal(r.t, len(s.Valid), distinct, "unique valid eventIds stored") && ok
	ok = assert.Equal(r.t, len(s.Valid), api, "the API counts each eventId once") && ok
	ok = assert.Equal(r.t, len(s.Invalid), onDLQ, "every invalid record on the dead-letter topic") && ok
	res.Failed = !ok
	record(res)
}

func truncatedOn(dlq map[string]bool, v string) bool {
	for d := range dlq {
		if len(d) < len(v) && strings.HasPrefix(v, d) {
			return true
		}
	}
	return false
}

func writeReport(path string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Reliability: what the fault suite injected and counted\n\n")
	fmt.Fprintf(&b, "Written by `make test-faults` (internal/faults) on %s, %s/%s, %d CPUs, ClickHouse at %s, franz-go's kfake broker.\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), chVersion())
	fmt.Fprintf(&b, "Every figure below comes from that run. *Valid* counts unique valid eventIds produced, *stored* the distinct ones in\n")
	fmt.Fprintf(&b, "the events table, *stored twice* rows beyond one per eventId (copies ClickHouse has not merged yet), *API* the events\n")
	fmt.Fprintf(&b, "`/v1/stats` counts over all services, *counted twice* how many more than the valid eventIds the API counted,\n")
	fmt.Fprintf(&b, "*DLQ* the invalid records found on `events.dlq`, *recovery* the time from the end of the fault to the last event stored.\n")
	fmt.Fprintf(&b, "A fault whose test stopped before counting has no row; one whose counts broke a rule is marked.\n\n")
	fmt.Fprintf(&b, "| fault | injected | produced | valid | invalid | stored | lost | stored twice | API | counted twice | DLQ | recovery |\n")
	fmt.Fprintf(&b, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		if r.Failed {
			r.Fault += " (**failed**)"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %.1f s |\n", r.Fault, r.Injected, r.Produced,
			r.Valid, r.Invalid, r.Stored, r.Lost, r.Doubled, r.APICount, r.APICount-r.Valid, r.DLQ, r.Recovery.Seconds())
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func chVersion() string {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{server.Addr}})
	if err != nil {
		return "?"
	}
	defer conn.Close()
	var v string
	if conn.QueryRow(context.Background(), "SELECT version()").Scan(&v) != nil {
		return "?"
	}
	return v
}

// jitter returns a duration in [lo, hi).
func jitter(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}
