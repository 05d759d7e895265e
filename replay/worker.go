package replay

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/dodev/hindsight/replay/webhook"
	"github.com/dodev/hindsight/schema"
)

// WorkerConfig configures a replay worker.
type WorkerConfig struct {
	// Database holds the events and replay tables. Default
	// schema.DefaultDatabase.
	Database string
	// Owner names this worker in leases. Default host-pid.
	Owner string
	// Poll is how often unfinished jobs are looked for. Default 1 s.
	Poll time.Duration
	// LeaseTTL is how long a lease lasts unless renewed (every third of it).
	// A worker that dies loses its jobs to others after this. Default 30 s.
	LeaseTTL time.Duration
	// LeaseSettle is how long a worker claiming a job waits before it reads
	// whether another claimed it too (see Store.TryLease): 0 where every
	// worker reads the server it writes, as on one server; on a cluster, at
	// least how far a replica may lag behind the one written. Default 0.
	LeaseSettle time.Duration
	// MaxJobs is how many jobs this worker runs at once. Default 64.
	MaxJobs int
	// PageSize is how many events a page holds at most (fewer at a rate
	// limit or for large events: see pageSize and pageLimit): what one
	// query reads, and what a job settles at a time, logging the page's
	// attempts in one insert and saving its place after them. A resumed job
	// may send again what it had in flight: one page for an ordered job, for
	// an unordered one as many as had events waiting for a retry (at most
	// 16). A page's insert into the attempt log and its progress write cost
	// ClickHouse 18.16 about 40 ms of CPU, nearly whatever its size.
	// Default 20000.
	PageSize int
	// PageBytes ends a page early once it holds this many bytes of events,
	// so large events cannot make a page (two with the one read ahead)
	// outgrow memory; an unordered job takes no new page while this many
	// bytes of events wait for a retry. Default 16 MiB.
	PageBytes int
	// Kafka is where follows read new events; nil: this worker runs no
	// follows (others may).
	Kafka *KafkaSource
	// Wakes is where API processes announce new replays (see Announcer):
	// the worker looks for jobs when one arrives, not only every Poll.
	// nil: polls only.
	Wakes *WakeSource
	// DeliveriesRetention is how long the attempt log keeps attempts (see
	// schema.ApplyRetention, applied at start and every hour). Default 30
	// days; negative keeps them forever.
	DeliveriesRetention time.Duration
}

// Worker defaults.
const (
	DefaultPoll      = time.Second
	DefaultLeaseTTL  = 30 * time.Second
	DefaultMaxJobs   = 64
	DefaultPageSize  = 20000
	DefaultPageBytes = 16 << 20
	// ClusterLeaseSettle is the least LeaseSettle of workers on a cluster:
	// replicas of one site take well under it to copy a small insert.
	ClusterLeaseSettle = 300 * time.Millisecond
	// DefaultDeliveriesRetention is 30 days.
	DefaultDeliveriesRetention = 30 * 24 * time.Hour
)

// ApplyDefaults fills zero fields.
func (c *WorkerConfig) ApplyDefaults() {
	if c.Database == "" {
		c.Database = schema.DefaultDatabase
	}
	if c.Owner == "" {
		host, _ := os.Hostname()
		c.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), newID("")[:6])
	}
	if c.Poll == 0 {
		c.Poll = DefaultPoll
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.MaxJobs == 0 {
		c.MaxJobs = DefaultMaxJobs
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.PageBytes == 0 {
		c.PageBytes = DefaultPageBytes
	}
	if c.DeliveriesRetention == 0 {
		c.DeliveriesRetention = DefaultDeliveriesRetention
	}
}

// RegisterFlagsAndApplyDefaults applies the defaults, then registers a flag
// for each setting an operator tunes, bound to its field with that default
// (see ingest.Config's). Database and Owner are the caller's.
func (c *WorkerConfig) RegisterFlagsAndApplyDefaults(fs *flag.FlagSet) {
	c.ApplyDefaults()
	fs.Func("deliveries-retention", fmt.Sprintf("how long the attempt log keeps attempts; 0 keeps them forever (default %s)", c.DeliveriesRetention),
		func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return err
			}
			if d <= 0 {
				d = -1 // forever
			}
			c.DeliveriesRetention = d
			return nil
		})
	fs.DurationVar(&c.Poll, "poll", c.Poll, "how often this worker looks for new replay jobs; each look costs ClickHouse a few ms of CPU "+
		"(a worker in the API's process is also woken when the API creates one)")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", c.LeaseTTL, "how long a replay job stays with a worker that stopped renewing it")
	fs.DurationVar(&c.LeaseSettle, "lease-settle", c.LeaseSettle, "how long claiming a replay job waits before reading who else claimed it: "+
		"how far a replica of replay_leases may lag (with --cluster at least "+ClusterLeaseSettle.String()+"; one server needs none)")
	fs.IntVar(&c.PageSize, "page-size", c.PageSize, "events read per query by replay jobs; what a resumed job may repeat")
	fs.IntVar(&c.MaxJobs, "max-jobs", c.MaxJobs, "replay jobs this worker runs at once")
}

// Validate reports the first setting that cannot work.
func (c *WorkerConfig) Validate() error {
	if err := schema.ValidateDatabase(c.Database); err != nil {
		return err
	}
	if c.Poll < 10*time.Millisecond || c.LeaseTTL < time.Second || c.LeaseSettle < 0 || c.LeaseSettle >= c.LeaseTTL/3 ||
		c.MaxJobs < 1 || c.PageSize < 1 || c.PageBytes < 1 {
		return fmt.Errorf("replay worker: poll %s, lease %s settling %s, max jobs %d, page %d events and %d bytes: "+
			"want >= 10ms, >= 1s, >= 0 and under a third of the lease, >= 1, >= 1, >= 1",
			c.Poll, c.LeaseTTL, c.LeaseSettle, c.MaxJobs, c.PageSize, c.PageBytes)
	}
	return nil
}

// Worker runs replay jobs. Several workers, in one process or many, share
// the jobs: each job is leased to one worker at a time.
type Worker struct {
	cfg    WorkerConfig
	store  *Store
	conn   Conn
	sender *webhook.Sender
	log    *slog.Logger

	mu      sync.Mutex
	running map[string]bool
	wg      sync.WaitGroup
	metrics *workerMetrics
	notify  *Notifier // nil: none
	// disabling makes a check and its change one step, so two jobs of
	// one endpoint cannot both disable it.
	disabling sync.Mutex
	wake      chan struct{} // Wake's: look for jobs now
}

// NotifyTo has the worker post a notification to n when it disables an
// endpoint and when a replay ends failed. Call it before Run.
func (w *Worker) NotifyTo(n *Notifier) { w.notify = n }

// NewWorker builds a worker.
func NewWorker(cfg WorkerConfig, conn Conn, sender *webhook.Sender, log *slog.Logger) (*Worker, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	store := NewStore(conn, cfg.Database)
	store.leaseSettle = cfg.LeaseSettle
	w := &Worker{cfg: cfg, store: store, conn: conn, sender: sender, log: log, running: map[string]bool{},
		wake: make(chan struct{}, 1)}
	w.metrics = newWorkerMetrics(w)
	return w, nil
}

// Wake has the worker look for jobs now rather than at its next poll: the
// API calls it for each replay it creates when both run in one process.
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default: // it will look anyway
	}
}

// Run looks for unfinished jobs every Poll, and when woken (Wake, or an
// announcement on its Wakes topic), until ctx ends, then waits for the jobs
// it runs to stop at their next delivery.
func (w *Worker) Run(ctx context.Context) error {
	defer w.wg.Wait()
	if w.cfg.Wakes != nil {
		// From a poll back: what was announced as this worker started is
		// looked for again, never missed.
		since := time.Now().Add(-w.cfg.Poll)
		w.wg.Go(func() { w.listen(ctx, w.cfg.Wakes, since) })
	}
	t := time.NewTicker(w.cfg.Poll)
	defer t.Stop()
	prune := time.After(leasePruneEvery / 2)
	retain := time.After(0)
	for {
		if err := w.claim(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("look for replay jobs", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-w.wake:
		case <-prune:
			if err := w.store.PruneLeases(ctx, time.Now().Add(-leasePruneEvery)); err != nil && ctx.Err() == nil {
				w.log.Warn("prune replay leases", "err", err)
			}
			prune = time.After(leasePruneEvery + time.Duration(rand.Int64N(int64(leasePruneEvery/10))))
		case <-retain:
			retain = time.After(leasePruneEvery)
			w.applyRetention(ctx)
		}
	}
}

// applyRetention lets attempts older than the retention go.
func (w *Worker) applyRetention(ctx context.Context) {
	if w.cfg.DeliveriesRetention < 0 {
		return
	}
	dropped, err := schema.ApplyRetention(ctx, w.conn, w.cfg.Database, schema.DeliveriesRetained, w.cfg.DeliveriesRetention, time.Now())
	switch {
	case err != nil && ctx.Err() == nil:
		w.log.Warn("apply the attempt log's retention", "err", err)
	case len(dropped) > 0:
		w.log.Info("attempts past their retention dropped", "months", dropped, "retention", w.cfg.DeliveriesRetention)
	}
}

// leasePruneEvery is how often a worker deletes renewals of claims that
// expired more than this long ago (Store.PruneLeases).
const leasePruneEvery = time.Hour

func (w *Worker) claim(ctx context.Context) error {
	ids, err := w.store.Unfinished(ctx)
	if err != nil {
		return err
	}
	w.mu.Lock()
	free := w.cfg.MaxJobs - len(w.running)
	ids = slices.DeleteFunc(ids, func(id string) bool { return w.running[id] })
	w.mu.Unlock()
	if free <= 0 || len(ids) == 0 {
		return nil
	}
	held, err := w.store.HeldElsewhere(ctx, ids, w.cfg.Owner)
	if err != nil {
		return err
	}
	ids = slices.DeleteFunc(ids, func(id string) bool { return held[id] })
	// Idle workers polling at once would all try the same first free job;
	// in a random order they spread over the free ones.
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	// Only claim adds to running, so none of ids can have started meanwhile.
	for _, id := range ids {
		w.mu.Lock()
		if len(w.running) >= w.cfg.MaxJobs {
			w.mu.Unlock()
			return nil
		}
		w.running[id] = true
		w.mu.Unlock()
		w.wg.Go(func() {
			defer func() {
				w.mu.Lock()
				delete(w.running, id)
				w.mu.Unlock()
			}()
			if err := w.runJob(ctx, id); err != nil && ctx.Err() == nil {
				w.log.Warn("replay job", "replay", id, "err", err)
			}
		})
	}
	return nil
}

// runJob leases a job and delivers it page by page until it ends, the lease
// is lost, or ctx ends.
func (w *Worker) runJob(ctx context.Context, id string) error {
	if w.cfg.Kafka == nil {
		// A follow reads Kafka: it is left to workers that can.
		if job, err := w.store.Job(ctx, id); err != nil || (job.Follow && !job.Done() && job.Status != StatusCancelled) {
			return err
		}
	}
	ok, err := w.store.TryLease(ctx, id, w.cfg.Owner, w.cfg.LeaseTTL)
	if err != nil || !ok {
		return err
	}
	jobCtx, cancel := context.WithCancelCause(ctx)
	var watching sync.WaitGroup
	defer func() {
		// The watch stops first: seeing the lease released under it, it
		// would report the lease lost. The job's ctx is over by then;
		// releasing still lets another worker resume at once instead of
		// after the lease expires.
		cancel(nil)
		watching.Wait()
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer rcancel()
		_ = w.store.ReleaseLease(rctx, id, w.cfg.Owner)
	}()

	job, err := w.store.Job(jobCtx, id)
	if err != nil {
		return err
	}
	if job.Status == StatusCancelled {
		// Cancelled before any worker ran it, or while paused: record the end.
		return w.finish(jobCtx, job, StatusCancelled, "")
	}
	if job.Done() {
		return nil
	}
	watched := job // a copy: deliverJob changes job as it goes
	watching.Go(func() { w.watch(jobCtx, watched, cancel) })
	err = w.deliverJob(jobCtx, &job, cancel)
	if err == nil {
		return nil // ended, and recorded so
	}
	// Stopped by a cancel or by its endpoint's disabling, mid-page or
	// between pages: record it under a fresh context, as the job's own
	// may be over. A paused job keeps its cursor, before any page it
	// did not finish.
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	switch cause := context.Cause(jobCtx); {
	case errors.Is(cause, errCancelled):
		return w.finish(fctx, job, StatusCancelled, "")
	case errors.Is(cause, errPaused) || errors.Is(err, errPaused):
		job.Status = StatusPaused
		w.log.Info("replay paused: its endpoint is disabled", "replay", job.ID, "endpoint", job.EndpointID)
		return w.store.SaveJob(fctx, job)
	}
	return err
}

// errCancelled is the cause of a job's context ending by a cancel request,
// errPaused by its endpoint being disabled. errGone says the job's
// endpoint was deleted.
var (
	errCancelled = errors.New("replay cancelled")
	errPaused    = errors.New("endpoint disabled")
	errGone      = errors.New("endpoint deleted")
)

// endpointOf reads the job's endpoint: errGone when it was deleted,
// errPaused when it is disabled.
func (w *Worker) endpointOf(ctx context.Context, job Job) (Endpoint, error) {
	ep, err := w.store.Endpoint(ctx, job.EndpointID)
	if errors.Is(err, ErrNotFound) {
		return Endpoint{}, errGone
	}
	if err == nil && ep.Disabled() {
		err = errPaused
	}
	return ep, err
}

// watch checks every second that the job is not cancelled, that its
// endpoint is not disabled and that this worker still holds its lease, and
// renews the lease every third of its TTL. Losing the lease, being
// cancelled or the endpoint's disabling ends the job's context.
func (w *Worker) watch(ctx context.Context, job Job, cancel context.CancelCauseFunc) {
	id := job.ID
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if c, err := w.store.IsCancelled(ctx, id); err == nil && c {
			cancel(errCancelled)
			return
		}
		if c, err := w.store.latestChanges(ctx, job.EndpointID); err == nil && c[job.EndpointID].Change == ChangeDisabled {
			cancel(errPaused)
			return
		}
		if holder, err := w.store.LeaseHolder(ctx, id); err == nil && holder != w.cfg.Owner {
			w.log.Warn("replay lease lost", "replay", id, "holder", holder)
			cancel(errors.New("lease lost"))
			return
		}
		if time.Since(renewed) >= w.cfg.LeaseTTL/3 {
			ok, err := w.store.TryLease(ctx, id, w.cfg.Owner, w.cfg.LeaseTTL)
			if err == nil && !ok {
				w.log.Warn("replay lease lost", "replay", id)
				cancel(errors.New("lease lost"))
				return
			}
			if err == nil {
				renewed = time.Now()
			}
		}
	}
}

// event is one row of a page.
type event struct {
	id        string
	typ       string
	createdAt int64
	raw       []byte
}

// deliverJob runs the job, updating *job as it goes. pause ends ctx when
// the job's endpoint is disabled on the way.
func (w *Worker) deliverJob(ctx context.Context, job *Job, pause context.CancelCauseFunc) error {
	patterns, err := schema.ParsePatterns(job.EnabledEvents)
	if err != nil {
		return w.finish(ctx, *job, StatusFailed, "bad patterns: "+err.Error())
	}
	var firstAt int64
	if job.Status == StatusPending {
		if job.Matched, firstAt, err = countMatching(ctx, w.conn, w.cfg.Database, *job, patterns); err != nil {
			return err
		}
		job.Status, job.StartedAt = StatusRunning, time.Now().UTC()
		if err := w.store.SaveJob(ctx, *job); err != nil {
			return err
		}
		w.log.Info("replay started", "replay", job.ID, "endpoint", job.EndpointID, "matched", job.Matched)
	}
	if job.Follow && job.FollowOffsets == nil {
		// Before the range is read: see follow.go.
		if job.FollowOffsets, err = w.followFrom(ctx); err != nil {
			return err
		}
		if err := w.store.SaveJob(ctx, *job); err != nil {
			return err
		}
	}
	f := w.newFlight(ctx, *job, pause)
	defer f.stop()
	if err := w.deliverRange(ctx, job, patterns, f, firstAt); err != nil {
		return errors.Join(err, w.land(ctx, job, f))
	}
	return nil
}

// deliverRange hands the job's pages to f, from its cursor to the end of
// its range, then follows if the job does, or ends it completed. firstAt is
// the createdAt of the job's first event when the job has just counted its
// events, else 0.
func (w *Worker) deliverRange(ctx context.Context, job *Job, patterns []schema.Pattern, f *flight, firstAt int64) error {
	var next <-chan pageResult
	for {
		if cancelled, err := w.store.IsCancelled(ctx, job.ID); err != nil {
			return err
		} else if cancelled {
			return w.end(ctx, job, f, StatusCancelled, "")
		}
		ep, err := w.endpointOf(ctx, *job)
		if errors.Is(err, errGone) {
			return w.end(ctx, job, f, StatusFailed, "endpoint "+job.EndpointID+" was deleted")
		}
		if err != nil {
			return err
		}
		if job.Status == StatusPaused {
			job.Status = StatusRunning
			if err := w.store.SaveJob(ctx, *job); err != nil {
				return err
			}
			w.log.Info("replay resumed", "replay", job.ID, "endpoint", job.EndpointID)
		}
		size := w.pageSize(*job, ep)
		if next == nil {
			next = w.prefetch(ctx, *job, patterns, nil, size, firstAt)
		}
		res := <-next
		if res.err != nil {
			return res.err
		}
		page := res.page
		if len(page) == 0 {
			break
		}
		last := page[len(page)-1]
		if err := w.hand(ctx, job, f, ep, page, func(j *Job) { j.CursorAt, j.CursorID = last.createdAt, last.id }); err != nil {
			return err
		}
		// Read the following page while this one is delivered: the query then
		// costs no delivery time. So does logging the pages before it.
		ahead := *job
		ahead.CursorAt, ahead.CursorID = last.createdAt, last.id
		next = w.prefetch(ctx, ahead, patterns, page, size, 0)
		if err := w.commit(ctx, job, f); err != nil {
			return err
		}
	}
	if err := w.wait(ctx, job, f, true); err != nil {
		return err
	}
	if job.Follow {
		return w.follow(ctx, job, patterns, f)
	}
	return w.finish(ctx, *job, StatusCompleted, job.LastError)
}

// pageSize is how many events a page of job to ep holds: PageSize, or a
// minute of deliveries at the rate limit if that is fewer, so a slow job
// still settles a page, logs its attempts and shows its progress about
// once a minute.
func (w *Worker) pageSize(job Job, ep Endpoint) int {
	limit := rateLimit(job, ep)
	if limit <= 0 {
		return w.cfg.PageSize
	}
	return max(1, int(min(float64(w.cfg.PageSize), limit*60)))
}

// hand gives page to f once it has room, its events to go to ep; advance
// moves the job's place past the page once it settles. The pages that
// settled before it are left for the caller's commit: the slots need not
// wait for it.
func (w *Worker) hand(ctx context.Context, job *Job, f *flight, ep Endpoint, page []event, advance func(*Job)) error {
	if err := w.wait(ctx, job, f, false); err != nil {
		return err
	}
	f.add(ep, page, advance)
	return nil
}

// wait waits until f has room for another page (all: until every page
// handed to it is done, and committed), committing the pages that settle
// before then.
func (w *Worker) wait(ctx context.Context, job *Job, f *flight, all bool) error {
	for {
		ready, err := f.await(ctx, all)
		if err != nil || ready {
			return err
		}
		if err := w.commit(ctx, job, f); err != nil {
			return err
		}
	}
}

// commit counts in *job the pages f has settled, moves its place past
// them and saves it, after logging the attempts made so far.
func (w *Worker) commit(ctx context.Context, job *Job, f *flight) error {
	pages, recs := f.collect(false)
	if err := w.store.RecordAttempts(ctx, recs); err != nil {
		return err
	}
	if len(pages) == 0 {
		return nil
	}
	count(job, pages)
	return w.store.SaveJob(ctx, *job)
}

// count adds pages to *job's counters and moves its place past them.
func count(job *Job, pages []*flightPage) {
	for _, p := range pages {
		job.Delivered += p.delivered
		job.Failed += p.failed
		job.Attempts += p.attempts
		if p.lastErr != "" {
			job.LastError = p.lastErr
		}
		p.advance(job)
	}
}

// land stops f and counts in *job what it got done, for whoever saves the
// job next: the pages settled, and of the rest only their attempts, as
// their events are sent again when the job resumes. It logs every attempt
// made, under a context of its own, as the job's may be over.
func (w *Worker) land(ctx context.Context, job *Job, f *flight) error {
	f.stop()
	settled, recs := f.collect(false)
	count(job, settled)
	rest, more := f.collect(true)
	for _, p := range rest {
		job.Attempts += p.attempts
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return w.store.RecordAttempts(lctx, append(recs, more...))
}

// end stops f, counts what it got done, and ends the job with status.
func (w *Worker) end(ctx context.Context, job *Job, f *flight, status, lastErr string) error {
	if err := w.land(ctx, job, f); err != nil {
		return err
	}
	return w.finish(ctx, *job, status, lastErr)
}

type pageResult struct {
	page []event
	err  error
}

// prefetch reads in the background the page after job's cursor that
// follows prev (nil: the first page), of pages of size events: prev sizes
// the read (pageLimit) and its first window (nextWindow, see readPage).
// Where the job's first event is known (firstAt, else 0), the first page's
// window reaches past the gap before it, rather than widening to it a query
// at a time. The channel has room for the result, so the goroutine ends
// even if nobody reads it.
func (w *Worker) prefetch(ctx context.Context, job Job, patterns []schema.Pattern, prev []event, size int, firstAt int64) <-chan pageResult {
	n := pageLimit(prev, size, w.cfg.PageBytes)
	window := nextWindow(prev, n)
	if prev == nil && firstAt > job.CursorAt {
		window += firstAt - job.CursorAt
	}
	ch := make(chan pageResult, 1)
	go func() {
		page, err := readPage(ctx, w.conn, w.cfg.Database, job, patterns, n, w.cfg.PageBytes, window)
		ch <- pageResult{page, err}
	}()
	return ch
}

func (w *Worker) finish(ctx context.Context, job Job, status, lastErr string) error {
	job.Status, job.LastError, job.FinishedAt = status, lastErr, time.Now().UTC()
	w.metrics.finished.WithLabelValues(status).Inc()
	w.log.Info("replay ended", "replay", job.ID, "status", status, "delivered", job.Delivered, "failed", job.Failed)
	if err := w.store.SaveJob(ctx, job); err != nil {
		return err
	}
	if status == StatusFailed {
		w.notify.Notify(NoticeReplayFailed, map[string]any{"replay_id": job.ID, "endpoint_id": job.EndpointID,
			"error": lastErr, "delivered": job.Delivered, "failed": job.Failed})
	}
	return nil
}

// disable disables ep, which has failed every attempt since since, unless
// it is disabled already (another job of it may have got there first).
func (w *Worker) disable(ctx context.Context, ep Endpoint, since time.Time, lastErr string) error {
	w.disabling.Lock()
	defer w.disabling.Unlock()
	changes, err := w.store.latestChanges(ctx, ep.ID)
	if err != nil {
		return err
	}
	if c := changes[ep.ID]; c.Change == ChangeDisabled {
		return nil
	}
	change := Change{EndpointID: ep.ID, At: time.Now().UTC(), Change: ChangeDisabled,
		Reason: fmt.Sprintf("every attempt failed for %s, since %s; the last: %s", ep.DisableAfter, since.Format(time.RFC3339), lastErr)}
	if err := w.store.RecordChange(ctx, change); err != nil {
		return err
	}
	w.metrics.disabled.Inc()
	w.log.Warn("endpoint disabled", "endpoint", ep.ID, "failing_since", since, "disable_after", ep.DisableAfter.String())
	w.notify.Changed(ep, change)
	return nil
}
