package query_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/host"
	"github.com/dodev/hindsight/schema"
)

// open sends an authenticated GET with extra headers.
func open(t *testing.T, ctx context.Context, u string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	return resp
}

// TestExportEvents exports a filtered range as NDJSON and as CSV, asked by
// format= and by Accept, with unmerged copies stored: every matching event
// comes once, in (createdAt, eventId) order, its typed columns read from the
// original JSON by encoding/json.
func TestExportEvents(t *testing.T) {
	srv, conn, db := newAPI(t)
	events := loadStatsFixture(t, conn, db)
	chtest.StoreCopies(t, conn, db, "cityHash64(event_id) % 5 = 0")
	from := time.Date(2026, 10, 29, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	var want []fixtureEvent
	for _, e := range events {
		if strings.HasPrefix(e.Type, "send.email.") && e.at().After(from.Add(-1)) && e.at().Before(to) &&
			(recipientDomain(e) == "gmail.com" || recipientDomain(e) == "yahoo.com") {
			want = append(want, e)
		}
	}
	sort.Slice(want, func(i, j int) bool {
		return want[i].CreatedAt < want[j].CreatedAt || want[i].CreatedAt == want[j].CreatedAt && want[i].EventID < want[j].EventID
	})
	require.Greater(t, len(want), 300)
	q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}, "types": {"send.email.*"},
		"livemode": {"all"}, "recipient_domain": {"GMAIL.com,yahoo.com"}}
	u := srv.URL + "/v1/events?" + q.Encode()

	for _, tc := range []struct{ name, url, accept string }{
		{"format=ndjson", u + "&format=ndjson", ""},
		{"Accept: application/x-ndjson", u, "text/html;q=0.9, application/x-ndjson"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := open(t, context.Background(), tc.url, "Accept", tc.accept)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "application/x-ndjson", resp.Header.Get("Content-Type"))
			assert.Equal(t, strconv.Itoa(len(want)), resp.Header.Get("X-Total-Count"), "copies count once")
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(nil, 1<<20)
			i := 0
			for sc.Scan() {
				require.Less(t, i, len(want), "more lines than events")
				var got fixtureEvent
				require.NoError(t, json.Unmarshal(sc.Bytes(), &got))
				assert.Equal(t, want[i].EventID, got.EventID, "line %d", i)
				i++
			}
			require.NoError(t, sc.Err())
			assert.Equal(t, len(want), i)
		})
	}

	for _, tc := range []struct{ name, url, accept string }{
		{"format=csv", u + "&format=csv", ""},
		{"Accept: text/csv", u, "text/csv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := open(t, context.Background(), tc.url, "Accept", tc.accept)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "text/csv; charset=utf-8", resp.Header.Get("Content-Type"))
			records, err := csv.NewReader(resp.Body).ReadAll()
			require.NoError(t, err)
			require.Len(t, records, len(want)+1)
			assert.Equal(t, []string{"event_id", "created_at", "type", "service", "livemode", "message_id", "recipient_domain",
				"sender_domain", "bounce_type", "npa", "voice", "format", "text_length", "duration_sec", "event"}, records[0])
			for i, rec := range records[1:] {
				e := want[i]
				var raw fixtureEvent
				require.NoError(t, json.Unmarshal([]byte(rec[14]), &raw), "the last column is the event")
				assert.Equal(t, e.EventID, raw.EventID)
				assert.Equal(t, []string{e.EventID, e.at().Format("2006-01-02T15:04:05.000Z"), e.Type, "send", strconv.FormatBool(e.live()),
					e.str("messageId"), recipientDomain(e), e.str("bounceType")},
					[]string{rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[8]}, "row %d", i)
			}
		})
	}

	t.Run("json stays a page", func(t *testing.T) {
		p := listPage(t, srv.URL, q.Encode()+"&format=json")
		assert.Len(t, p.Data, 100)
		assert.NotNil(t, p.NextCursor)
	})
	for _, bad := range []string{"format=csv&limit=10", "format=ndjson&cursor=abc"} {
		code, body := get(t, srv, "/v1/events?"+bad, key)
		assert.Equal(t, http.StatusBadRequest, code, bad)
		assert.True(t, strings.HasPrefix(body["error"].(map[string]any)["message"].(string), "format:"), "%s: %v", bad, body)
	}
}

// TestExportCompactsMultiLineEvents: a producer's indented JSON is one
// NDJSON line.
func TestExportCompactsMultiLineEvents(t *testing.T) {
	srv, conn, db := newAPI(t)
	var p schema.Parser
	ev, err := p.Parse([]byte("{\n  \"eventId\": \"evt_indented\",\n  \"type\": \"platform.key.revoked\",\n  \"service\": \"platform\",\n  \"data\": {\"keyId\": \"key_1\"},\n  \"createdAt\": 1790000000000\n}"))
	require.NoError(t, err)
	chtest.InsertEvents(t, conn, db, []schema.Event{ev})
	resp := open(t, context.Background(), srv.URL+"/v1/events?format=ndjson&from=0&to=1800000000000")
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, `{"eventId":"evt_indented","type":"platform.key.revoked","service":"platform","data":{"keyId":"key_1"},"createdAt":1790000000000}`+"\n", string(body))
}

// heapSampler records the largest heap seen while it runs.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(h.done)
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-h.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() uint64 { close(h.stop); <-h.done; return h.peak.Load() }

// TestExportMillion exports a million events, and a tenth of them, with the
// server in this process: the heap's peak is the same for both, so memory
// does not grow with the export. A client that goes away mid-export stops
// the ClickHouse statement.
func TestExportMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("a million events")
	}
	srv, conn, db := newAPI(t)
	const n = 1_000_000
	chtest.FillN(t, db, n)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	export := func(events int) (lines int, peak uint64) {
		to := start.Add(time.Duration(events) * 259 * time.Millisecond)
		resp := open(t, context.Background(), fmt.Sprintf("%s/v1/events?format=ndjson&livemode=all&from=%d&to=%d", srv.URL, start.UnixMilli(), to.UnixMilli()))
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		h := sampleHeap()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines++
		}
		peak = h.Stop()
		require.NoError(t, sc.Err())
		return lines, peak
	}
	small, smallPeak := export(n / 10)
	assert.Equal(t, n/10, small)
	all, allPeak := export(n)
	assert.Equal(t, n, all)
	t.Logf("peak heap: %.1f MiB exporting %d events, %.1f MiB exporting %d", float64(smallPeak)/(1<<20), small, float64(allPeak)/(1<<20), all)
	assert.Less(t, allPeak, smallPeak+16<<20, "the heap does not grow with the export")
	assert.Less(t, allPeak, uint64(64<<20))

	// Away mid-export: the export stops. An API that counts its statements
	// serves it; the whole export takes at least n/10,000 of them.
	counted := &countingConn{Conn: conn}
	srv2 := serve(t, counted, host.Config{Database: db, APIKey: key})
	ctx, cancel := context.WithCancel(context.Background())
	resp := open(t, ctx, fmt.Sprintf("%s/v1/events?format=csv&livemode=all&from=%d", srv2.URL, start.UnixMilli()))
	_, err := io.ReadFull(resp.Body, make([]byte, 1<<20))
	require.NoError(t, err)
	cancel()
	resp.Body.Close()
	require.Eventually(t, func() bool {
		before := counted.n.Load()
		time.Sleep(300 * time.Millisecond)
		return counted.n.Load() == before
	}, 30*time.Second, time.Millisecond, "the export stops")
	assert.Less(t, counted.n.Load(), int64(n/10_000/2), "statements run before the export stopped")
}

// countingConn counts the statements the API runs.
type countingConn struct {
	driver.Conn
	n atomic.Int64
}

func (c *countingConn) Query(ctx context.Context, q string, args ...any) (driver.Rows, error) {
	c.n.Add(1)
	return c.Conn.Query(ctx, q, args...)
}

// TestStatsCSV: the series as rows, then the totals, with the JSON answer's
// numbers.
func TestStatsCSV(t *testing.T) {
	srv, conn, db := newAPI(t)
	loadStatsFixture(t, conn, db)
	q := "from=2026-10-29T00:00:00Z&to=2026-11-02T00:00:00Z&granularity=day&livemode=all"
	body := statsJSON(t, srv.URL+"/v1/stats/send?"+q)
	resp := open(t, context.Background(), srv.URL+"/v1/stats/send?format=csv&"+q)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	records, err := csv.NewReader(resp.Body).ReadAll()
	require.NoError(t, err)
	series := body["series"].([]any)
	require.Len(t, records, 1+len(series)+1)
	col := map[string]int{}
	for i, name := range records[0] {
		col[name] = i
	}
	for _, name := range []string{"row", "key", "events", "send.email.sent", "unique_opened", "open_rate"} {
		require.Contains(t, col, name)
	}
	check := func(rec []string, block map[string]any) {
		assert.Equal(t, fmt.Sprint(block["events"]), rec[col["events"]])
		assert.Equal(t, fmt.Sprint(block["by_type"].(map[string]any)["send.email.sent"]), rec[col["send.email.sent"]])
		assert.Equal(t, fmt.Sprint(block["metrics"].(map[string]any)["unique_opened"]), rec[col["unique_opened"]])
		v, err := strconv.ParseFloat(rec[col["open_rate"]], 64)
		require.NoError(t, err)
		assert.InDelta(t, block["rates"].(map[string]any)["open_rate"].(map[string]any)["value"], v, 1e-12)
	}
	for i, raw := range series {
		b := raw.(map[string]any)
		assert.Equal(t, []string{"bucket", b["bucket"].(string)}, records[1+i][:2])
		check(records[1+i], b)
	}
	last := records[len(records)-1]
	assert.Equal(t, "total", last[0])
	check(last, body["totals"].(map[string]any))

	// format is also talk's audio format filter: mp3 is not one of send's.
	for _, bad := range []string{"format=ndjson", "format=csv&compare=previous", "format=mp3"} {
		code, _ := get(t, srv, "/v1/stats/send?"+bad, key)
		assert.Equal(t, http.StatusBadRequest, code, bad)
	}
}
