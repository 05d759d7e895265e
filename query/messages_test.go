package query_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/apitest"
	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/replay"
	"github.com/dodev/hindsight/replay/webhook"
	"github.com/dodev/hindsight/schema"
)

// TestMessageTimeline stores the events of two emails shuffled, in parts,
// one of them twice, with attempts to deliver some of them: the timeline of
// each is its own events in (createdAt, eventId) order, each once, with its
// recipients and each event's attempts oldest first.
func TestMessageTimeline(t *testing.T) {
	srv, conn, db := newAPI(t)
	ctx := context.Background()
	t0 := time.Date(2026, 10, 5, 9, 0, 0, 0, time.UTC)
	type spec struct {
		id, typ string
		at      time.Duration
		to      string // JSON
	}
	mk := func(msg string, specs []spec) []schema.Event {
		var out []schema.Event
		var p schema.Parser
		for _, s := range specs {
			data := fmt.Sprintf(`{"messageId":%q,"to":%s`, msg, s.to)
			switch s.typ {
			case "send.email.sent":
				data += `,"from":"news@Mail.do.dev","subject":"hi"`
			case "send.email.bounced":
				data += `,"bounceType":"hard","diagnosticCode":"550"`
			case "send.email.clicked":
				data += `,"url":"https://do.dev"`
			}
			raw := fmt.Sprintf(`{"eventId":%q,"type":%q,"service":"send","data":%s},"createdAt":%d}`, s.id, s.typ, data, t0.Add(s.at).UnixMilli())
			ev, err := p.Parse([]byte(raw))
			require.NoError(t, err, raw)
			ev.Raw = []byte(raw)
			out = append(out, ev)
		}
		return out
	}
	a := mk("msg_a", []spec{
		{"evt_a1", "send.email.sent", 0, `["ann@Example.com","bob@example.org"]`},
		{"evt_a2", "send.email.delivered", time.Minute, `["ann@Example.com","bob@example.org"]`},
		{"evt_a3", "send.email.opened", time.Hour, `"ann@Example.com"`},
		{"evt_a4", "send.email.opened", 2 * time.Hour, `"ann@Example.com"`},
		{"evt_a5", "send.email.clicked", 2 * time.Hour, `"carl@example.net"`}, // same ms as a4: eventId orders them
		{"evt_a6", "send.email.complained", 48 * time.Hour, `"ann@Example.com"`},
	})
	b := mk("msg_b", []spec{
		{"evt_b1", "send.email.sent", 0, `"dan@example.com"`},
		{"evt_b2", "send.email.bounced", time.Second, `"dan@example.com"`},
	})
	all := append(append([]schema.Event{}, a...), b...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	// Arrived out of order, in three parts, evt_a2 and evt_a5 stored twice.
	chtest.InsertEvents(t, conn, db, all[:3])
	chtest.InsertEvents(t, conn, db, all[3:])
	chtest.StoreCopies(t, conn, db, "event_id IN ('evt_a2', 'evt_a5')")

	attempts := []replay.Record{
		{EndpointID: "whep_1", ReplayID: "rpl_1", EventID: "evt_a2", Attempt: 2, At: t0.Add(3 * time.Hour),
			Result: webhook.Attempt{Outcome: webhook.Delivered, Status: 204, Latency: 12 * time.Millisecond}},
		{EndpointID: "whep_1", ReplayID: "rpl_1", EventID: "evt_a2", Attempt: 1, At: t0.Add(2 * time.Hour),
			Result: webhook.Attempt{Outcome: webhook.Failed, Status: 503, Latency: 40 * time.Millisecond, Err: "HTTP 503"}},
		{EndpointID: "whep_2", EventID: "evt_a6", Attempt: 1, At: t0.Add(49 * time.Hour),
			Result: webhook.Attempt{Outcome: webhook.Delivered, Status: 200, Latency: 5 * time.Millisecond}},
		{EndpointID: "whep_2", EventID: "evt_b1", Attempt: 1, At: t0.Add(time.Hour),
			Result: webhook.Attempt{Outcome: webhook.Delivered, Status: 200}},
	}
	require.NoError(t, replay.NewStore(conn, db).RecordAttempts(ctx, attempts))

	type delivery struct {
		EndpointID string  `json:"endpoint_id"`
		ReplayID   *string `json:"replay_id"`
		Attempt    int     `json:"attempt"`
		At         string  `json:"at"`
		Outcome    string  `json:"outcome"`
		Status     int     `json:"status"`
		LatencyMS  float64 `json:"latency_ms"`
		Error      string  `json:"error"`
	}
	var m struct {
		MessageID  string   `json:"message_id"`
		Recipients []string `json:"recipients"`
		Events     []struct {
			Event      json.RawMessage `json:"event"`
			Deliveries []delivery      `json:"deliveries"`
		} `json:"events"`
	}
	code, body := getRaw(t, srv.URL+"/v1/messages/msg_a")
	require.Equal(t, http.StatusOK, code, string(body))
	require.NoError(t, json.Unmarshal(body, &m))
	assert.Equal(t, "msg_a", m.MessageID)
	assert.Equal(t, []string{"ann@example.com", "bob@example.org", "carl@example.net"}, m.Recipients, "as the recipient filter matches them")
	require.Len(t, m.Events, len(a), "each event once")
	for i, ev := range m.Events {
		assert.JSONEq(t, string(a[i].Raw), string(ev.Event), "event %d is %s, as stored", i, a[i].ID)
	}
	rpl := "rpl_1"
	assert.Equal(t, []delivery{
		{EndpointID: "whep_1", ReplayID: &rpl, Attempt: 1, At: "2026-10-05T11:00:00.000Z", Outcome: "failed", Status: 503, LatencyMS: 40, Error: "HTTP 503"},
		{EndpointID: "whep_1", ReplayID: &rpl, Attempt: 2, At: "2026-10-05T12:00:00.000Z", Outcome: "delivered", Status: 204, LatencyMS: 12},
	}, m.Events[1].Deliveries, "evt_a2's attempts, oldest first")
	assert.Equal(t, []delivery{{EndpointID: "whep_2", Attempt: 1, At: "2026-10-07T10:00:00.000Z", Outcome: "delivered", Status: 200, LatencyMS: 5}},
		m.Events[5].Deliveries)
	assert.Empty(t, m.Events[0].Deliveries)
	assert.NotNil(t, m.Events[0].Deliveries, "no attempts is an empty list")

	code, body = getRaw(t, srv.URL+"/v1/messages/msg_b")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal(body, &m))
	assert.Equal(t, []string{"dan@example.com"}, m.Recipients)
	require.Len(t, m.Events, 2)

	code, _ = getRaw(t, srv.URL+"/v1/messages/msg_none")
	assert.Equal(t, http.StatusNotFound, code)

	// One event with its attempts.
	code, body = getRaw(t, srv.URL+"/v1/events/evt_a2?include=deliveries")
	require.Equal(t, http.StatusOK, code, string(body))
	var ev struct {
		EventID    string     `json:"eventId"`
		Deliveries []delivery `json:"deliveries"`
	}
	require.NoError(t, json.Unmarshal(body, &ev))
	assert.Equal(t, "evt_a2", ev.EventID)
	assert.Len(t, ev.Deliveries, 2)
	code, body = getRaw(t, srv.URL+"/v1/events/evt_a1?include=deliveries")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(body), `"deliveries":[]`)
	code, body = getRaw(t, srv.URL+"/v1/events/evt_a2")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, string(a[1].Raw), string(body), "without include, the original bytes")
	code, _ = getRaw(t, srv.URL+"/v1/events/evt_a2?include=everything")
	assert.Equal(t, http.StatusBadRequest, code)
}

func getRaw(t *testing.T, u string) (int, []byte) {
	t.Helper()
	var buf json.RawMessage
	code := apitest.Get(t, u, key, &buf)
	return code, buf
}
