package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/internal/keys"
	"github.com/dodev/hindsight/replay/webhook"
	"github.com/dodev/hindsight/schema"
)

// API serves endpoints, replays, the attempt log and delivery stats. It is
// mounted on the host's /v1 group, which checks keys and binds the
// ClickHouse limits its queries run under.
type API struct {
	store    *Store
	conn     Conn
	db       string
	sender   *webhook.Sender
	attempts httpapi.Cursors // the attempt log's
	replays  httpapi.Cursors // the replay list's
	log      *slog.Logger
	notify   *Notifier       // nil: none
	created  func(id string) // called for each replay saved; nil: none
}

// NotifyTo has the API post a notification to n when an endpoint is
// enabled again or disabled on request.
func (a *API) NotifyTo(n *Notifier) { a.notify = n }

// OnCreate has the API call f with each new replay's id after saving it: a
// worker in the same process (Worker.Wake), or workers elsewhere told by an
// Announcer, then start it at once, not at their next poll. Call it before
// serving.
func (a *API) OnCreate(f func(id string)) { a.created = f }

// NewAPI builds the replay routes. apiKey signs the cursors of the replay
// list and the attempt log, so every API process sharing it accepts the
// others'.
func NewAPI(db string, conn Conn, sender *webhook.Sender, apiKey string, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{store: NewStore(conn, db), conn: conn, db: db, sender: sender, log: log,
		attempts: httpapi.NewCursors("attempts", apiKey), replays: httpapi.NewCursors("replays", apiKey)}
}

// Register adds the routes to a group that already checks the API key, each
// behind the scope it needs.
func (a *API) Register(g *gin.RouterGroup) {
	endpoints, replays, stats := keys.Require(keys.EndpointsWrite), keys.Require(keys.ReplaysWrite), keys.Require(keys.StatsRead)
	g.POST("/endpoints", endpoints, a.createEndpoint)
	g.GET("/endpoints", endpoints, a.listEndpoints)
	g.GET("/endpoints/:id", endpoints, a.getEndpoint)
	g.PATCH("/endpoints/:id", endpoints, a.updateEndpoint)
	g.DELETE("/endpoints/:id", endpoints, a.deleteEndpoint)
	g.POST("/endpoints/:id/secret/rotate", endpoints, a.rotateSecret)
	g.POST("/endpoints/:id/test", endpoints, a.testEndpoint)
	g.GET("/endpoints/:id/attempts", replays, a.endpointAttempts)
	g.POST("/events/:eventId/resend", replays, a.resendEvent)
	g.POST("/replays", replays, a.createReplay)
	g.GET("/replays", replays, a.listReplays)
	g.GET("/replays/:id", replays, a.getReplay)
	g.POST("/replays/:id/cancel", replays, a.cancelReplay)
	g.GET("/replays/:id/attempts", replays, a.replayAttempts)
	g.GET("/stats/deliveries", stats, a.deliveryStats)
}

func (a *API) fail(c *gin.Context, err error) { httpapi.Fail(c, a.log, err, ErrNotFound) }

func bad(param, msg string) error { return &httpapi.BadParam{Param: param, Msg: msg} }

type endpointView struct {
	ID            string            `json:"id"`
	URL           string            `json:"url"`
	EnabledEvents []string          `json:"enabled_events"`
	Description   string            `json:"description"`
	RateLimit     *float64          `json:"rate_limit"`
	RetrySchedule []int64           `json:"retry_schedule"` // seconds, the one in use
	Headers       map[string]string `json:"headers"`
	// Enabled is false while the endpoint is disabled: since DisabledAt,
	// for DisabledReason. DisableAfter is in seconds, 0 never.
	Enabled        bool    `json:"enabled"`
	DisableAfter   int64   `json:"disable_after"`
	DisabledAt     *string `json:"disabled_at"`
	DisabledReason string  `json:"disabled_reason,omitempty"`
	Secret         string  `json:"secret,omitempty"`
	Health         *Health `json:"health,omitempty"` // GET of one endpoint only
	CreatedAt      string  `json:"created_at"`
}

func viewEndpoint(e Endpoint, withSecret bool) endpointView {
	v := endpointView{ID: e.ID, URL: e.URL, EnabledEvents: e.EnabledEvents, Description: e.Description, CreatedAt: httpapi.FormatTime(e.CreatedAt)}
	if e.RateLimit > 0 {
		r := e.RateLimit
		v.RateLimit = &r
	}
	schedule := e.RetrySchedule
	if schedule == nil {
		schedule = webhook.Backoff
	}
	for _, d := range schedule {
		v.RetrySchedule = append(v.RetrySchedule, int64(d/time.Second))
	}
	v.Enabled, v.DisableAfter = !e.Disabled(), int64(e.DisableAfter/time.Second)
	v.DisabledAt, v.DisabledReason = optTime(e.DisabledAt), e.DisabledReason
	v.Headers = e.Headers
	if v.Headers == nil {
		v.Headers = map[string]string{}
	}
	if withSecret {
		v.Secret = e.Secret
	}
	return v
}

// endpointInput is the body of POST and PATCH /v1/endpoints.
type endpointInput struct {
	URL           *string            `json:"url"`
	EnabledEvents *[]string          `json:"enabled_events"`
	Description   *string            `json:"description"`
	RateLimit     *float64           `json:"rate_limit"`
	RetrySchedule *[]int64           `json:"retry_schedule"`
	Headers       *map[string]string `json:"headers"`
	DisableAfter  *int64             `json:"disable_after"`
	Enabled       *bool              `json:"enabled"` // PATCH only
}

// apply checks the input and copies what it sets onto e.
func (a *API) apply(ctx context.Context, in endpointInput, e *Endpoint) error {
	if in.URL != nil {
		if _, err := a.sender.ValidateURL(ctx, *in.URL); err != nil {
			return bad("url", strings.TrimPrefix(err.Error(), "url: "))
		}
		e.URL = *in.URL
	}
	if in.EnabledEvents != nil {
		if _, err := schema.ParsePatterns(*in.EnabledEvents); err != nil {
			return bad("enabled_events", err.Error())
		}
		e.EnabledEvents = *in.EnabledEvents
	}
	if in.Description != nil {
		if len(*in.Description) > 1024 {
			return bad("description", "longer than 1024 bytes")
		}
		e.Description = *in.Description
	}
	if in.RateLimit != nil {
		if r := *in.RateLimit; r <= 0 || r > 100_000 || math.IsNaN(r) {
			return bad("rate_limit", "want deliveries per second, more than 0 and at most 100000")
		}
		e.RateLimit = *in.RateLimit
	}
	if in.RetrySchedule != nil {
		schedule, err := ParseSchedule(*in.RetrySchedule)
		if err != nil {
			return bad("retry_schedule", err.Error())
		}
		e.RetrySchedule = schedule
	}
	if in.Headers != nil {
		if err := ValidateHeaders(*in.Headers); err != nil {
			return bad("headers", err.Error())
		}
		e.Headers = *in.Headers
	}
	if in.DisableAfter != nil {
		d, err := ParseDisableAfter(*in.DisableAfter)
		if err != nil {
			return bad("disable_after", err.Error())
		}
		e.DisableAfter = d
	}
	return nil
}

func (a *API) createEndpoint(c *gin.Context) {
	var in endpointInput
	if err := httpapi.DecodeJSON(c, &in); err != nil {
		a.fail(c, err)
		return
	}
	if in.URL == nil {
		a.fail(c, bad("url", "required"))
		return
	}
	if in.EnabledEvents == nil {
		a.fail(c, bad("enabled_events", "required: patterns such as [\"*\"] or [\"send.email.bounced\"]"))
		return
	}
	if in.Enabled != nil {
		a.fail(c, bad("enabled", "a new endpoint is enabled; disable it with PATCH"))
		return
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		a.fail(c, err)
		return
	}
	a.applyAndSave(c, in, Endpoint{ID: newID("whep_"), Secret: secret, CreatedAt: time.Now().UTC(), DisableAfter: DefaultDisableAfter}, http.StatusCreated, true)
}

// applyAndSave checks the input onto e, stores e and answers with it.
func (a *API) applyAndSave(c *gin.Context, in endpointInput, e Endpoint, status int, withSecret bool) {
	if err := a.apply(c.Request.Context(), in, &e); err != nil {
		a.fail(c, err)
		return
	}
	if err := a.store.SaveEndpoint(c.Request.Context(), e); err != nil {
		a.fail(c, err)
		return
	}
	if in.Enabled != nil && *in.Enabled == e.Disabled() {
		if err := a.setEnabled(c.Request.Context(), &e, *in.Enabled); err != nil {
			a.fail(c, err)
			return
		}
	}
	c.JSON(status, viewEndpoint(e, withSecret))
}

// setEnabled enables e again, which resumes its paused replays (workers
// take them up again), or disables it on request, which pauses them.
func (a *API) setEnabled(ctx context.Context, e *Endpoint, enabled bool) error {
	now := time.Now().UTC()
	change := Change{EndpointID: e.ID, At: now, Change: ChangeEnabled, Reason: "enabled by request"}
	if !enabled {
		change.Change, change.Reason = ChangeDisabled, "disabled by request"
	}
	if err := a.store.RecordChange(ctx, change); err != nil {
		return err
	}
	a.log.Info("endpoint "+change.Change, "endpoint", e.ID, "reason", change.Reason)
	a.notify.Changed(*e, change)
	if enabled {
		e.DisabledAt, e.DisabledReason, e.EnabledAt = time.Time{}, "", now
	} else {
		e.DisabledAt, e.DisabledReason = now, change.Reason
	}
	return nil
}

func (a *API) listEndpoints(c *gin.Context) {
	es, err := a.store.Endpoints(c.Request.Context(), "")
	if err != nil {
		a.fail(c, err)
		return
	}
	out := make([]endpointView, 0, len(es))
	for _, e := range es {
		out = append(out, viewEndpoint(e, false))
	}
	c.JSON(http.StatusOK, gin.H{"data": out})
}

func (a *API) getEndpoint(c *gin.Context) {
	e, err := a.store.Endpoint(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.fail(c, err)
		return
	}
	h, err := a.store.Health(c.Request.Context(), e.ID, time.Now())
	if err != nil {
		a.fail(c, err)
		return
	}
	v := viewEndpoint(e, false)
	v.Health = &h
	c.JSON(http.StatusOK, v)
}

func (a *API) updateEndpoint(c *gin.Context) {
	e, err := a.store.Endpoint(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.fail(c, err)
		return
	}
	var in endpointInput
	if err := httpapi.DecodeJSON(c, &in); err != nil {
		a.fail(c, err)
		return
	}
	a.applyAndSave(c, in, e, http.StatusOK, false)
}

func (a *API) deleteEndpoint(c *gin.Context) {
	e, err := a.store.Endpoint(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.fail(c, err)
		return
	}
	if err := a.store.DeleteEndpoint(c.Request.Context(), e); err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"id": e.ID, "deleted": true})
}

// rotateSecret gives the endpoint a new secret; the old one keeps signing
// beside it for 24 hours, so receivers can switch without a gap.
func (a *API) rotateSecret(c *gin.Context) {
	e, err := a.store.Endpoint(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.fail(c, err)
		return
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		a.fail(c, err)
		return
	}
	e.PreviousSecret, e.PreviousUntil, e.Secret = e.Secret, time.Now().UTC().Add(24*time.Hour), secret
	if err := a.store.SaveEndpoint(c.Request.Context(), e); err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"id": e.ID, "secret": secret, "previous_secret_expires_at": httpapi.FormatTime(e.PreviousUntil)})
}

type attemptView struct {
	Outcome   string  `json:"outcome"`
	Status    int     `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

// testEndpoint sends one platform.test event, like a dashboard's Test
// Webhook button, and answers with what happened.
func (a *API) testEndpoint(c *gin.Context) {
	ctx := c.Request.Context()
	e, err := a.store.Endpoint(ctx, c.Param("id"))
	if err != nil {
		a.fail(c, err)
		return
	}
	now := time.Now().UTC()
	id := newID("evt_test_")
	body, _ := json.Marshal(map[string]any{
		"eventId": id, "type": "platform.test", "service": "platform", "livemode": false, "createdAt": now.UnixMilli(),
		"data": map[string]any{"message": "This is a test webhook event from do.dev", "endpoint_id": e.ID},
	})
	at := a.sender.Send(ctx, e.URL, webhook.Message{ID: id, Body: body, Secrets: e.Secrets(now), Headers: e.Headers})
	if err := a.store.RecordAttempts(ctx, []Record{{EndpointID: e.ID, EventID: id, EventType: "platform.test", Attempt: 1, Result: at, At: now}}); err != nil {
		a.log.Warn("record test delivery", "endpoint", e.ID, "err", err)
	}
	c.JSON(http.StatusOK, gin.H{
		"event":   json.RawMessage(body),
		"attempt": viewAttempt(at),
	})
}

// resendEvent serves POST /v1/events/{eventId}/resend: one stored event,
// sent now to one endpoint that subscribes to its type, as a replay sends it
// (original bytes, signed, the eventId as webhook-id), once, without
// retries. It answers with the attempt, which the delivery log keeps too.
func (a *API) resendEvent(c *gin.Context) {
	ctx := c.Request.Context()
	var in struct {
		EndpointID string `json:"endpoint_id"`
	}
	if err := httpapi.DecodeJSON(c, &in); err != nil {
		a.fail(c, err)
		return
	}
	if in.EndpointID == "" {
		a.fail(c, bad("endpoint_id", "required"))
		return
	}
	ep, err := a.store.Endpoint(ctx, in.EndpointID)
	if errors.Is(err, ErrNotFound) {
		err = bad("endpoint_id", "no endpoint "+strconv.Quote(in.EndpointID))
	}
	if err != nil {
		a.fail(c, err)
		return
	}
	id := c.Param("eventId")
	raw, err := a.store.Event(ctx, id)
	if err != nil {
		a.fail(c, err)
		return
	}
	var p schema.Parser
	ev, err := p.Parse(raw)
	if err != nil {
		a.fail(c, fmt.Errorf("stored event %q: %w", id, err))
		return
	}
	patterns, err := schema.ParsePatterns(ep.EnabledEvents)
	if err != nil {
		a.fail(c, fmt.Errorf("endpoint %s: %w", ep.ID, err))
		return
	}
	if !schema.MatchAny(patterns, ev.Type) {
		a.fail(c, bad("endpoint_id", fmt.Sprintf("endpoint %s does not subscribe to %s (enabled_events %s)", ep.ID, ev.Type, strings.Join(ep.EnabledEvents, ", "))))
		return
	}
	now := time.Now().UTC()
	at := a.sender.Send(ctx, ep.URL, webhook.Message{ID: id, Body: raw, Secrets: ep.Secrets(now), Headers: ep.Headers})
	if err := a.store.RecordAttempts(ctx, []Record{{EndpointID: ep.ID, EventID: id, EventType: ev.Type, Attempt: 1, Result: at, At: now}}); err != nil {
		a.log.Warn("record resend", "endpoint", ep.ID, "err", err)
	}
	c.JSON(http.StatusOK, gin.H{"event_id": id, "endpoint_id": ep.ID, "attempt": viewAttempt(at)})
}

func viewAttempt(at webhook.Attempt) attemptView {
	return attemptView{Outcome: at.Outcome.String(), Status: at.Status, LatencyMS: float64(at.Latency.Microseconds()) / 1000, Error: at.Err}
}

// replayInput is the body of POST /v1/replays.
type replayInput struct {
	EndpointID    string          `json:"endpoint_id"`
	Since         json.RawMessage `json:"since"`
	Until         json.RawMessage `json:"until"`
	EnabledEvents []string        `json:"enabled_events"`
	Livemode      json.RawMessage `json:"livemode"`
	Ordered       *bool           `json:"ordered"`
	Concurrency   *int            `json:"concurrency"`
	RateLimit     *float64        `json:"rate_limit"`
	OnlyFailed    bool            `json:"only_failed"`
	// Filters are the dimension filters of GET /v1/stats, dimension →
	// "v1,v2".
	Filters map[string]string `json:"filters"`
	DryRun  bool              `json:"dry_run"`
	// Follow goes on after the range (which then has no until): see
	// follow.go.
	Follow bool `json:"follow"`
}

// jsonTime reads a JSON number of milliseconds or a string (RFC3339 or
// digits).
func jsonTime(param string, raw json.RawMessage) (time.Time, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		s = string(bytes.TrimSpace(raw))
	}
	return httpapi.ParseTime(param, s)
}

func (a *API) createReplay(c *gin.Context) {
	ctx := c.Request.Context()
	var in replayInput
	if err := httpapi.DecodeJSON(c, &in); err != nil {
		a.fail(c, err)
		return
	}
	job, patterns, err := a.newJob(ctx, in)
	if err != nil {
		a.fail(c, err)
		return
	}
	if in.DryRun {
		d, err := dryRun(ctx, a.conn, a.db, job, patterns)
		if err != nil {
			a.fail(c, err)
			return
		}
		c.JSON(http.StatusOK, d)
		return
	}
	if err := a.store.SaveJob(ctx, job); err != nil {
		a.fail(c, err)
		return
	}
	if a.created != nil {
		a.created(job.ID)
	}
	c.JSON(http.StatusAccepted, viewJob(job, time.Now()))
}

func (a *API) newJob(ctx context.Context, in replayInput) (Job, []schema.Pattern, error) {
	if in.EndpointID == "" {
		return Job{}, nil, bad("endpoint_id", "required")
	}
	ep, err := a.store.Endpoint(ctx, in.EndpointID)
	if errors.Is(err, ErrNotFound) {
		return Job{}, nil, bad("endpoint_id", "no endpoint "+strconv.Quote(in.EndpointID))
	}
	if err != nil {
		return Job{}, nil, err
	}
	job := Job{ID: newID("rpl_"), EndpointID: ep.ID, Status: StatusPending, Livemode: schema.LiveAll, Ordered: true, Concurrency: 1,
		EnabledEvents: ep.EnabledEvents, OnlyFailed: in.OnlyFailed, Follow: in.Follow, CreatedAt: time.Now().UTC()}
	if len(in.Since) == 0 {
		return Job{}, nil, bad("since", "required: RFC3339 or integer milliseconds")
	}
	if job.Since, err = jsonTime("since", in.Since); err != nil {
		return Job{}, nil, err
	}
	if len(in.Until) > 0 && string(in.Until) != "null" {
		if job.Until, err = jsonTime("until", in.Until); err != nil {
			return Job{}, nil, err
		}
		if !job.Since.Before(job.Until) {
			return Job{}, nil, bad("since", "must be before until")
		}
		if in.Follow {
			return Job{}, nil, bad("until", "a follow has no end: give until or follow, not both")
		}
	}
	if in.Follow && in.OnlyFailed {
		return Job{}, nil, bad("only_failed", "a follow delivers new events; only_failed resends old ones: give one")
	}
	if in.EnabledEvents != nil {
		job.EnabledEvents = in.EnabledEvents
	}
	for name, v := range in.Filters {
		if _, ok := schema.Dimensions[name]; !ok {
			return Job{}, nil, bad("filters", fmt.Sprintf("no dimension %q", name))
		}
		if v == "" {
			return Job{}, nil, bad("filters", name+": an empty value")
		}
	}
	filters, err := schema.ParseFilters(func(n string) string { return in.Filters[n] }, "")
	var fe *schema.FilterError
	if errors.As(err, &fe) {
		return Job{}, nil, bad("filters", fe.Error())
	}
	job.Filters = filters.Map()
	patterns, err := schema.ParsePatterns(job.EnabledEvents)
	if err != nil {
		return Job{}, nil, bad("enabled_events", err.Error())
	}
	if len(in.Livemode) > 0 {
		// JSON true and false, or the strings the stats API takes.
		if job.Livemode, err = schema.ParseLivemode(strings.Trim(string(in.Livemode), `"`), schema.LiveAll); err != nil {
			return Job{}, nil, bad("livemode", "want true, false or \"all\"")
		}
	}
	if in.Ordered != nil {
		job.Ordered = *in.Ordered
	}
	if !job.Ordered {
		job.Concurrency = 8
	}
	if in.Concurrency != nil {
		if job.Ordered {
			return Job{}, nil, bad("concurrency", "only for unordered replays (ordered: false)")
		}
		if *in.Concurrency < 1 || *in.Concurrency > 256 {
			return Job{}, nil, bad("concurrency", "want 1 to 256")
		}
		job.Concurrency = *in.Concurrency
	}
	if in.RateLimit != nil {
		if r := *in.RateLimit; r <= 0 || r > 100_000 || math.IsNaN(r) {
			return Job{}, nil, bad("rate_limit", "want deliveries per second, more than 0 and at most 100000")
		}
		job.RateLimit = *in.RateLimit
	}
	return job, patterns, nil
}

type jobView struct {
	ID            string          `json:"id"`
	EndpointID    string          `json:"endpoint_id"`
	Status        string          `json:"status"`
	Since         string          `json:"since"`
	Until         *string         `json:"until"`
	EnabledEvents []string        `json:"enabled_events"`
	Livemode      schema.Livemode `json:"livemode"`
	Ordered       bool            `json:"ordered"`
	Concurrency   int             `json:"concurrency"`
	RateLimit     *float64        `json:"rate_limit"`
	OnlyFailed    bool            `json:"only_failed"`
	Follow        bool            `json:"follow"`
	// LagSeconds is a follow's Lag; null for other replays.
	LagSeconds *float64            `json:"lag_seconds"`
	Filters    map[string][]string `json:"filters,omitempty"`
	Matched    uint64              `json:"matched"`
	Delivered  uint64              `json:"delivered"`
	Failed     uint64              `json:"failed"`
	Attempts   uint64              `json:"attempts"`
	Progress   float64             `json:"progress"`
	Rate       float64             `json:"rate"`
	ETASeconds *float64            `json:"eta_seconds"`
	CreatedAt  string              `json:"created_at"`
	StartedAt  *string             `json:"started_at"`
	FinishedAt *string             `json:"finished_at"`
	LastError  *string             `json:"last_error"`
}

func optTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := httpapi.FormatTime(t)
	return &s
}

// viewJob adds the figures a client follows a job by: progress, the mean
// rate since it started, and the time left at that rate.
func viewJob(j Job, now time.Time) jobView {
	v := jobView{ID: j.ID, EndpointID: j.EndpointID, Status: j.Status, Since: httpapi.FormatTime(j.Since), Until: optTime(j.Until),
		EnabledEvents: j.EnabledEvents, Livemode: j.Livemode, Ordered: j.Ordered, Concurrency: j.Concurrency,
		OnlyFailed: j.OnlyFailed, Follow: j.Follow, Filters: j.Filters, Matched: j.Matched, Delivered: j.Delivered, Failed: j.Failed, Attempts: j.Attempts,
		CreatedAt: httpapi.FormatTime(j.CreatedAt), StartedAt: optTime(j.StartedAt), FinishedAt: optTime(j.FinishedAt)}
	if j.RateLimit > 0 {
		r := j.RateLimit
		v.RateLimit = &r
	}
	if j.Follow && !j.Done() {
		lag := j.Lag.Seconds()
		v.LagSeconds = &lag
	}
	if j.LastError != "" {
		e := j.LastError
		v.LastError = &e
	}
	done := j.Delivered + j.Failed
	switch {
	case j.Status == StatusCompleted || j.Status == StatusFollowing:
		v.Progress = 1 // of the range; a follow has no end
	case j.Matched > 0:
		v.Progress = min(float64(done)/float64(j.Matched), 1)
	}
	end := now
	if !j.FinishedAt.IsZero() {
		end = j.FinishedAt
	}
	if !j.StartedAt.IsZero() && end.After(j.StartedAt) {
		v.Rate = float64(done) / end.Sub(j.StartedAt).Seconds()
	}
	if !j.Done() && !j.Follow && v.Rate > 0 && j.Matched >= done {
		eta := float64(j.Matched-done) / v.Rate
		v.ETASeconds = &eta
	}
	return v
}

func (a *API) listReplays(c *gin.Context) {
	limit, err := httpapi.ParseLimit(c.Query("limit"), 100, 1000)
	if err != nil {
		a.fail(c, err)
		return
	}
	var after []JobKey
	if v := c.Query("cursor"); v != "" {
		var k JobKey
		if err := a.replays.Decode("cursor", v, &k); err != nil {
			a.fail(c, err)
			return
		}
		after = append(after, k)
	}
	js, err := a.store.Jobs(c.Request.Context(), "", limit+1, after...)
	if err != nil {
		a.fail(c, err)
		return
	}
	var next *string
	if len(js) > limit {
		js = js[:limit]
		last := js[limit-1]
		v := a.replays.Encode(JobKey{CreatedAt: last.CreatedAt.UnixMilli(), ID: last.ID})
		next = &v
	}
	now := time.Now()
	out := make([]jobView, 0, len(js))
	for _, j := range js {
		out = append(out, viewJob(j, now))
	}
	c.JSON(http.StatusOK, gin.H{"data": out, "next_cursor": next})
}

func (a *API) getReplay(c *gin.Context) {
	j, err := a.store.Job(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewJob(j, time.Now()))
}

func (a *API) cancelReplay(c *gin.Context) {
	ctx := c.Request.Context()
	j, err := a.store.Job(ctx, c.Param("id"))
	if err != nil {
		a.fail(c, err)
		return
	}
	if !j.Done() {
		if err := a.store.Cancel(ctx, j.ID); err != nil {
			a.fail(c, err)
			return
		}
		j.Status = StatusCancelled
	}
	c.JSON(http.StatusOK, viewJob(j, time.Now()))
}
