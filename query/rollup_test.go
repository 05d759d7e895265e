package query

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/schema"
)

// TestRollupAnswersAsTheEvents sends random stats requests (ranges that
// start and end anywhere, inside quarter hours too; zones a half and a
// quarter hour off UTC's hours; every granularity, group_by, livemode and
// filter) and requires the same JSON counted through the rollup and
// engagements as counted from the events alone. Some events are stored
// twice: copies merged away before anything recorded them (the rollup
// counted them), before and after the rollup was checked, and copies
// unmerged and recorded; their quarter hours must be read from the events.
// Half the requests run before the rollup is checked again, half after.
func TestRollupAnswersAsTheEvents(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()
	_, err := schema.Migrate(ctx, conn, db)
	require.NoError(t, err)
	start := time.Date(2026, 10, 28, 0, 0, 0, 0, time.UTC)
	events, err := sample.Events(4000, sample.Options{Seed: 7, Start: start, Span: 7 * 24 * time.Hour, TestMode: 0.1, Unknown: 0.01})
	require.NoError(t, err)
	chtest.InsertEvents(t, conn, db, events)
	chtest.StoreMergedCopies(t, conn, db, "cityHash64(event_id) % 401 = 0")
	check := func() {
		n, err := schema.CheckRollup(ctx, conn, db, 0, math.MaxInt64)
		require.NoError(t, err)
		assert.NotZero(t, n, "the quarter hours holding copies are not checked")
	}
	check()
	chtest.StoreMergedCopies(t, conn, db, "cityHash64(event_id) % 409 = 0")
	chtest.StoreCopies(t, conn, db, "cityHash64(event_id) % 419 = 0")
	api, err := New(Config{Database: db, CursorKey: "rollup-test-key-0123456789"}, conn, nil)
	require.NoError(t, err)

	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	// at is a time near the fixture's week: on a quarter hour, on an hour,
	// or anywhere to the millisecond.
	at := func(base time.Time, span time.Duration) time.Time {
		t := base.Add(time.Duration(rng.Int64N(int64(span))))
		switch rng.IntN(4) {
		case 0:
			return t.Truncate(15 * time.Minute)
		case 1:
			return t.Truncate(time.Hour)
		}
		return t.Truncate(time.Millisecond)
	}
	filterValues := map[string][]string{
		"recipient_domain": {"gmail.com", "YAHOO.com,proton.me", "acme.io"}, "sender_domain": {"do.dev", "mail.do.dev"},
		"bounce_type": {"hard", "soft,hard"}, "npa": {"212", "415,305"}, "voice": {"nova", "alloy,echo"}, "format": {"mp3", "wav,opus"},
		"message_id": {"msg_1"}, // not in the rollup: read from the events
	}
	zones := []string{"UTC", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "America/St_Johns"}
	const cases = 300
	rolled := 0
	for i := range cases {
		if i == cases/2 {
			check()
		}
		service := pick(schema.Services)
		from := at(start.Add(-12*time.Hour), 8*24*time.Hour)
		span := []time.Duration{90 * time.Minute, 48 * time.Hour, 8 * 24 * time.Hour}[rng.IntN(3)]
		to := at(from.Add(time.Millisecond), span)
		if !to.After(from) {
			to = from.Add(time.Millisecond)
		}
		q := url.Values{"from": {from.Format(time.RFC3339Nano)}, "to": {to.Format(time.RFC3339Nano)},
			"tz": {pick(zones)}, "livemode": {pick([]string{"true", "false", "all"})}}
		if g := pick([]string{"", "hour", "day", "week", "month"}); g != "" && (g != "hour" || span < 8*24*time.Hour) {
			q.Set("granularity", g)
		}
		if rng.IntN(2) == 0 {
			var groups []string
			for g := range services[service].groupBy {
				groups = append(groups, g)
			}
			slices.Sort(groups)
			q.Set("group_by", pick(groups))
			q.Set("limit", fmt.Sprint(1+rng.IntN(4)))
		}
		for dim, d := range schema.Dimensions {
			if values, ok := filterValues[dim]; ok && slices.Contains(d.Services, service) && rng.IntN(4) == 0 {
				q.Set(dim, pick(values))
			}
		}
		path := "/v1/stats/" + service + "?" + q.Encode()
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest("GET", path, nil)
		c.Params = gin.Params{{Key: "service", Value: service}}
		req, err := parseStatsRequest(c, time.Now())
		require.NoError(t, err, path)

		viaRollup, err := api.runStats(ctx, req)
		require.NoError(t, err, path)
		req.fromEvents = true
		fromEvents, err := api.runStats(ctx, req)
		require.NoError(t, err, path)
		a, _ := json.Marshal(viaRollup)
		b, _ := json.Marshal(fromEvents)
		if !assert.Equal(t, string(b), string(a), "case %d: GET %s", i, path) {
			break
		}

		var buckets []time.Time
		if req.granularity != httpapi.NoSeries {
			buckets, err = httpapi.BucketsOf(req.granularity, req.r.From, req.r.To, req.loc)
			require.NoError(t, err)
		}
		if rollupServes(req, buckets) {
			plan, err := schema.PlanRollup(ctx, conn, db, req.r.From.UnixMilli(), req.r.To.UnixMilli())
			require.NoError(t, err)
			if plan.Covers() {
				rolled++
			}
		}
	}
	t.Logf("%d of %d requests read the rollup", rolled, cases)
	assert.Greater(t, rolled, cases/2, "most requests read the rollup")
}
