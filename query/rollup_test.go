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

	"github.com/cespare/xxhash/v2"
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
// Half the requests run before the rollup is checked and the engagements
// linked again, half after.
func TestRollupAnswersAsTheEvents(t *testing.T) {
	conn, db := chtest.MigratedDatabase(t)
	ctx := context.Background()
	start := time.Date(2026, 10, 28, 0, 0, 0, 0, time.UTC)
	events, err := sample.Events(4000, sample.Options{Seed: 7, Start: start, Span: 7 * 24 * time.Hour, TestMode: 0.1, Unknown: 0.01})
	require.NoError(t, err)
	chtest.InsertEvents(t, conn, db, events)
	chtest.StoreMergedCopies(t, conn, db, "cityHash64(event_id) % 401 = 0")
	check := func() {
		n, err := schema.CheckRollup(ctx, conn, db, 0, math.MaxInt64)
		require.NoError(t, err)
		assert.NotZero(t, n, "the quarter hours holding copies are not checked")
		_, err = schema.LinkEngagements(ctx, conn, db, 0, math.MaxInt64)
		require.NoError(t, err)
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
	rolled, linked := 0, 0
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
		if service == "send" && len(req.filters) == 0 && rollupServes(req, buckets) {
			ok, err := schema.Links(ctx, conn, db, req.r.From.UnixMilli(), req.r.To.UnixMilli())
			require.NoError(t, err)
			if ok {
				linked++
			}
		}
	}
	t.Logf("%d of %d requests read the rollup, %d links", rolled, cases, linked)
	assert.Greater(t, rolled, cases/2, "most requests read the rollup")
	assert.NotZero(t, linked, "some requests read links")
}

// TestLinksFollowLateEngagements: distinct counts read links over a range
// only while they were built from the engagements the range holds, and
// answer as the events do. An engagement stored late into the range sends
// the range back to the events until the links are built again, its
// message's later quarter hours included; one stored before the range
// changes nothing.
func TestLinksFollowLateEngagements(t *testing.T) {
	conn, db := chtest.MigratedDatabase(t)
	ctx := context.Background()
	api, err := New(Config{Database: db, CursorKey: "links-test-key-0123456789"}, conn, nil)
	require.NoError(t, err)

	day := func(d int, hm ...int) time.Time {
		t := time.Date(2026, 10, d, 0, 0, 0, 0, time.UTC)
		if len(hm) == 2 {
			t = t.Add(time.Duration(hm[0])*time.Hour + time.Duration(hm[1])*time.Minute)
		}
		return t
	}
	seq := 0
	engagement := func(typ, msg string, at time.Time, live bool) schema.Event {
		seq++
		id := fmt.Sprintf("evt_%d", seq)
		return schema.Event{ID: id, Type: typ, Service: "send", CreatedAt: at.UnixMilli(), Livemode: live, Known: true,
			Dims: schema.Dims{MessageID: msg, MessageHash: xxhash.Sum64String(msg)},
			Raw:  fmt.Appendf(nil, `{"eventId":%q,"type":%q,"service":"send","createdAt":%d,"data":{"messageId":%q}}`, id, typ, at.UnixMilli(), msg)}
	}
	// 300 messages, each opened and clicked a few times over ten days, a
	// tenth of them in test mode and some in both.
	rng := rand.New(rand.NewPCG(3, 4))
	var events []schema.Event
	for m := range 300 {
		msg := fmt.Sprintf("msg_%d", m)
		for range 1 + rng.IntN(5) {
			typ := []string{"send.email.opened", "send.email.clicked"}[rng.IntN(2)]
			at := day(1).Add(time.Duration(rng.Int64N(int64(10 * 24 * time.Hour))))
			events = append(events, engagement(typ, msg, at, m%10 != 0 || rng.IntN(3) == 0))
		}
	}
	// msg_late is opened on the 2nd and the 6th; an open on the 5th comes
	// late. msg_early is opened on the 4th; an open on the 2nd comes late.
	events = append(events, engagement("send.email.opened", "msg_late", day(2, 10, 0), true),
		engagement("send.email.opened", "msg_late", day(6, 9, 0), true),
		engagement("send.email.opened", "msg_early", day(4, 8, 0), true))
	chtest.InsertEvents(t, conn, db, events)
	_, err = schema.LinkEngagements(ctx, conn, db, 0, math.MaxInt64)
	require.NoError(t, err)

	from, to := day(3), day(10)
	// answers requires every request over [from, to) to read links or not,
	// as linked says, and to answer as the events do.
	answers := func(linked bool, what string) {
		t.Helper()
		ok, err := schema.Links(ctx, conn, db, from.UnixMilli(), to.UnixMilli())
		require.NoError(t, err)
		require.Equal(t, linked, ok, what)
		for _, tz := range []string{"UTC", "Asia/Kathmandu"} {
			for _, g := range []httpapi.Granularity{httpapi.NoSeries, httpapi.Hour, httpapi.Day} {
				for _, lm := range []schema.Livemode{schema.LiveOnly, schema.TestOnly, schema.LiveAll} {
					loc, err := time.LoadLocation(tz)
					require.NoError(t, err)
					req := statsRequest{service: "send", def: services["send"], r: timeRange{From: from, To: to}, granularity: g, loc: loc, livemode: lm}
					viaLinks, err := api.runStats(ctx, req)
					require.NoError(t, err)
					req.fromEvents = true
					fromEvents, err := api.runStats(ctx, req)
					require.NoError(t, err)
					a, _ := json.Marshal(viaLinks)
					b, _ := json.Marshal(fromEvents)
					require.Equal(t, string(b), string(a), "%s: %s series in %s, livemode %s", what, g, tz, lm)
				}
			}
		}
	}
	answers(true, "linked")

	chtest.InsertEvents(t, conn, db, []schema.Event{engagement("send.email.opened", "msg_late", day(5, 12, 7), true)})
	answers(false, "an open stored late into the range")
	_, err = schema.LinkEngagements(ctx, conn, db, day(5).UnixMilli(), math.MaxInt64)
	require.NoError(t, err)
	// Counted twice over the range had the 6th's links kept their prev.
	answers(true, "linked again")

	chtest.InsertEvents(t, conn, db, []schema.Event{engagement("send.email.opened", "msg_early", day(2, 23, 0), true)})
	answers(true, "an open stored late before the range")

	chtest.StoreCopies(t, conn, db, "cityHash64(event_id) % 7 = 0")
	answers(false, "copies stored")
	_, err = schema.LinkEngagements(ctx, conn, db, 0, math.MaxInt64)
	require.NoError(t, err)
	answers(true, "copies linked")
}
