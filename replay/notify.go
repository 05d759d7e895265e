package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dodev/hindsight/replay/webhook"
)

// Notifications Hindsight sends about itself.
const (
	NoticeEndpointDisabled = "endpoint.disabled"
	NoticeEndpointEnabled  = "endpoint.enabled"
	NoticeReplayFailed     = "replay.failed"
)

// Notifier posts Hindsight's own notifications (an endpoint disabled or
// enabled again, a replay that ended failed) to one URL, as Standard
// Webhooks signed with a secret of its own, in the payload shape the
// specification recommends: {"type", "timestamp", "data"}. Each is tried on
// the default retry schedule; a notification never holds up the work that
// raised it. A nil Notifier sends nothing.
type Notifier struct {
	url    string
	secret string
	sender *webhook.Sender
	log    *slog.Logger
	queue  chan webhook.Message
}

// notifyQueue is how many notifications wait to be sent; beyond it they are
// dropped, and the log says so.
const notifyQueue = 1024

// NewNotifier checks secret as a signing secret (whsec_...), then url
// against the sender's policy.
func NewNotifier(ctx context.Context, url, secret string, sender *webhook.Sender, log *slog.Logger) (*Notifier, error) {
	if err := webhook.CheckSecret(secret); err != nil {
		return nil, fmt.Errorf("notify secret: %w", err)
	}
	if _, err := sender.ValidateURL(ctx, url); err != nil {
		return nil, fmt.Errorf("notify url: %s", strings.TrimPrefix(err.Error(), "url: "))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{url: url, secret: secret, sender: sender, log: log, queue: make(chan webhook.Message, notifyQueue)}, nil
}

// Notify queues a notification of type typ about data.
func (n *Notifier) Notify(typ string, data any) {
	if n == nil {
		return
	}
	now := time.Now().UTC()
	body, err := json.Marshal(map[string]any{"type": typ, "timestamp": now.Format(time.RFC3339Nano), "data": data})
	if err != nil {
		n.log.Error("notification not sent", "type", typ, "err", err)
		return
	}
	select {
	case n.queue <- webhook.Message{ID: newID("msg_"), Body: body, Secrets: []string{n.secret}}:
	default:
		n.log.Warn("notification dropped: too many waiting", "type", typ)
	}
}

// Changed notifies c, a change of ep's state, as endpoint.disabled (with
// the reason) or endpoint.enabled.
func (n *Notifier) Changed(ep Endpoint, c Change) {
	at := c.At.UTC().Format(time.RFC3339Nano)
	if c.Change == ChangeDisabled {
		n.Notify(NoticeEndpointDisabled, map[string]any{"endpoint_id": ep.ID, "url": ep.URL, "disabled_at": at, "reason": c.Reason})
		return
	}
	n.Notify(NoticeEndpointEnabled, map[string]any{"endpoint_id": ep.ID, "url": ep.URL, "enabled_at": at})
}

// Run sends queued notifications until ctx ends.
func (n *Notifier) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-n.queue:
			n.send(ctx, m)
		}
	}
}

// send tries m on the default schedule until it is delivered, fails for
// good, or ctx ends.
func (n *Notifier) send(ctx context.Context, m webhook.Message) {
	for i := 0; ; i++ {
		a := n.sender.Send(ctx, n.url, m)
		if a.Outcome == webhook.Delivered || ctx.Err() != nil {
			return
		}
		wait, again := webhook.RetryDelay(webhook.Backoff, i, a.RetryAfter)
		if a.Outcome == webhook.Failed || !again {
			n.log.Warn("notification not delivered", "id", m.ID, "attempts", i+1, "err", a.Err)
			return
		}
		if sleep(ctx, wait) != nil {
			return
		}
	}
}
