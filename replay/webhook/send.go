package webhook

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits of one delivery attempt.
const (
	AttemptTimeout  = 15 * time.Second
	MaxResponseHead = 1 << 20  // bytes of a response's status line and headers read, at most
	MaxResponse     = 64 << 10 // bytes of a response body read, at most
	// MaxKeptResponse is how much of a response body the attempt log keeps.
	MaxKeptResponse = 1 << 10
)

// Backoff is the default wait before each retry (an endpoint may set its
// own); after the last, the delivery fails.
var Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}

// Outcome is what one attempt means for the delivery.
type Outcome int

// Outcomes.
const (
	Delivered Outcome = iota // 2xx
	Retry                    // 408, 429, 5xx, a timeout or connection error
	Failed                   // anything else: a redirect, another 4xx, a refused address
)

func (o Outcome) String() string {
	return [...]string{"delivered", "retry", "failed"}[o]
}

// Attempt is the result of one POST.
type Attempt struct {
	Outcome    Outcome
	Status     int // 0 without a response
	Latency    time.Duration
	Err        string        // why it was not delivered
	RetryAfter time.Duration // the receiver's Retry-After, if any
	Response   string        // the start of the response body, at most MaxKeptResponse bytes
}

// Message is one delivery: an event's original bytes and what signs them.
type Message struct {
	ID       string // webhook-id: the eventId, the receiver's idempotency key
	Body     []byte
	ReplayID string // Hindsight-Replay-Id, empty for test sends
	Secrets  []string
	Headers  map[string]string // the endpoint's own; never one Send sets itself
}

// Sender posts messages to endpoints. It never follows redirects, reads at
// most MaxResponseHead bytes of a response's status line and headers and
// MaxResponse of its body, gives each attempt AttemptTimeout, and connects
// only where its Policy allows. It speaks HTTP/1.1.
type Sender struct {
	dialer    *dialer
	roots     *x509.CertPool // nil: the system's; tests trust their own
	timeout   time.Duration  // of one attempt: AttemptTimeout
	userAgent string
	now       func() time.Time
	policy    Policy
	lookup    lookupFunc
}

// NewSender builds a Sender.
func NewSender(p Policy, version string) *Sender {
	return newSender(p, version, defaultLookup)
}

func newSender(p Policy, version string, lookup lookupFunc) *Sender {
	return &Sender{
		dialer:    newDialer(p, lookup),
		timeout:   AttemptTimeout,
		userAgent: "hindsight/" + version,
		now:       time.Now,
		policy:    p,
		lookup:    lookup,
	}
}

// ValidateURL checks an endpoint URL against the sender's policy, resolving
// names the way its connections do.
func (s *Sender) ValidateURL(ctx context.Context, raw string) (*url.URL, error) {
	return s.policy.ValidateURL(ctx, raw, s.lookup)
}

// Send makes one attempt on a connection of its own.
func (s *Sender) Send(ctx context.Context, rawURL string, m Message) Attempt {
	l := s.NewLine(ctx)
	defer l.Close()
	return l.Send(rawURL, m)
}

// Send makes one attempt on the line's connection.
func (l *Line) Send(rawURL string, m Message) Attempt {
	s := l.s
	start := s.now()
	sig, err := Sign(m.ID, start, m.Body, m.Secrets...)
	if err != nil {
		return Attempt{Outcome: Failed, Err: "sign: " + err.Error()}
	}
	if !validHeaderValue(m.ID) {
		// It would fail the same way every time: never retried.
		return Attempt{Outcome: Failed, Err: "request: the eventId cannot be sent as a webhook-id header"}
	}
	if m.ReplayID != "" && !validHeaderValue(m.ReplayID) {
		return Attempt{Outcome: Failed, Err: "request: the replay's id cannot be sent as a header"}
	}
	pre, err := l.preambleFor(rawURL, m.Headers)
	if err != nil {
		return Attempt{Outcome: Failed, Err: "request: " + redactURLError(err)}
	}
	req := &request{pre: pre, m: &m, timestamp: start.Unix(), signature: sig}
	resp, err := l.roundTrip(req, start.Add(s.timeout))
	a := Attempt{Latency: time.Since(start)}
	if err != nil {
		a.Err = redactURLError(&url.Error{Op: "POST", URL: rawURL, Err: err})
		var op *net.OpError
		switch {
		case errors.Is(err, ErrForbiddenAddress):
			a.Outcome = Failed
		case l.ctx.Err() != nil:
			a.Outcome, a.Err = Retry, "cancelled: "+l.ctx.Err().Error()
		case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
			a.Outcome, a.Err = Retry, fmt.Sprintf("no answer within %s", s.timeout)
		case errors.As(err, &op) && op.Op == "dial":
			// Refused, unreachable or timed out while connecting: one answer
			// for all, so endpoints cannot be used to map a network's ports.
			a.Outcome, a.Err = Retry, "connection failed"
		default:
			a.Outcome = Retry // reset connections, unreadable answers
		}
		return a
	}
	body := &io.LimitedReader{R: resp.Body, N: MaxResponse}
	kept := keptBuffers.Get().(*[MaxKeptResponse]byte)
	n, _ := io.ReadFull(body, kept[:])
	a.Response = strings.ToValidUTF8(string(kept[:n]), "\uFFFD")
	keptBuffers.Put(kept)
	_, err = io.Copy(io.Discard, body)
	// Reading stopped at the body's end, not at the limit: the connection
	// is where the next request can go.
	l.done(resp, err == nil && body.N > 0)
	a.Latency = time.Since(start)
	a.Status = resp.StatusCode
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		a.Outcome = Delivered
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		a.Outcome = Retry
		a.Err = fmt.Sprintf("HTTP %d", resp.StatusCode)
		a.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), s.now())
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		a.Outcome = Failed
		a.Err = fmt.Sprintf("HTTP %d redirect to %q not followed", resp.StatusCode, withoutQuery(resp.Header.Get("Location")))
	default:
		a.Outcome = Failed
		a.Err = fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	return a
}

// keptBuffers hold the start of a response body while it is read: one
// per attempt would be a KiB allocated for every delivery.
var keptBuffers = sync.Pool{New: func() any { return new([MaxKeptResponse]byte) }}

// validHeaderValue reports whether v can be sent as an HTTP header value:
// printable ASCII (ingest admits no other eventIds, but the table may hold
// rows written before that rule).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c > '~' {
			return false
		}
	}
	return v != ""
}

// redactURLError describes a client error without the URL net/http puts in
// it: an endpoint's query string often holds a token.
func redactURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + " " + withoutQuery(ue.URL) + ": " + ue.Err.Error()
	}
	return err.Error()
}

// withoutQuery drops a URL's query, fragment and credentials.
func withoutQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unreadable URL)"
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment, u.User = "", false, "", "", nil
	return u.String()
}

// retryAfter reads seconds or an HTTP date; 0 when absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(min(secs, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// RetryDelay is the wait before retry number n (0-based) under schedule (nil
// is Backoff), or false when the delivery has had all its attempts. A
// Retry-After is honoured within the schedule's bounds (its shortest to its
// longest delay); otherwise the schedule's step gets ±20% jitter so many
// failing deliveries do not retry in lockstep.
func RetryDelay(schedule []time.Duration, n int, retryAfter time.Duration) (time.Duration, bool) {
	if schedule == nil {
		schedule = Backoff
	}
	if n >= len(schedule) {
		return 0, false
	}
	if retryAfter > 0 {
		return min(max(retryAfter, slices.Min(schedule)), slices.Max(schedule)), true
	}
	step := schedule[n]
	jitter := time.Duration((rand.Float64()*0.4 - 0.2) * float64(step))
	return step + jitter, true
}
