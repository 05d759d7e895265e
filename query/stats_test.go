package query_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/apitest"
	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/schema"
)

// fixtureEvent is a sample event read with encoding/json, for expectations
// computed without the code under test.
type fixtureEvent struct {
	EventID   string          `json:"eventId"`
	Type      string          `json:"type"`
	Service   string          `json:"service"`
	CreatedAt int64           `json:"createdAt"`
	Livemode  *bool           `json:"livemode"`
	Data      json.RawMessage `json:"data"`
	data      map[string]any
}

// recipientDomain reads the domain of an email's first recipient.
func recipientDomain(e fixtureEvent) string {
	to := e.data["to"]
	if list, ok := to.([]any); ok && len(list) > 0 {
		to = list[0]
	}
	s, _ := to.(string)
	return strings.ToLower(s[strings.LastIndex(s, "@")+1:])
}

func (e fixtureEvent) live() bool    { return e.Livemode == nil || *e.Livemode }
func (e fixtureEvent) at() time.Time { return time.UnixMilli(e.CreatedAt).UTC() }
func (e fixtureEvent) str(k string) string {
	s, _ := e.data[k].(string)
	return s
}
func (e fixtureEvent) num(k string) float64 {
	f, _ := e.data[k].(float64)
	return f
}

// loadStatsFixture inserts a week of generated events across the US DST
// change of 2026-11-01 (stored once per eventId, as ingest stores them) and
// returns them as read by encoding/json.
func loadStatsFixture(t *testing.T, conn driver.Conn, db string) []fixtureEvent {
	t.Helper()
	opts := sample.Options{Seed: 42, Start: time.Date(2026, 10, 28, 0, 0, 0, 0, time.UTC), Span: 7 * 24 * time.Hour,
		Duplicates: 0.01, TestMode: 0.05, Unknown: 0.01}
	stored, err := sample.Events(3000, opts)
	require.NoError(t, err)
	chtest.InsertEvents(t, conn, db, stored)
	events := make([]fixtureEvent, len(stored))
	for i, ev := range stored {
		require.NoError(t, json.Unmarshal(ev.Raw, &events[i]))
		require.NoError(t, json.Unmarshal(events[i].Data, &events[i].data))
	}
	return events
}

// expectMetrics computes a service's metrics over events, from raw data.
func expectMetrics(service string, events []fixtureEvent) map[string]float64 {
	by := map[string]float64{}
	uniq := map[string]map[string]bool{"send.email.opened": {}, "send.email.clicked": {}}
	m := map[string]float64{}
	for _, e := range events {
		by[e.Type]++
		switch e.Type {
		case "send.email.bounced":
			m[e.str("bounceType")+"_bounced"]++
		case "send.email.opened", "send.email.clicked":
			uniq[e.Type][e.str("messageId")] = true
		case "telco.lookup.completed":
			if e.data["hasCarrier"] == true {
				m["lookups_with_carrier"]++
			}
			if e.data["hasInventory"] == true {
				m["lookups_with_inventory"]++
			}
		case "talk.speech.generated":
			m["characters"] += e.num("textLength")
		case "voip.call.completed":
			m["call_seconds"] += e.num("durationSec")
		case "transcribe.session.completed":
			m["audio_seconds"] += e.num("durationSec")
		}
	}
	switch service {
	case "send":
		return map[string]float64{
			"sent": by["send.email.sent"], "delivered": by["send.email.delivered"], "bounced": by["send.email.bounced"],
			"complained": by["send.email.complained"], "opened": by["send.email.opened"], "clicked": by["send.email.clicked"],
			"hard_bounced": m["hard_bounced"], "soft_bounced": m["soft_bounced"],
			"unique_opened": float64(len(uniq["send.email.opened"])), "unique_clicked": float64(len(uniq["send.email.clicked"])),
			"domains_verified": by["send.domain.verified"], "suppressions_added": by["send.suppression.added"],
		}
	case "telco":
		return map[string]float64{"lookups": by["telco.lookup.completed"], "searches": by["telco.search.completed"],
			"lookups_with_carrier": m["lookups_with_carrier"], "lookups_with_inventory": m["lookups_with_inventory"]}
	case "talk":
		return map[string]float64{"speeches": by["talk.speech.generated"], "characters": m["characters"]}
	case "voip":
		return map[string]float64{"incoming": by["voip.call.incoming"], "completed": by["voip.call.completed"],
			"missed": by["voip.call.missed"], "call_seconds": m["call_seconds"]}
	case "transcribe":
		return map[string]float64{"sessions": by["transcribe.session.completed"], "audio_seconds": m["audio_seconds"]}
	}
	return map[string]float64{"keys_created": by["platform.key.created"], "keys_revoked": by["platform.key.revoked"], "tests": by["platform.test"]}
}

var expectedRates = map[string][][3]string{
	"send": {{"delivery_rate", "delivered", "sent"}, {"bounce_rate", "bounced", "sent"}, {"hard_bounce_rate", "hard_bounced", "sent"},
		{"complaint_rate", "complained", "delivered"}, {"open_rate", "unique_opened", "delivered"}, {"click_rate", "unique_clicked", "delivered"}},
	"telco": {{"carrier_rate", "lookups_with_carrier", "lookups"}, {"inventory_rate", "lookups_with_inventory", "lookups"}},
	"talk":  {{"avg_characters", "characters", "speeches"}},
	"voip":  {{"answer_rate", "completed", "incoming"}, {"missed_rate", "missed", "incoming"}},
}

// checkBlock compares one T of a response with events it should summarise.
func checkBlock(t *testing.T, where, service string, got map[string]any, events []fixtureEvent) {
	t.Helper()
	assert.EqualValues(t, len(events), got["events"], "%s: events", where)
	byType := map[string]float64{}
	for _, e := range events {
		byType[e.Type]++
	}
	for typ, n := range got["by_type"].(map[string]any) {
		assert.EqualValues(t, byType[typ], n, "%s: by_type %s", where, typ)
	}
	want := expectMetrics(service, events)
	gotM := got["metrics"].(map[string]any)
	require.Len(t, gotM, len(want), "%s: metric names", where)
	for name, v := range want {
		assert.InDelta(t, v, gotM[name], 1e-6, "%s: metric %s", where, name)
	}
	rates := got["rates"].(map[string]any)
	require.Len(t, rates, len(expectedRates[service]), "%s: rate names", where)
	for _, r := range expectedRates[service] {
		rate := rates[r[0]].(map[string]any)
		assert.Equal(t, r[1]+" / "+r[2], rate["formula"], "%s: %s formula", where, r[0])
		num, den := want[r[1]], want[r[2]]
		assert.InDelta(t, num, rate["numerator"], 1e-6, "%s: %s numerator", where, r[0])
		assert.InDelta(t, den, rate["denominator"], 1e-6, "%s: %s denominator", where, r[0])
		if den == 0 {
			assert.Nil(t, rate["value"], "%s: %s of nothing is null", where, r[0])
		} else {
			assert.InDelta(t, num/den, rate["value"], 1e-9, "%s: %s value", where, r[0])
		}
	}
}

func filterEvents(events []fixtureEvent, service string, from, to time.Time, livemode string) []fixtureEvent {
	var out []fixtureEvent
	for _, e := range events {
		if e.Service != service || e.at().Before(from) || !e.at().Before(to) {
			continue
		}
		if (livemode == "true" && !e.live()) || (livemode == "false" && e.live()) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// bucketLabel names an event's bucket the simple way: its local clock.
func bucketLabel(g string, at time.Time, loc *time.Location) string {
	l := at.In(loc)
	switch g {
	case "hour":
		return l.Format("2006-01-02T15:00:00Z07:00")
	case "day":
		return l.Format("2006-01-02")
	case "week":
		return l.AddDate(0, 0, -((int(l.Weekday()) + 6) % 7)).Format("2006-01-02")
	}
	return l.Format("2006-01")
}

func responseLabel(g, bucket string) string {
	switch g {
	case "hour":
		return bucket
	case "month":
		return bucket[:7]
	}
	return bucket[:10]
}

func statsJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	var body map[string]any
	code := apitest.Get(t, url, key, &body)
	require.Equal(t, http.StatusOK, code, "%s: %v", url, body)
	return body
}

func TestStatsMetricsSeriesAndGroups(t *testing.T) {
	srv, conn, db := newAPI(t)
	events := loadStatsFixture(t, conn, db)
	checkStats(t, srv, events)
}

// TestStatsCountStoredCopiesOnce stores more copies of some events, in parts
// ClickHouse does not merge during the test, and records their keys as
// ingest does: every answer is still that of the events stored once. The
// complaints get two more copies each, enough to lift them into the top
// three types if copies counted.
func TestStatsCountStoredCopiesOnce(t *testing.T) {
	srv, conn, db := newAPI(t)
	events := loadStatsFixture(t, conn, db)
	chtest.StoreCopies(t, conn, db, "cityHash64(event_id) % 7 = 0 OR type = 'send.email.complained'", "type = 'send.email.complained'")
	checkStats(t, srv, events)
	var rows uint64
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count() FROM "+db+".events").Scan(&rows))
	require.Greater(t, rows, uint64(len(events))+100, "the copies were still unmerged")
}

// checkStats compares totals, series and groups of every service with what
// the events give, computed without the code under test.
func checkStats(t *testing.T, srv *httptest.Server, events []fixtureEvent) {
	from := time.Date(2026, 10, 28, 5, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 4, 17, 30, 0, 0, time.UTC)

	for _, service := range schema.Services {
		for _, lm := range []string{"true", "false", "all"} {
			t.Run(service+"/totals/livemode="+lm, func(t *testing.T) {
				body := statsJSON(t, fmt.Sprintf("%s/v1/stats/%s?from=%s&to=%d&livemode=%s", srv.URL, service, from.Format(time.RFC3339), to.UnixMilli(), lm))
				assert.Nil(t, body["series"])
				assert.Contains(t, body, "granularity")
				assert.Nil(t, body["granularity"])
				assert.Nil(t, body["groups"])
				checkBlock(t, "totals", service, body["totals"].(map[string]any), filterEvents(events, service, from, to, lm))
			})
		}
	}

	for _, tc := range []struct{ service, g, tz string }{
		{"send", "day", "UTC"}, {"send", "day", "America/New_York"}, {"send", "hour", "America/New_York"},
		{"voip", "week", "America/New_York"}, {"telco", "month", "Asia/Kolkata"}, {"talk", "hour", "Asia/Kolkata"},
	} {
		t.Run(fmt.Sprintf("%s/series/%s/%s", tc.service, tc.g, tc.tz), func(t *testing.T) {
			loc, err := time.LoadLocation(tc.tz)
			require.NoError(t, err)
			body := statsJSON(t, fmt.Sprintf("%s/v1/stats/%s?from=%s&to=%s&granularity=%s&tz=%s", srv.URL, tc.service,
				from.Format(time.RFC3339), to.Format(time.RFC3339), tc.g, tc.tz))
			assert.Equal(t, tc.tz, body["tz"])
			assert.Equal(t, tc.g, body["granularity"])
			all := filterEvents(events, tc.service, from, to, "true")
			checkBlock(t, "totals", tc.service, body["totals"].(map[string]any), all)
			perBucket := map[string][]fixtureEvent{}
			for _, e := range all {
				l := bucketLabel(tc.g, e.at(), loc)
				perBucket[l] = append(perBucket[l], e)
			}
			series := body["series"].([]any)
			first := bucketLabel(tc.g, from, loc)
			last := bucketLabel(tc.g, to.Add(-time.Millisecond), loc)
			labels := map[string]bool{}
			for i, raw := range series {
				b := raw.(map[string]any)
				bucket := b["bucket"].(string)
				start, err := time.Parse(time.RFC3339, bucket)
				require.NoError(t, err, bucket)
				_, off := start.In(loc).Zone()
				_, gotOff := start.Zone()
				assert.Equal(t, off, gotOff, "bucket %s carries the zone's offset", bucket)
				l := responseLabel(tc.g, bucket)
				assert.False(t, labels[l], "bucket %s twice", l)
				labels[l] = true
				if i == 0 {
					assert.Equal(t, first, l, "the first bucket holds from")
				}
				if i == len(series)-1 {
					assert.Equal(t, last, l, "the last bucket holds to - 1ms")
				}
				checkBlock(t, "bucket "+bucket, tc.service, b, perBucket[l])
			}
			for l := range perBucket {
				assert.True(t, labels[l], "events of bucket %s are in the series", l)
			}
			if tc.g == "hour" && tc.tz == "America/New_York" {
				// 2026-11-01 01:00 happens twice: EDT, then EST.
				assert.True(t, labels["2026-11-01T01:00:00-04:00"] && labels["2026-11-01T01:00:00-05:00"], "the repeated hour is two buckets")
				assert.Len(t, series, int(to.Sub(from.Truncate(time.Hour)).Hours())+1)
			}
			if tc.g == "day" && tc.tz == "America/New_York" {
				assert.True(t, labels["2026-11-01"], "the 25-hour day is one bucket")
			}
		})
	}

	groupKey := map[string]func(fixtureEvent) string{
		"type":             func(e fixtureEvent) string { return e.Type },
		"voice":            func(e fixtureEvent) string { return e.str("voice") },
		"npa":              func(e fixtureEvent) string { return e.str("npa") },
		"format":           func(e fixtureEvent) string { return e.str("format") },
		"recipient_domain": recipientDomain,
		"sender_domain": func(e fixtureEvent) string {
			a, err := mail.ParseAddress(e.str("from"))
			if err != nil {
				return ""
			}
			return strings.ToLower(a.Address[strings.LastIndex(a.Address, "@")+1:])
		},
	}
	for _, tc := range []struct {
		service, groupBy string
		limit            int
	}{
		{"send", "recipient_domain", 0}, {"send", "sender_domain", 0}, {"send", "type", 3},
		{"telco", "npa", 0}, {"telco", "type", 0}, {"talk", "voice", 2}, {"talk", "format", 0}, {"talk", "type", 0},
		{"voip", "type", 0}, {"transcribe", "type", 0}, {"platform", "type", 0},
	} {
		t.Run(fmt.Sprintf("%s/group_by=%s/limit=%d", tc.service, tc.groupBy, tc.limit), func(t *testing.T) {
			u := fmt.Sprintf("%s/v1/stats/%s?from=%s&to=%s&group_by=%s&livemode=all", srv.URL, tc.service, from.Format(time.RFC3339), to.Format(time.RFC3339), tc.groupBy)
			if tc.limit > 0 {
				u += fmt.Sprintf("&limit=%d", tc.limit)
			}
			body := statsJSON(t, u)
			perGroup := map[string][]fixtureEvent{}
			for _, e := range filterEvents(events, tc.service, from, to, "all") {
				k := groupKey[tc.groupBy](e)
				perGroup[k] = append(perGroup[k], e)
			}
			groups := body["groups"].([]any)
			want := len(perGroup)
			if tc.limit > 0 {
				want = min(want, tc.limit)
			}
			require.Len(t, groups, want)
			prev := math.Inf(1)
			for _, raw := range groups {
				g := raw.(map[string]any)
				n := g["events"].(float64)
				assert.LessOrEqual(t, n, prev, "groups sorted by events, descending")
				prev = n
				checkBlock(t, "group "+g["key"].(string), tc.service, g, perGroup[g["key"].(string)])
			}
			if tc.limit > 0 {
				// The groups kept are the largest.
				var sizes []int
				for _, evs := range perGroup {
					sizes = append(sizes, len(evs))
				}
				kept := 0
				for _, s := range sizes {
					if float64(s) > prev {
						kept++
					}
				}
				assert.LessOrEqual(t, kept, tc.limit)
			}
		})
	}

	// Filters: each computed from the raw events with groupKey's readings.
	groupKey["message_id"] = func(e fixtureEvent) string { return e.str("messageId") }
	groupKey["bounce_type"] = func(e fixtureEvent) string { return e.str("bounceType") }
	// common returns the n most frequent values of a dimension in a service.
	common := func(service, dim string, n int) []string {
		count := map[string]int{}
		for _, e := range filterEvents(events, service, from, to, "all") {
			if v := groupKey[dim](e); v != "" {
				count[v]++
			}
		}
		var vs []string
		for v := range count {
			vs = append(vs, v)
		}
		sort.Slice(vs, func(i, j int) bool {
			return count[vs[i]] > count[vs[j]] || count[vs[i]] == count[vs[j]] && vs[i] < vs[j]
		})
		return vs[:min(n, len(vs))]
	}
	// An email never stored: no events, read from nowhere.
	none := statsJSON(t, fmt.Sprintf("%s/v1/stats/send?from=%s&to=%s&livemode=all&message_id=msg_never_stored", srv.URL, from.Format(time.RFC3339), to.Format(time.RFC3339)))
	assert.EqualValues(t, 0, none["totals"].(map[string]any)["events"], "an email never stored")
	type cond struct {
		dim    string
		values []string
	}
	for _, tc := range []struct {
		service string
		conds   []cond
		groupBy string
	}{
		{"send", []cond{{"recipient_domain", common("send", "recipient_domain", 2)}}, ""},
		{"send", []cond{{"bounce_type", []string{"hard"}}}, ""},
		{"send", []cond{{"message_id", common("send", "message_id", 3)}}, ""},
		{"send", []cond{{"message_id", append(common("send", "message_id", 1), "msg_never_stored")}}, ""},
		{"send", []cond{{"message_id", common("send", "message_id", 2)}}, "recipient_domain"},
		{"send", []cond{{"recipient_domain", common("send", "recipient_domain", 1)}, {"sender_domain", common("send", "sender_domain", 2)}}, ""},
		{"send", []cond{{"recipient_domain", common("send", "recipient_domain", 1)}}, "sender_domain"},
		{"send", []cond{{"sender_domain", common("send", "sender_domain", 1)}}, ""},
		{"send", []cond{{"sender_domain", common("send", "sender_domain", 2)}}, "recipient_domain"},
		{"send", []cond{{"bounce_type", []string{"soft", "hard"}}}, "sender_domain"},
		{"telco", []cond{{"npa", common("telco", "npa", 3)}}, ""},
		{"talk", []cond{{"voice", common("talk", "voice", 1)}, {"format", common("talk", "format", 2)}}, "type"},
	} {
		var q []string
		for _, c := range tc.conds {
			require.NotEmpty(t, c.values, "%s has values of %s", tc.service, c.dim)
			vs := append([]string{}, c.values...)
			if c.dim == "recipient_domain" || c.dim == "sender_domain" {
				vs[0] = strings.ToUpper(vs[0]) // domains match whatever their case
			}
			q = append(q, c.dim+"="+url.QueryEscape(strings.Join(vs, ",")))
		}
		t.Run(fmt.Sprintf("%s/filter/%s/group_by=%s", tc.service, strings.Join(q, "&"), tc.groupBy), func(t *testing.T) {
			u := fmt.Sprintf("%s/v1/stats/%s?from=%s&to=%s&livemode=all&%s", srv.URL, tc.service, from.Format(time.RFC3339), to.Format(time.RFC3339), strings.Join(q, "&"))
			if tc.groupBy != "" {
				u += "&group_by=" + tc.groupBy
			}
			body := statsJSON(t, u)
			var kept []fixtureEvent
			for _, e := range filterEvents(events, tc.service, from, to, "all") {
				ok := true
				for _, c := range tc.conds {
					ok = ok && slices.Contains(c.values, groupKey[c.dim](e))
				}
				if ok {
					kept = append(kept, e)
				}
			}
			require.NotEmpty(t, kept)
			checkBlock(t, "filtered totals", tc.service, body["totals"].(map[string]any), kept)
			if tc.groupBy == "" {
				return
			}
			perGroup := map[string][]fixtureEvent{}
			for _, e := range kept {
				perGroup[groupKey[tc.groupBy](e)] = append(perGroup[groupKey[tc.groupBy](e)], e)
			}
			groups := body["groups"].([]any)
			require.Len(t, groups, len(perGroup))
			for _, raw := range groups {
				g := raw.(map[string]any)
				checkBlock(t, "filtered group "+g["key"].(string), tc.service, g, perGroup[g["key"].(string)])
			}
		})
	}
}

func TestStatsBadParameters(t *testing.T) {
	srv, _, _ := newAPI(t)
	for _, tc := range []struct{ query, param string }{
		{"granularity=minute", "granularity"},
		{"granularity=hour&from=1990-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "granularity"},
		{"tz=Mars/Olympus", "tz"},
		{"tz=../../etc/passwd", "tz"},
		{"tz=Local", "tz"},
		{"group_by=voice", "group_by"},
		{"group_by=raw", "group_by"},
		{"group_by=recipient_domain%3BDROP", "group_by"},
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=99999999999999999999", "limit"},
		{"limit=ten", "limit"},
		{"npa=212", "npa"},
		{"voice=alloy&recipient_domain=gmail.com", "voice"},
		{"recipient_domain=gmail.com,,yahoo.com", "recipient_domain"},
		{"message_id=" + strings.Repeat("m", 257), "message_id"},
		{"bounce_type=" + manyValues(101), "bounce_type"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, body := get(t, srv, "/v1/stats/send?"+tc.query, key)
			assert.Equal(t, http.StatusBadRequest, code)
			e := body["error"].(map[string]any)
			assert.Equal(t, "invalid_parameter", e["code"])
			assert.True(t, strings.HasPrefix(e["message"].(string), tc.param+":"), e["message"])
		})
	}
}

// manyValues is a filter's value list of n distinct values.
func manyValues(n int) string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprint("v", i)
	}
	return strings.Join(vs, ",")
}
