package query_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/apitest"
	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/host"
	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/query"
	"github.com/dodev/hindsight/schema"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

const key = "test-key-0123456789abcdef"

type row struct {
	id, typ  string
	at       time.Time
	livemode bool
}

// insert writes rows straight into the events table, as ingest would.
func insert(t *testing.T, conn driver.Conn, db string, rows []row) {
	t.Helper()
	ctx := context.Background()
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".events ("+strings.Join(schema.EventColumns, ", ")+")")
	require.NoError(t, err)
	for i, r := range rows {
		raw := fmt.Sprintf(`{"eventId":%q,"type":%q,"service":%q,"data":{},"createdAt":%d}`, r.id, r.typ, schema.ServiceOf(r.typ), r.at.UnixMilli())
		ev := schema.Event{ID: r.id, Type: r.typ, Service: schema.ServiceOf(r.typ), CreatedAt: r.at.UnixMilli(), Livemode: r.livemode,
			Known: true, Raw: []byte(raw)}
		require.NoError(t, batch.Append(schema.EventRow(&ev, "events", 0, int64(i), time.Now())...))
	}
	require.NoError(t, batch.Send())
}

func newAPI(t *testing.T) (*httptest.Server, driver.Conn, string) {
	t.Helper()
	conn, db := chtest.MigratedDatabase(t)
	return serve(t, conn, host.Config{Database: db, APIKey: key}), conn, db
}

// serve mounts the API on a host of cfg, as cmd does, over conn.
func serve(t *testing.T, conn host.Conn, cfg host.Config) *httptest.Server {
	t.Helper()
	h, err := host.New(cfg, conn, nil)
	require.NoError(t, err)
	api, err := query.New(query.Config{Database: cfg.Database, CursorKey: cfg.APIKey}, conn, nil)
	require.NoError(t, err)
	api.Register(h.V1())
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path, bearer string) (int, map[string]any) {
	t.Helper()
	var body map[string]any
	code := apitest.Get(t, srv.URL+path, bearer, &body) // every response is JSON
	return code, body
}

var day = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func fixture() []row {
	var rows []row
	add := func(n int, typ string, at time.Time, live bool) {
		for i := range n {
			rows = append(rows, row{fmt.Sprintf("%s-%v-%d-%d", typ, live, at.Unix(), i), typ, at.Add(time.Duration(i) * time.Second), live})
		}
	}
	add(10, "send.email.sent", day, true)
	add(8, "send.email.delivered", day.Add(time.Hour), true)
	add(1, "send.email.bounced", day.Add(2*time.Hour), true)
	add(3, "send.email.sent", day, false)
	add(2, "send.email.deferred", day.Add(3*time.Hour), true) // unknown type
	add(4, "send.email.sent", day.AddDate(0, 0, 2), true)     // outside [day, day+1d)
	add(5, "voip.call.incoming", day, true)                   // another service
	return rows
}

// want counts the fixture in Go: rows of service in [from, to) that match lm.
func want(rows []row, service string, from, to time.Time, lm string) (uint64, map[string]uint64) {
	by := map[string]uint64{}
	for _, typ := range schema.TypesOf(service) {
		by[typ] = 0
	}
	var total uint64
	for _, r := range rows {
		if schema.ServiceOf(r.typ) != service || r.at.Before(from) || !r.at.Before(to) {
			continue
		}
		if (lm == "true" && !r.livemode) || (lm == "false" && r.livemode) {
			continue
		}
		by[r.typ]++
		total++
	}
	return total, by
}

func TestStatsTotals(t *testing.T) {
	srv, conn, db := newAPI(t)
	rows := fixture()
	insert(t, conn, db, rows)
	from, to := day, day.AddDate(0, 0, 1)
	for _, tc := range []struct {
		name, service, query, lm string
	}{
		{"default livemode", "send", "", "true"},
		{"test mode", "send", "&livemode=false", "false"},
		{"all", "send", "&livemode=all", "all"},
		{"voip", "voip", "", "true"},
		{"empty service", "talk", "", "true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := fmt.Sprintf("/v1/stats/%s?from=%s&to=%d%s", tc.service, from.Format(time.RFC3339), to.UnixMilli(), tc.query)
			code, body := get(t, srv, q, key)
			require.Equal(t, http.StatusOK, code, body)
			total, by := want(rows, tc.service, from, to, tc.lm)
			assert.Equal(t, tc.service, body["service"])
			assert.Equal(t, "2026-03-01T00:00:00.000Z", body["from"])
			assert.Equal(t, "2026-03-02T00:00:00.000Z", body["to"])
			assert.Equal(t, tc.lm, body["livemode"])
			totals := body["totals"].(map[string]any)
			assert.EqualValues(t, total, totals["events"])
			gotBy := map[string]uint64{}
			for k, v := range totals["by_type"].(map[string]any) {
				gotBy[k] = uint64(v.(float64))
			}
			assert.Equal(t, by, gotBy)
		})
	}
}

func TestStatsDefaultRangeIsLastSevenDays(t *testing.T) {
	srv, conn, db := newAPI(t)
	now := time.Now().UTC()
	insert(t, conn, db, []row{
		{"recent", "platform.test", now.Add(-time.Hour), true},
		{"old", "platform.test", now.AddDate(0, 0, -8), true},
	})
	code, body := get(t, srv, "/v1/stats/platform", key)
	require.Equal(t, http.StatusOK, code, body)
	assert.EqualValues(t, 1, body["totals"].(map[string]any)["events"])
}

func TestBadInput(t *testing.T) {
	srv, _, _ := newAPI(t)
	for _, tc := range []struct {
		path  string
		code  int
		param string
	}{
		{"/v1/stats/email", 404, ""},
		{"/v1/stats/send?from=yesterday", 400, "from"},
		{"/v1/stats/send?to=2026-13-01T00:00:00Z", 400, "to"},
		{"/v1/stats/send?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", 400, "from"},
		{"/v1/stats/send?from=1&to=1", 400, "from"},
		{"/v1/stats/send?from=99999999999999999999999", 400, "from"},
		{"/v1/stats/send?from=-5", 400, "from"},
		{"/v1/stats/send?livemode=yes", 400, "livemode"},
		{"/v1/stats/send?livemode=" + url.QueryEscape("1 OR 1=1"), 400, "livemode"},
		{"/v1/stats/" + url.PathEscape("send' OR '1'='1"), 404, ""},
		{"/v1/nothing", 404, ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, body := get(t, srv, tc.path, key)
			assert.Equal(t, tc.code, code)
			e, ok := body["error"].(map[string]any)
			require.True(t, ok, "error body: %v", body)
			assert.NotEmpty(t, e["code"])
			assert.Contains(t, e["message"], tc.param)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for name, cfg := range map[string]query.Config{
		"no cursor key": {},
		"bad db":        {CursorKey: key, Database: "x-y"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.ApplyDefaults()
			assert.Error(t, cfg.Validate())
		})
	}
	ok := query.Config{CursorKey: key}
	ok.ApplyDefaults()
	assert.NoError(t, ok.Validate())
	assert.Equal(t, "hindsight", ok.Database)
}

// TestLimits: a series denser than the host's result-row limit is a 400
// naming granularity and that limit; more than 100 type patterns are a 400
// naming types.
func TestLimits(t *testing.T) {
	conn, db := chtest.MigratedDatabase(t)
	opts := sample.TestdataOptions(9)
	stored, err := sample.Events(2000, opts)
	require.NoError(t, err)
	chtest.InsertEvents(t, conn, db, stored)
	srv := serve(t, conn, host.Config{Database: db, APIKey: key, Limits: httpapi.Limits{MaxResultRows: 500}})

	code, body := get(t, srv, "/v1/stats/send?granularity=hour&from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z", key)
	assert.Equal(t, http.StatusBadRequest, code, "744 hours of several types exceed 500 rows")
	msg := body["error"].(map[string]any)["message"].(string)
	assert.True(t, strings.HasPrefix(msg, "granularity:"), body)
	assert.Contains(t, msg, "more than 500 rows")
	code, _ = get(t, srv, "/v1/stats/send?granularity=day&from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z", key)
	assert.Equal(t, http.StatusOK, code)

	many := strings.TrimSuffix(strings.Repeat("send.email.sent,", 101), ",")
	code, body = get(t, srv, "/v1/events?types="+many, key)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.True(t, strings.HasPrefix(body["error"].(map[string]any)["message"].(string), "types:"), body)
}
