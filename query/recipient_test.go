package query_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/schema"
)

// addressesOf reads an email's data.to, a string or a list, with
// encoding/json: each address with its domain lowercased.
func addressesOf(e fixtureEvent) []string {
	var list []string
	switch to := e.data["to"].(type) {
	case string:
		list = []string{to}
	case []any:
		for _, a := range to {
			if s, ok := a.(string); ok {
				list = append(list, s)
			}
		}
	}
	for i, a := range list {
		at := strings.LastIndex(a, "@")
		list[i] = a[:at+1] + strings.ToLower(a[at+1:])
	}
	return list
}

// parseFixture parses raw as ingest does, and reads it with encoding/json
// for expectations.
func parseFixture(t *testing.T, raw string) (schema.Event, fixtureEvent) {
	t.Helper()
	var p schema.Parser
	ev, err := p.Parse([]byte(raw))
	require.NoError(t, err)
	ev.Raw = []byte(raw)
	var fe fixtureEvent
	require.NoError(t, json.Unmarshal(ev.Raw, &fe))
	require.NoError(t, json.Unmarshal(fe.Data, &fe.data))
	return ev, fe
}

// TestRecipientFilter: recipient=<address> keeps the emails with that
// address among their recipients, given as a string or in a list, first or
// not, whatever the case of its domain, in stats and the listing.
func TestRecipientFilter(t *testing.T) {
	srv, conn, db := newAPI(t)
	events := loadStatsFixture(t, conn, db)
	// Mixed-case domains, as a string and second in a list.
	at := time.Date(2026, 10, 30, 12, 0, 0, 0, time.UTC)
	var extra []schema.Event
	for i, to := range []string{`"Zed@MiXed.Example"`, `["first@a.io","Zed@mixed.EXAMPLE"]`, `"zed@mixed.example"`} {
		ev, fe := parseFixture(t, fmt.Sprintf(`{"eventId":"evt_rcpt_%d","type":"send.email.delivered","service":"send","data":{"messageId":"msg_rcpt_%d","to":%s},"createdAt":%d}`,
			i, i, to, at.Add(time.Duration(i)*time.Minute).UnixMilli()))
		extra = append(extra, ev)
		events = append(events, fe)
	}
	chtest.InsertEvents(t, conn, db, extra)

	from := time.Date(2026, 10, 28, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC)
	// A common address that is not always the first recipient.
	count, later := map[string]int{}, map[string]bool{}
	for _, e := range filterEvents(events, "send", from, to, "all") {
		for i, a := range addressesOf(e) {
			count[a]++
			if i > 0 {
				later[a] = true
			}
		}
	}
	var common []string
	for a := range later {
		common = append(common, a)
	}
	sort.Slice(common, func(i, j int) bool {
		return count[common[i]] > count[common[j]] || count[common[i]] == count[common[j]] && common[i] < common[j]
	})
	require.NotEmpty(t, common)

	for _, tc := range []struct {
		query string
		match []string // addresses any of which an email must have
	}{
		{"Zed@MIXED.example", []string{"Zed@mixed.example"}},
		{"zed@MIXED.example", []string{"zed@mixed.example"}}, // the local part is case-sensitive
		{common[0] + "," + strings.ToUpper(common[1%len(common)]), []string{common[0]}},
		{common[0] + "," + common[len(common)-1], []string{common[0], common[len(common)-1]}},
		// An address never stored beside one stored, and alone.
		{common[1%len(common)] + ",nobody@never.example", []string{common[1%len(common)]}},
		{"nobody@never.example", nil},
	} {
		var want []fixtureEvent
		for _, e := range filterEvents(events, "send", from, to, "all") {
			for _, a := range addressesOf(e) {
				if slices.Contains(tc.match, a) {
					want = append(want, e)
					break
				}
			}
		}
		require.Equal(t, tc.match != nil, len(want) > 0, tc.query)
		t.Run(tc.query, func(t *testing.T) {
			q := fmt.Sprintf("from=%s&to=%s&livemode=all&recipient=%s", from.Format(time.RFC3339), to.Format(time.RFC3339), url.QueryEscape(tc.query))
			body := statsJSON(t, srv.URL+"/v1/stats/send?"+q)
			checkBlock(t, "recipient totals", "send", body["totals"].(map[string]any), want)
			p := listPage(t, srv.URL, q+"&limit=1000")
			var got []string
			for _, raw := range p.Data {
				var e fixtureEvent
				require.NoError(t, json.Unmarshal(raw, &e))
				got = append(got, e.EventID)
			}
			var wantIDs []string
			for _, e := range want {
				wantIDs = append(wantIDs, e.EventID)
			}
			assert.ElementsMatch(t, wantIDs, got)
		})
	}
	code, body := get(t, srv, "/v1/stats/telco?recipient=a@b.c", key)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.True(t, strings.HasPrefix(body["error"].(map[string]any)["message"].(string), "recipient:"), body)
}

// TestRecipientFilterPastTheLookup: a recipient with more events in the
// range than schema.MaxNarrowKeys is counted from a scan of the range,
// the same as one with fewer is counted at its keys.
func TestRecipientFilterPastTheLookup(t *testing.T) {
	srv, conn, db := newAPI(t)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	n := schema.MaxNarrowKeys + 50
	var p schema.Parser
	var events []schema.Event
	for i := range n + 100 {
		to := "heavy@Big.Example"
		if i%(n/100+1) == 0 {
			to = "other@big.example" // a hundred to someone else, among them
		}
		raw := fmt.Sprintf(`{"eventId":"evt_heavy_%d","type":"send.email.delivered","service":"send","data":{"messageId":"msg_heavy_%d","to":[%q]},"createdAt":%d}`,
			i, i, to, start.Add(time.Duration(i)*time.Second).UnixMilli())
		ev, err := p.Parse([]byte(raw))
		require.NoError(t, err)
		ev.Raw = []byte(raw)
		events = append(events, ev)
	}
	chtest.InsertEvents(t, conn, db, events)
	// heavyBefore counts the heavy address's events before end.
	heavyBefore := func(end time.Time) int {
		n := 0
		for _, ev := range events {
			if ev.Dims.Recipients[0] == "heavy@big.example" && ev.CreatedAt < end.UnixMilli() {
				n++
			}
		}
		return n
	}
	end := start.Add(24 * time.Hour)
	require.Greater(t, heavyBefore(end), schema.MaxNarrowKeys)
	at, _, err := schema.RecipientsAt(context.Background(), conn, db, "send", []string{"heavy@big.example"}, start.UnixMilli(), end.UnixMilli())
	require.NoError(t, err)
	q := fmt.Sprintf("/v1/stats/send?from=%s&to=%s&livemode=all&recipient=heavy@big.example", start.Format(time.RFC3339), end.Format(time.RFC3339))
	assert.EqualValues(t, heavyBefore(end), statsJSON(t, srv.URL+q)["totals"].(map[string]any)["events"])

	// The first ten minutes, within the lookup.
	end = start.Add(10 * time.Minute)
	at, _, err = schema.RecipientsAt(context.Background(), conn, db, "send", []string{"heavy@big.example"}, start.UnixMilli(), end.UnixMilli())
	require.NoError(t, err)
	require.NotEmpty(t, at)
	q = fmt.Sprintf("/v1/stats/send?from=%s&to=%s&livemode=all&recipient=heavy@big.example", start.Format(time.RFC3339), end.Format(time.RFC3339))
	assert.EqualValues(t, heavyBefore(end), statsJSON(t, srv.URL+q)["totals"].(map[string]any)["events"])
}

// TestSenderFilterCountsUniqueEngagements: unique opens and clicks filtered
// by sender domain (read from engagements_by_sender) are those of the
// emails from that domain, in totals, groups and a series; opens here carry
// their email's sender, opened several times each.
func TestSenderFilterCountsUniqueEngagements(t *testing.T) {
	srv, conn, db := newAPI(t)
	start := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	senders := []string{"news@Mail.Example", "billing@example.com", "alerts@status.example"}
	domains := []string{"gmail.com", "yahoo.com"}
	var stored []schema.Event
	var events []fixtureEvent
	add := func(raw string) {
		ev, fe := parseFixture(t, raw)
		stored = append(stored, ev)
		events = append(events, fe)
	}
	for i := range 60 {
		msg := fmt.Sprintf("msg_sender_%d", i)
		from, to := senders[i%len(senders)], fmt.Sprintf("user%d@%s", i, domains[i%len(domains)])
		at := start.Add(time.Duration(i) * 37 * time.Minute)
		for j, typ := range []string{"sent", "delivered", "opened", "opened", "clicked"} {
			if typ != "sent" && typ != "delivered" && i%4 == 0 {
				continue // never opened
			}
			add(fmt.Sprintf(`{"eventId":"evt_sender_%d_%d","type":"send.email.%s","service":"send","data":{"messageId":%q,"from":%q,"to":%q,"subject":"s","url":"https://x.example"},"createdAt":%d}`,
				i, j, typ, msg, from, to, at.Add(time.Duration(j)*time.Hour).UnixMilli()))
		}
	}
	chtest.InsertEvents(t, conn, db, stored)
	senderDomain := func(e fixtureEvent) string {
		from := e.str("from")
		return strings.ToLower(from[strings.LastIndex(from, "@")+1:])
	}
	end := start.Add(4 * 24 * time.Hour)
	for _, values := range [][]string{{"mail.example"}, {"MAIL.example", "status.example"}} {
		var kept []fixtureEvent
		for _, e := range events {
			if slices.ContainsFunc(values, func(v string) bool { return strings.EqualFold(v, senderDomain(e)) }) {
				kept = append(kept, e)
			}
		}
		require.NotEmpty(t, kept)
		q := fmt.Sprintf("/v1/stats/send?from=%s&to=%s&sender_domain=%s&group_by=recipient_domain&granularity=day",
			start.Format(time.RFC3339), end.Format(time.RFC3339), url.QueryEscape(strings.Join(values, ",")))
		body := statsJSON(t, srv.URL+q)
		checkBlock(t, "totals", "send", body["totals"].(map[string]any), kept)
		perGroup := map[string][]fixtureEvent{}
		perDay := map[string][]fixtureEvent{}
		for _, e := range kept {
			perGroup[recipientDomain(e)] = append(perGroup[recipientDomain(e)], e)
			perDay[e.at().Format("2006-01-02")] = append(perDay[e.at().Format("2006-01-02")], e)
		}
		groups := body["groups"].([]any)
		require.Len(t, groups, len(perGroup))
		for _, raw := range groups {
			g := raw.(map[string]any)
			checkBlock(t, "group "+g["key"].(string), "send", g, perGroup[g["key"].(string)])
		}
		for _, raw := range body["series"].([]any) {
			b := raw.(map[string]any)
			day := b["bucket"].(string)[:10]
			checkBlock(t, "day "+day, "send", b, perDay[day])
		}
	}
}

// TestMessageFilterPastTheLookup: messageIds whose events hold more sort
// keys in all than schema.MaxNarrowKeys (a producer reusing messageIds) are
// counted from a scan of the range, not from a statement past the server's
// size limit.
func TestMessageFilterPastTheLookup(t *testing.T) {
	srv, conn, db := newAPI(t)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	const perID = schema.MaxMessageEvents - 1
	// Seven messageIds of 999 keys each: a statement of about 310 KB.
	var ids []string
	for i := range 7 {
		ids = append(ids, fmt.Sprint("msg_reused_", i))
	}
	var stored []schema.Event
	for i := range perID * len(ids) {
		ev, _ := parseFixture(t, fmt.Sprintf(`{"eventId":"evt_reused_%d","type":"send.email.delivered","service":"send","data":{"messageId":%q,"to":"a@b.io"},"createdAt":%d}`,
			i, ids[i%len(ids)], start.Add(time.Duration(i)*time.Second).UnixMilli()))
		stored = append(stored, ev)
	}
	chtest.InsertEvents(t, conn, db, stored)
	require.Greater(t, len(stored), schema.MaxNarrowKeys)
	at, _, err := schema.MessagesAt(context.Background(), conn, db, ids)
	require.NoError(t, err)
	require.Empty(t, at, "past MaxNarrowKeys the read is not narrowed")
	q := fmt.Sprintf("/v1/stats/send?from=%s&to=%s&livemode=all&message_id=%s", start.Format(time.RFC3339), start.Add(24*time.Hour).Format(time.RFC3339),
		strings.Join(ids, ","))
	assert.EqualValues(t, len(stored), statsJSON(t, srv.URL+q)["totals"].(map[string]any)["events"])
	at, _, err = schema.MessagesAt(context.Background(), conn, db, ids[:1])
	require.NoError(t, err)
	require.NotEmpty(t, at, "one messageId's keys narrow the read")
}
