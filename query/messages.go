package query

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dodev/hindsight/schema"
)

// Delivery is one attempt to deliver an event to a webhook endpoint. The
// receiver's answer stays in the attempt log, behind replays:write.
type Delivery struct {
	EndpointID string  `json:"endpoint_id"`
	ReplayID   *string `json:"replay_id"` // null for a resend or a test
	Attempt    uint8   `json:"attempt"`
	At         string  `json:"at"`
	Outcome    string  `json:"outcome"` // delivered, failed or retrying
	Status     uint16  `json:"status"`  // 0 without a response
	LatencyMS  float64 `json:"latency_ms"`
	Error      string  `json:"error,omitempty"`
}

// TimelineEvent is one event of a message, with the attempts to deliver it.
type TimelineEvent struct {
	Event      json.RawMessage `json:"event"`
	Deliveries []Delivery      `json:"deliveries"`
}

// Message is the body of GET /v1/messages/{messageId}.
type Message struct {
	MessageID  string          `json:"message_id"`
	Recipients []string        `json:"recipients"` // as the recipient filter matches them
	Events     []TimelineEvent `json:"events"`
}

func deliveriesOf(ds []schema.Delivery) []Delivery {
	out := make([]Delivery, 0, len(ds))
	for _, d := range ds {
		e := Delivery{EndpointID: d.EndpointID, Attempt: d.Attempt, At: formatTime(time.UnixMilli(d.At)), Outcome: d.Outcome,
			Status: d.Status, LatencyMS: d.LatencyMS, Error: d.Error}
		if d.Outcome == "retry" {
			e.Outcome = "retrying" // as the attempt log names it
		}
		if d.ReplayID != "" {
			e.ReplayID = &d.ReplayID
		}
		out = append(out, e)
	}
	return out
}

// getMessage serves GET /v1/messages/{messageId}: every event of one email
// in (createdAt, eventId) order, each once however often it was stored, its
// recipients, and every delivery attempt made for each event.
func (s *API) getMessage(c *gin.Context) {
	id := c.Param("messageId")
	if id == "" || len(id) > schema.MaxFilterValueLen {
		abort(c, http.StatusNotFound, "not_found", "no message with that messageId")
		return
	}
	ctx := c.Request.Context()
	msg, err := schema.LookUpMessage(ctx, s.conn, s.cfg.Database, id)
	if err != nil {
		s.fail(c, err)
		return
	}
	// The attempts are looked up while the events are read.
	var deliveries map[string][]schema.Delivery
	var derr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		deliveries, derr = schema.DeliveriesOf(ctx, s.conn, s.cfg.Database, msg.EventIDs)
	}()
	events, err := msg.Events(ctx, s.conn, s.cfg.Database)
	<-done
	if err == nil {
		err = derr
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	if len(events) == 0 {
		abort(c, http.StatusNotFound, "not_found", "no message with messageId "+strconv.Quote(id))
		return
	}
	m := Message{MessageID: id, Recipients: []string{}, Events: make([]TimelineEvent, len(events))}
	seen := map[string]bool{}
	var p schema.Parser
	for i, ev := range events {
		m.Events[i] = TimelineEvent{Event: ev.Raw, Deliveries: deliveriesOf(deliveries[ev.ID])}
		parsed, _ := p.Parse(ev.Raw) // stored events parse; a failure has no recipients
		for _, r := range parsed.Dims.Recipients {
			if !seen[r] {
				seen[r] = true
				m.Recipients = append(m.Recipients, r)
			}
		}
	}
	c.JSON(http.StatusOK, m)
}

// withDeliveries adds the event's attempts to its JSON object under
// "deliveries".
func withDeliveries(raw []byte, ds []schema.Delivery) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("read stored event: %w", err)
	}
	b, err := json.Marshal(deliveriesOf(ds))
	if err != nil {
		return nil, err
	}
	obj["deliveries"] = b
	return json.Marshal(obj)
}
