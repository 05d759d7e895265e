package query_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/apitest"
	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/schema"
)

type page struct {
	Data       []json.RawMessage `json:"data"`
	NextCursor *string           `json:"next_cursor"`
}

func listPage(t *testing.T, base, query string) page {
	t.Helper()
	var body json.RawMessage
	code := apitest.Get(t, base+"/v1/events?"+query, key, &body)
	require.Equal(t, http.StatusOK, code, string(body))
	var p page
	require.NoError(t, json.Unmarshal(body, &p), string(body))
	return p
}

func TestListEventsPagesInOrder(t *testing.T) {
	srv, conn, db := newAPI(t)
	events := loadStatsFixture(t, conn, db)
	from := time.Date(2026, 10, 29, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

	for _, tc := range []struct {
		types, livemode string
		match           func(fixtureEvent) bool
		filters         url.Values
	}{
		{"", "all", func(e fixtureEvent) bool {
			return e.Service == "send" && (recipientDomain(e) == "gmail.com" || recipientDomain(e) == "yahoo.com")
		}, url.Values{"recipient_domain": {"Gmail.com,yahoo.com"}}},
		{"send.email.*", "all", func(e fixtureEvent) bool {
			return strings.HasPrefix(e.Type, "send.email.") && e.str("bounceType") == "soft"
		}, url.Values{"bounce_type": {"soft"}}},
		{"*", "all", func(e fixtureEvent) bool {
			return e.Service == "telco" && (e.str("npa") == "212" || e.str("npa") == "415")
		},
			url.Values{"npa": {"212,415"}}},
		{"", "all", func(fixtureEvent) bool { return true }, nil},
		{"send.email.*,voip.call.missed", "true", func(e fixtureEvent) bool {
			return e.live() && (strings.HasPrefix(e.Type, "send.email.") || e.Type == "voip.call.missed")
		}, nil},
		{"telco.*", "false", func(e fixtureEvent) bool { return !e.live() && e.Service == "telco" }, nil},
		{"*", "true", func(e fixtureEvent) bool { return e.live() }, nil},
	} {
		t.Run(tc.types+"/"+tc.livemode+"/"+tc.filters.Encode(), func(t *testing.T) {
			var want []fixtureEvent
			for _, e := range events {
				if !e.at().Before(from) && e.at().Before(to) && tc.match(e) {
					want = append(want, e)
				}
			}
			sort.Slice(want, func(i, j int) bool {
				if want[i].CreatedAt != want[j].CreatedAt {
					return want[i].CreatedAt < want[j].CreatedAt
				}
				return want[i].EventID < want[j].EventID
			})
			require.NotEmpty(t, want)

			q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {fmt.Sprint(to.UnixMilli())}, "livemode": {tc.livemode}, "limit": {"37"}}
			if tc.types != "" {
				q.Set("types", tc.types)
			}
			for k, v := range tc.filters {
				q[k] = v
			}
			var got []string
			pages := 0
			for {
				p := listPage(t, srv.URL, q.Encode())
				pages++
				require.LessOrEqual(t, len(p.Data), 37)
				for _, raw := range p.Data {
					var e fixtureEvent
					require.NoError(t, json.Unmarshal(raw, &e))
					got = append(got, e.EventID)
				}
				if p.NextCursor == nil {
					break
				}
				q.Set("cursor", *p.NextCursor)
				require.Less(t, pages, 1000)
			}
			var wantIDs []string
			for _, e := range want {
				wantIDs = append(wantIDs, e.EventID)
			}
			assert.Equal(t, wantIDs, got, "every event once, in (createdAt, eventId) order")
			assert.Equal(t, (len(want)+36)/37, pages)
		})
	}
}

// TestListEventsCursorUnderConcurrentIngest adds events before and after a
// page's end while a client pages: later pages neither repeat nor skip the
// events that were there, and pick up the new ones after the cursor.
func TestListEventsCursorUnderConcurrentIngest(t *testing.T) {
	srv, conn, db := newAPI(t)
	at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	var rows []row
	for i := range 10 {
		rows = append(rows, row{fmt.Sprintf("e%02d", i), "platform.test", at.Add(time.Duration(i) * time.Minute), true})
	}
	insert(t, conn, db, rows)
	q := "from=2026-06-01T00:00:00Z&to=2026-06-02T00:00:00Z&limit=4"
	ids := func(p page) []string {
		var out []string
		for _, raw := range p.Data {
			var e fixtureEvent
			require.NoError(t, json.Unmarshal(raw, &e))
			out = append(out, e.EventID)
		}
		return out
	}
	p1 := listPage(t, srv.URL, q)
	assert.Equal(t, []string{"e00", "e01", "e02", "e03"}, ids(p1))
	insert(t, conn, db, []row{
		{"early", "platform.test", at.Add(90 * time.Second), true}, // before the cursor: not shown again
		{"late", "platform.test", at.Add(20 * time.Minute), true},  // after it: shown
		{"e03a", "platform.test", at.Add(3 * time.Minute), true},   // same createdAt as the cursor, later id
	})
	var rest []string
	for cur := p1.NextCursor; cur != nil; {
		p := listPage(t, srv.URL, q+"&cursor="+url.QueryEscape(*cur))
		rest = append(rest, ids(p)...)
		cur = p.NextCursor
	}
	assert.Equal(t, []string{"e03a", "e04", "e05", "e06", "e07", "e08", "e09", "late"}, rest)
}

func TestListEventsReturnsOriginalBytes(t *testing.T) {
	srv, conn, db := newAPI(t)
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	insert(t, conn, db, []row{{"evt_a", "platform.test", at, false}})
	p := listPage(t, srv.URL, "livemode=all&from=2026-05-01T00:00:00Z&to=2026-05-02T00:00:00Z")
	require.Len(t, p.Data, 1)
	assert.Equal(t, fmt.Sprintf(`{"eventId":"evt_a","type":"platform.test","service":"platform","data":{},"createdAt":%d}`, at.UnixMilli()), string(p.Data[0]))
	assert.Nil(t, p.NextCursor)

	code, body := get(t, srv, "/v1/events/evt_a", key)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "evt_a", body["eventId"])
	code, body = get(t, srv, "/v1/events/"+url.PathEscape("evt_missing' OR '1'='1"), key)
	assert.Equal(t, http.StatusNotFound, code)
	assert.Equal(t, "not_found", body["error"].(map[string]any)["code"])
}

func TestListEventsBadInput(t *testing.T) {
	srv, conn, db := newAPI(t)
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	insert(t, conn, db, []row{{"a", "platform.test", at, true}, {"b", "platform.test", at, true}})
	p := listPage(t, srv.URL, "from=2026-05-01T00:00:00Z&to=2026-05-02T00:00:00Z&limit=1")
	require.NotNil(t, p.NextCursor)
	raw, err := base64.RawURLEncoding.DecodeString(*p.NextCursor)
	require.NoError(t, err)
	tampered := append([]byte(nil), raw...)
	tampered[len(tampered)-3] ^= 1
	forged := base64.RawURLEncoding.EncodeToString(append(make([]byte, 16), []byte(`{"c":0,"e":""}`)...))

	for _, tc := range []struct{ query, param string }{
		{"types=send", "types"},
		{"types=send.*.sent", "types"},
		{"types=" + url.QueryEscape("send.*,' OR 1=1 --"), "types"},
		{"types=", ""},
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"cursor=" + base64.RawURLEncoding.EncodeToString(tampered), "cursor"},
		{"cursor=" + forged, "cursor"},
		{"cursor=%%%", "query string"},
		{"cursor=abc", "cursor"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, body := get(t, srv, "/v1/events?"+tc.query, key)
			if tc.param == "" {
				assert.Equal(t, http.StatusOK, code, "an empty types list means every type")
				return
			}
			assert.Equal(t, http.StatusBadRequest, code, body)
			assert.True(t, strings.HasPrefix(body["error"].(map[string]any)["message"].(string), tc.param+":"), body)
		})
	}
}

func TestEventTypes(t *testing.T) {
	srv, conn, db := newAPI(t)
	now := time.Now().UTC()
	insert(t, conn, db, []row{
		{"a", "send.email.sent", now.Add(-time.Hour), true},
		{"b", "send.email.sent", now.Add(-48 * time.Hour), false},
		{"c", "send.email.sent", now.AddDate(0, 0, -31), true},
		{"d", "send.email.deferred", now.Add(-time.Hour), true},
	})
	code, body := get(t, srv, "/v1/event-types", key)
	require.Equal(t, http.StatusOK, code)
	data := body["data"].([]any)
	assert.Len(t, data, len(schema.Catalog()))
	for _, raw := range data {
		et := raw.(map[string]any)
		want := 0.0
		if et["type"] == "send.email.sent" {
			want = 2
		}
		assert.Equal(t, want, et["count_30d"], et["type"])
		assert.NotEmpty(t, et["description"])
		assert.NotEmpty(t, et["fields"])
	}
	assert.Equal(t, []any{map[string]any{"type": "send.email.deferred", "service": "send", "count_30d": 1.0}}, body["unknown"])
}

func TestEventTypesCountCopiesOnce(t *testing.T) {
	srv, conn, db := newAPI(t)
	now := time.Now().UTC()
	insert(t, conn, db, []row{
		{"a", "send.email.sent", now.Add(-time.Hour), true},
		{"b", "send.email.sent", now.Add(-2 * time.Hour), true},
		{"c", "send.email.deferred", now.Add(-time.Hour), true},
	})
	chtest.StoreCopies(t, conn, db, "event_id IN ('a', 'c')", "event_id = 'a'")
	code, body := get(t, srv, "/v1/event-types", key)
	require.Equal(t, http.StatusOK, code)
	for _, raw := range body["data"].([]any) {
		if et := raw.(map[string]any); et["type"] == "send.email.sent" {
			assert.Equal(t, 2.0, et["count_30d"])
		}
	}
	assert.Equal(t, []any{map[string]any{"type": "send.email.deferred", "service": "send", "count_30d": 1.0}}, body["unknown"])
}

// TestListEventsPagesAreBoundedInBytes stores 40 events of 300 kB each: a
// page of 100 stops once it holds 4 MiB, and the cursors still give every
// event once.
func TestListEventsPagesAreBoundedInBytes(t *testing.T) {
	srv, conn, db := newAPI(t)
	var p schema.Parser
	var events []schema.Event
	pad := strings.Repeat("x", 300_000)
	for i := range 40 {
		raw := fmt.Sprintf(`{"eventId":"big-%02d","type":"platform.test","service":"platform","livemode":false,"createdAt":%d,"data":{"message":%q,"endpoint_id":"e"}}`,
			i, time.Date(2026, 10, 5, 0, 0, i, 0, time.UTC).UnixMilli(), pad)
		ev, err := p.Parse([]byte(raw))
		require.NoError(t, err)
		events = append(events, ev)
	}
	chtest.InsertEvents(t, conn, db, events)
	q := "from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z&livemode=all&limit=100"
	seen := map[string]bool{}
	pages := 0
	for cursor := ""; ; pages++ {
		pg := listPage(t, srv.URL, q+cursor)
		assert.LessOrEqual(t, len(pg.Data), 15, "4 MiB of 300 kB events, and the one that crossed it")
		for _, raw := range pg.Data {
			var ev struct{ EventID string }
			require.NoError(t, json.Unmarshal(raw, &ev))
			assert.False(t, seen[ev.EventID], "once: %s", ev.EventID)
			seen[ev.EventID] = true
		}
		if pg.NextCursor == nil {
			break
		}
		cursor = "&cursor=" + url.QueryEscape(*pg.NextCursor)
	}
	assert.Len(t, seen, 40)
	assert.GreaterOrEqual(t, pages, 2)
}

// platformTests are platform.test events named prefix-0, prefix-1, ... at
// t0 plus each offset.
func platformTests(t *testing.T, prefix string, t0 time.Time, offsets ...time.Duration) []schema.Event {
	t.Helper()
	var p schema.Parser
	events := make([]schema.Event, len(offsets))
	for i, off := range offsets {
		var err error
		events[i], err = p.Parse(fmt.Appendf(nil, `{"eventId":"%s-%d","type":"platform.test","service":"platform","livemode":false,"createdAt":%d,"data":{"message":"m","endpoint_id":"e"}}`,
			prefix, i, t0.Add(off).UnixMilli()))
		require.NoError(t, err)
	}
	return events
}

// listAll follows the listing's cursors from the first page and returns the
// eventIds in order; every page with a cursor must be full.
func listAll(t *testing.T, srv *httptest.Server, query string, limit int) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for {
		pg := listPage(t, srv.URL, fmt.Sprintf("%s&limit=%d%s", query, limit, cursor))
		for _, raw := range pg.Data {
			var ev struct{ EventID string }
			require.NoError(t, json.Unmarshal(raw, &ev))
			ids = append(ids, ev.EventID)
		}
		if pg.NextCursor == nil {
			return ids
		}
		assert.Len(t, pg.Data, limit, "a page with a cursor is full, copies or not")
		cursor = "&cursor=" + url.QueryEscape(*pg.NextCursor)
	}
}

// TestListEventsShowsACopyOnce: an event stored twice (two ingest processes
// each stored a producer retry, not merged yet) is listed once, on any page
// size, and pages stay full.
func TestListEventsShowsACopyOnce(t *testing.T) {
	srv, conn, db := newAPI(t)
	events := platformTests(t, "e", time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC), 0, time.Second, 2*time.Second, 3*time.Second, 4*time.Second)
	chtest.InsertEvents(t, conn, db, events)
	chtest.InsertEvents(t, conn, db, events[1:3]) // copies, in other parts
	chtest.InsertEvents(t, conn, db, events[1:3])
	for _, limit := range []int{1, 2, 3, 100} {
		ids := listAll(t, srv, "from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z&livemode=all", limit)
		assert.Equal(t, []string{"e-0", "e-1", "e-2", "e-3", "e-4"}, ids, "limit %d", limit)
	}
}

// TestListEventsAcrossWindows: a page reads a createdAt window after its
// cursor at a time, widening it; events hours and weeks apart, some stored
// twice, come in order, each once, in full pages.
func TestListEventsAcrossWindows(t *testing.T) {
	srv, conn, db := newAPI(t)
	events := platformTests(t, "w", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		0, time.Millisecond, 5*time.Hour, 40*24*time.Hour, 40*24*time.Hour+time.Millisecond, 300*24*time.Hour)
	chtest.InsertEvents(t, conn, db, events)
	chtest.InsertEvents(t, conn, db, events[2:4]) // copies across a window's end
	var want []string
	for _, ev := range events {
		want = append(want, ev.ID)
	}
	for _, limit := range []int{1, 2, 4, 100} {
		assert.Equal(t, want, listAll(t, srv, "from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z&livemode=all", limit), "limit %d", limit)
	}
}
