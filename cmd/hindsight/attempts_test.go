package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/host"
	"github.com/dodev/hindsight/replay"
	"github.com/dodev/hindsight/replay/webhook"
)

// TestAttemptsCommand logs 1,050 attempts to one endpoint (every tenth
// failed) and 5 to another, then reads them back with `hindsight attempts`
// through a running API: filtered, across pages, as JSON and as a table.
func TestAttemptsCommand(t *testing.T) {
	conn, db := chtest.MigratedDatabase(t)
	ctx := context.Background()
	// Within the API's default range, the last day.
	start := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	var recs []replay.Record
	for i := range 1050 {
		r := replay.Record{EndpointID: "whep_a", ReplayID: "rpl_a", EventID: fmt.Sprintf("evt_%04d", i), EventType: "send.email.sent",
			Attempt: 1, At: start.Add(time.Duration(i) * time.Second),
			Result: webhook.Attempt{Outcome: webhook.Delivered, Status: 204, Latency: 3 * time.Millisecond}}
		if i%10 == 0 {
			r.Result = webhook.Attempt{Outcome: webhook.Failed, Status: 500, Latency: 5 * time.Millisecond, Err: "HTTP 500\nfrom the receiver"}
		}
		recs = append(recs, r)
	}
	for i := range 5 {
		recs = append(recs, replay.Record{EndpointID: "whep_b", ReplayID: "rpl_b", EventID: fmt.Sprintf("evt_b%d", i), Attempt: 1,
			At: start.Add(time.Duration(i) * time.Second), Result: webhook.Attempt{Outcome: webhook.Failed, Status: 410}})
	}
	store := replay.NewStore(conn, db)
	for _, id := range []string{"whep_a", "whep_b"} {
		require.NoError(t, store.SaveEndpoint(ctx, replay.Endpoint{ID: id, URL: "https://example.com/" + id, EnabledEvents: []string{"*"},
			Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", CreatedAt: start}))
	}
	require.NoError(t, store.SaveJob(ctx, replay.Job{ID: "rpl_b", EndpointID: "whep_b", Since: start, EnabledEvents: []string{"*"},
		Livemode: "all", Ordered: true, Concurrency: 1, Status: replay.StatusCompleted, CreatedAt: start}))
	require.NoError(t, store.RecordAttempts(ctx, recs))

	const key = "attempts-key-0123456789abcdef"
	apiURL := startAPI(t, conn, db, key)
	attempts := func(args ...string) []attempt {
		t.Helper()
		var out bytes.Buffer
		require.NoError(t, runAttempts(ctx, append([]string{"--api", apiURL, "--api-key", key, "--json"}, args...), &out))
		var got []attempt
		dec := json.NewDecoder(&out)
		for dec.More() {
			var a attempt
			require.NoError(t, dec.Decode(&a))
			got = append(got, a)
		}
		return got
	}

	failed := attempts("--endpoint", "whep_a", "--outcome", "failed", "--limit", "0")
	require.Len(t, failed, 105)
	for i, a := range failed {
		assert.Equal(t, "failed", a.Outcome)
		assert.Equal(t, 500, a.Status)
		assert.Equal(t, fmt.Sprintf("evt_%04d", 1040-10*i), a.EventID, "newest first")
	}

	all := attempts("--endpoint", "whep_a", "--limit", "0")
	require.Len(t, all, 1050, "every attempt, across two pages of at most 1,000")
	seen := map[string]bool{}
	for _, a := range all {
		seen[a.EventID] = true
	}
	assert.Len(t, seen, 1050, "no attempt twice across the pages")
	assert.Len(t, attempts("--endpoint", "whep_a", "--limit", "1020"), 1020)
	assert.Len(t, attempts("--replay", "rpl_b"), 5)
	assert.Len(t, attempts("--endpoint", "whep_a", "--event-id", "evt_0007"), 1)

	var table bytes.Buffer
	require.NoError(t, runAttempts(ctx, []string{"--api", apiURL, "--api-key", key, "--endpoint", "whep_a", "--outcome", "failed", "--limit", "2"}, &table))
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	require.Len(t, lines, 3, table.String())
	assert.Regexp(t, `^AT\s+EVENT\s+TYPE\s+ATTEMPT\s+OUTCOME\s+STATUS\s+LATENCY\s+ERROR$`, lines[0])
	assert.Regexp(t, `^`+regexp.QuoteMeta(start.Add(1040*time.Second).Format(time.RFC3339Nano))+
		`\s+evt_1040\s+send\.email\.sent\s+1\s+failed\s+500\s+5\.0 ms\s+HTTP 500 from the receiver$`, lines[1])

	for _, args := range [][]string{{}, {"--endpoint", "whep_a", "--replay", "rpl_a"}, {"--endpoint", "whep_a", "--limit", "-1"}} {
		var ue *usageError
		assert.ErrorAs(t, runAttempts(ctx, append([]string{"--api", apiURL, "--api-key", key}, args...), &bytes.Buffer{}), &ue, "%v", args)
	}
	var out bytes.Buffer
	assert.ErrorContains(t, runAttempts(ctx, []string{"--api", apiURL, "--api-key", key, "--endpoint", "whep_a", "--outcome", "lost"}, &out), "outcome")
}

// startAPI runs the API alone on a free loopback port and returns its URL.
func startAPI(t *testing.T, conn driver.Conn, db, key string) string {
	t.Helper()
	httpAddr := freeAddr(t)
	apiURL, _ := runStack(t, stack{conn: conn, database: db, log: slog.New(slog.DiscardHandler),
		api: &host.Config{Addr: httpAddr, Database: db, APIKey: key}})
	return apiURL
}
