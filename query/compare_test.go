package query_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStatsCompareZTest checks each rate's change against values worked out
// by hand from counts the fixture fixes: 60 of 1000 sent bounced this week
// and 30 of 1000 the week before, and so on.
func TestStatsCompareZTest(t *testing.T) {
	srv, conn, db := newAPI(t)
	cur := time.Date(2026, 9, 8, 0, 0, 0, 0, time.UTC)
	prev := cur.AddDate(0, 0, -7)
	var rows []row
	add := func(n int, typ string, at time.Time) {
		for i := range n {
			rows = append(rows, row{fmt.Sprintf("%s-%d-%d", typ, at.Unix(), i), typ, at.Add(time.Duration(i) * time.Second), true})
		}
	}
	add(1000, "send.email.sent", cur)
	add(940, "send.email.delivered", cur.Add(time.Hour))
	add(60, "send.email.bounced", cur.Add(2*time.Hour))
	add(5, "send.email.complained", cur.Add(3*time.Hour))
	add(1000, "send.email.sent", prev)
	add(970, "send.email.delivered", prev.Add(time.Hour))
	add(30, "send.email.bounced", prev.Add(2*time.Hour))
	add(4, "send.email.complained", prev.Add(3*time.Hour))
	add(50, "voip.call.incoming", cur)
	add(40, "voip.call.completed", cur.Add(time.Hour))
	add(3, "talk.speech.generated", cur)
	add(3, "talk.speech.generated", prev)
	insert(t, conn, db, rows)

	ask := func(service, compare string) map[string]any {
		code, body := get(t, srv, fmt.Sprintf("/v1/stats/%s?from=%s&to=%s&compare=%s", service,
			cur.Format(time.RFC3339), cur.AddDate(0, 0, 7).Format(time.RFC3339), compare), key)
		require.Equal(t, http.StatusOK, code, body)
		return body
	}
	changeOf := func(body map[string]any, rate string) map[string]any {
		return body["totals"].(map[string]any)["rates"].(map[string]any)[rate].(map[string]any)["change"].(map[string]any)
	}

	for _, compare := range []string{"previous", prev.Format(time.RFC3339) + "," + cur.Format(time.RFC3339)} {
		send := ask("send", compare)
		c := send["compare"].(map[string]any)
		assert.Equal(t, "2026-09-01T00:00:00.000Z", c["from"])
		assert.Equal(t, "2026-09-08T00:00:00.000Z", c["to"])
		assert.Contains(t, c["method"], "two-proportion z-test")
		p := send["previous"].(map[string]any)
		assert.EqualValues(t, 2004, p["events"])
		assert.EqualValues(t, 970, p["metrics"].(map[string]any)["delivered"])

		// p1 = 60/1000, p2 = 30/1000, pooled p = 90/2000 = 0.045,
		// se = sqrt(0.045 × 0.955 × (1/1000 + 1/1000)) = 0.0092710,
		// z = 0.03 / 0.0092710 = 3.2359.
		bounce := changeOf(send, "bounce_rate")
		assert.InDelta(t, 0.03, bounce["absolute"], 1e-12)
		assert.InDelta(t, 1.0, bounce["relative"], 1e-12)
		assert.InDelta(t, 3.2359, bounce["z"], 1e-4)
		assert.Equal(t, true, bounce["significant"])
		// 940/1000 against 970/1000: the same pooled se, z = -3.2359.
		delivery := changeOf(send, "delivery_rate")
		assert.InDelta(t, -0.03, delivery["absolute"], 1e-12)
		assert.InDelta(t, -0.03/0.97, delivery["relative"], 1e-12)
		assert.InDelta(t, -3.2359, delivery["z"], 1e-4)
		assert.Equal(t, true, delivery["significant"])
		// 5/940 = 0.0053191 against 4/970 = 0.0041237: pooled 9/1910,
		// se = sqrt(0.0047120 × 0.9952880 × (1/940 + 1/970)) = 0.0031343,
		// z = 0.0011954 / 0.0031343 = 0.3814: not significant.
		complaint := changeOf(send, "complaint_rate")
		assert.InDelta(t, 0.0011954, complaint["absolute"], 1e-7)
		assert.InDelta(t, 0.28989, complaint["relative"], 1e-5)
		assert.InDelta(t, 0.3814, complaint["z"], 1e-4)
		assert.Equal(t, false, complaint["significant"])
		// 0/940 opens against 0/970: no difference at all.
		open := changeOf(send, "open_rate")
		assert.EqualValues(t, 0, open["absolute"])
		assert.Nil(t, open["relative"], "relative to 0 is null")
		assert.EqualValues(t, 0, open["z"])
		assert.Equal(t, false, open["significant"])

		// No calls the week before: nothing to compare with.
		answer := changeOf(ask("voip", compare), "answer_rate")
		for _, k := range []string{"absolute", "relative", "z", "significant"} {
			assert.Contains(t, answer, k)
			assert.Nil(t, answer[k], k)
		}
		// An average is not a proportion: its change has no z.
		avg := changeOf(ask("talk", compare), "avg_characters")
		assert.EqualValues(t, 0, avg["absolute"])
		assert.Nil(t, avg["z"])
		assert.Nil(t, avg["significant"])
	}
}

// TestStatsCompareSeriesAndGroups compares a period of the stats fixture
// with the one before it: the previous totals, each bucket's counterpart in
// the same place of its series and each group's of the same key, all from
// the raw events.
func TestStatsCompareSeriesAndGroups(t *testing.T) {
	srv, conn, db := newAPI(t)
	events := loadStatsFixture(t, conn, db)
	from := time.Date(2026, 11, 1, 5, 0, 0, 0, time.UTC)
	to := from.AddDate(0, 0, 3)
	prevFrom := from.AddDate(0, 0, -3)
	loc, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)

	body := statsJSON(t, fmt.Sprintf("%s/v1/stats/send?from=%s&to=%s&granularity=day&tz=America/New_York&compare=previous",
		srv.URL, from.Format(time.RFC3339), to.Format(time.RFC3339)))
	checkBlock(t, "previous", "send", body["previous"].(map[string]any), filterEvents(events, "send", prevFrom, from, "true"))
	perBucket := map[string][]fixtureEvent{}
	for _, e := range filterEvents(events, "send", prevFrom, from, "true") {
		perBucket[bucketLabel("day", e.at(), loc)] = append(perBucket[bucketLabel("day", e.at(), loc)], e)
	}
	// 01:00 EDT on Nov 1 to 00:00 EST on Nov 4: three days, while the
	// period before runs 01:00 EDT Oct 29 to 01:00 EDT Nov 1, four buckets.
	series := body["series"].([]any)
	require.Len(t, series, 3)
	for i, raw := range series {
		b := raw.(map[string]any)
		p := b["previous"].(map[string]any)
		want := prevFrom.In(loc).AddDate(0, 0, i).Format("2006-01-02")
		assert.Equal(t, want, responseLabel("day", p["bucket"].(string)), "bucket %d's counterpart", i)
		checkBlock(t, "previous of "+b["bucket"].(string), "send", p, perBucket[want])
		curRate := b["rates"].(map[string]any)["delivery_rate"].(map[string]any)
		prevRate := p["rates"].(map[string]any)["delivery_rate"].(map[string]any)
		assert.InDelta(t, curRate["value"].(float64)-prevRate["value"].(float64), curRate["change"].(map[string]any)["absolute"], 1e-12)
	}

	// An explicit period of two days: the last two buckets have none.
	body = statsJSON(t, fmt.Sprintf("%s/v1/stats/send?from=%s&to=%s&granularity=day&tz=UTC&compare=%s,%s",
		srv.URL, from.Format(time.RFC3339), to.Format(time.RFC3339), prevFrom.Format(time.RFC3339), prevFrom.AddDate(0, 0, 1).Format(time.RFC3339)))
	series = body["series"].([]any)
	require.Len(t, series, 4)
	for i, raw := range series {
		_, has := raw.(map[string]any)["previous"]
		assert.Equal(t, i < 2, has, "bucket %d has a counterpart", i)
	}

	// Groups: the previous period counts the groups of this one.
	body = statsJSON(t, fmt.Sprintf("%s/v1/stats/send?from=%s&to=%s&group_by=recipient_domain&limit=3&livemode=all&compare=previous",
		srv.URL, from.Format(time.RFC3339), to.Format(time.RFC3339)))
	perGroup := map[string][]fixtureEvent{}
	for _, e := range filterEvents(events, "send", prevFrom, from, "all") {
		perGroup[recipientDomain(e)] = append(perGroup[recipientDomain(e)], e)
	}
	groups := body["groups"].([]any)
	require.Len(t, groups, 3)
	for _, raw := range groups {
		g := raw.(map[string]any)
		checkBlock(t, "previous of group "+g["key"].(string), "send", g["previous"].(map[string]any), perGroup[g["key"].(string)])
	}
}

func TestStatsCompareBadParameters(t *testing.T) {
	srv, _, _ := newAPI(t)
	for _, q := range []string{"compare=last", "compare=2026-01-02T00:00:00Z", "compare=2026-01-02T00:00:00Z,2026-01-01T00:00:00Z", "compare=x,y"} {
		code, body := get(t, srv, "/v1/stats/send?"+q, key)
		assert.Equal(t, http.StatusBadRequest, code, q)
		msg := body["error"].(map[string]any)["message"].(string)
		assert.True(t, strings.HasPrefix(msg, "compare"), msg)
	}
}
