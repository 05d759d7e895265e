package replay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/dodev/hindsight/replay/webhook"
)

// maxPagesInFlight bounds the pages an unordered job has handed to its
// flight and not yet settled, so it bounds what a job stopped with retries
// waiting sends again. An ordered job has one page in flight at a time.
const maxPagesInFlight = 16

// flight delivers a job's pages. Its slots (job.Concurrency of them; one,
// in order, for an ordered job or a job of one), each on a connection of
// its own (a webhook.Line), take events in page order and send each until
// it is done: delivered, or failed for good. An event waiting out a retry's
// backoff waits in a queue by due time and holds no slot, and in an
// unordered job the pages after its own go on meanwhile; an ordered job's
// one slot waits with it, as the order demands.
//
// Pages settle in order: a page is settled once every event of it and of
// the pages before it is done. Only a settled page is counted in the job
// and moves its place on (see Worker.commit), so a job stopped with retries
// waiting sends their pages again rather than losing them.
type flight struct {
	w       *Worker
	job     Job
	ordered bool
	run     streak
	pause   context.CancelCauseFunc  // ends the job when its endpoint is disabled
	ep      atomic.Pointer[Endpoint] // the latest read: attempts go to it
	limiter *rate.Limiter
	slots   sync.WaitGroup
	unwatch func() bool // stops stopping the flight when the job's ctx ends

	mu       sync.Mutex
	work     *sync.Cond    // slots wait on it for an event to take
	progress *sync.Cond    // the job waits on it for room or a settled page
	pages    []*flightPage // handed in and not yet collected, oldest first
	fresh    []event       // the newest page's events not yet attempted
	waiting  []retry       // by due time
	queued   int           // bytes of the events in waiting
	attempts []Record      // made and not yet in the attempt log
	stopped  bool
}

// flightPage is what came of a page's events so far.
type flightPage struct {
	left              int // events not yet done
	delivered, failed uint64
	attempts          uint64
	lastErr           string
	advance           func(*Job) // moves the job's place past the page
}

// retry is an event of page pg waiting until due for attempt n (0-based).
type retry struct {
	ev  event
	pg  *flightPage
	n   int
	due time.Time
}

// streak is what a job knows of its endpoint's run of failed attempts
// beyond the attempt log.
type streak struct {
	lastOK  time.Time // the job's latest delivered attempt
	checked time.Time // when the log was last asked how long the run is
}

// healthEvery is how often a job whose endpoint is failing logs its attempts
// so far and asks the log how long the endpoint has failed.
const healthEvery = 2 * time.Second

// newFlight starts the slots of job's flight. They stop when ctx ends or at
// stop.
func (w *Worker) newFlight(ctx context.Context, job Job, pause context.CancelCauseFunc) *flight {
	f := &flight{w: w, job: job, ordered: job.Ordered || job.Concurrency <= 1, pause: pause, limiter: rate.NewLimiter(rate.Inf, 1)}
	f.work, f.progress = sync.NewCond(&f.mu), sync.NewCond(&f.mu)
	f.unwatch = context.AfterFunc(ctx, f.halt)
	slots := job.Concurrency
	if f.ordered {
		slots = 1
	}
	for range slots {
		f.slots.Go(func() { f.deliver(ctx) })
	}
	return f
}

// halt tells the slots and whoever waits for the flight to stop.
func (f *flight) halt() {
	f.mu.Lock()
	f.stopped = true
	f.work.Broadcast()
	f.progress.Broadcast()
	f.mu.Unlock()
}

// stop stops the slots and waits for their attempts in flight to end. It
// may be called more than once.
func (f *flight) stop() {
	f.unwatch()
	f.halt()
	f.slots.Wait()
}

// await waits until the flight has room for another page (all: until every
// page handed in is done), or a page has settled or a page's worth of
// attempts waits to be collected. It returns whether it has room (all: is
// done), or an error once the flight stopped: ctx's, if it ended.
func (f *flight) await(ctx context.Context, all bool) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for !f.stopped {
		ready := len(f.fresh) == 0 && len(f.pages) < f.maxPages() && f.queued < f.w.cfg.PageBytes
		if all {
			ready = len(f.pages) == 0
		}
		settled := len(f.pages) > 0 && f.pages[0].left == 0
		if ready || settled || len(f.attempts) >= f.w.cfg.PageSize {
			return ready, nil
		}
		f.progress.Wait()
	}
	return false, cmp.Or(ctx.Err(), errors.New("replay flight stopped"))
}

func (f *flight) maxPages() int {
	if f.ordered {
		return 1
	}
	return maxPagesInFlight
}

// add hands a page in, its events to go to ep; advance moves the job's
// place past it once it settles. Call it when await says there is room.
func (f *flight) add(ep Endpoint, page []event, advance func(*Job)) {
	f.ep.Store(&ep)
	limit := rate.Inf
	if l := rateLimit(f.job, ep); l > 0 {
		limit = rate.Limit(l)
	}
	f.limiter.SetLimit(limit)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pages = append(f.pages, &flightPage{left: len(page), advance: advance})
	f.fresh = page
	f.work.Broadcast()
}

// rateLimit is the deliveries per second job may make to ep: the lower of
// the job's and the endpoint's limits; 0 without either.
func rateLimit(job Job, ep Endpoint) float64 {
	if l := job.RateLimit; ep.RateLimit > 0 && (l == 0 || ep.RateLimit < l) {
		return ep.RateLimit
	}
	return job.RateLimit
}

// inFlight says whether pages were handed in and not yet collected.
func (f *flight) inFlight() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pages) > 0
}

// collect takes the pages settled and, if there are any or a page's worth
// of them waits, the attempts not yet logged; all: every page, settled or
// not, and every attempt.
func (f *flight) collect(all bool) ([]*flightPage, []Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.pages)
	if !all {
		n = 0
		for n < len(f.pages) && f.pages[n].left == 0 {
			n++
		}
		if n == 0 && len(f.attempts) < f.w.cfg.PageSize {
			// The attempts wait for a page to settle: about one insert into
			// the log per page, not one each time the job looks, and no
			// more than a page's worth held while retries wait.
			return nil, nil
		}
	}
	pages, recs := f.pages[:n:n], f.attempts
	f.pages, f.attempts = f.pages[n:], nil
	return pages, recs
}

// deliver is a slot: it sends the events it takes until the flight stops.
func (f *flight) deliver(ctx context.Context) {
	l := f.w.sender.NewLine(ctx)
	defer l.Close()
	for {
		r, ok := f.take()
		if !ok {
			return
		}
		rec, sent := f.attempt(ctx, l, r.ev, r.n)
		f.mu.Lock()
		if sent {
			f.settle(ctx, rec, r)
		}
		f.mu.Unlock()
	}
}

// take returns the next event to attempt: a retry whose backoff is over
// first, else the next new event in page order (in an ordered job, only
// once no retry waits). With neither, it waits for the earliest retry to
// fall due or for more to take; false once the flight stops.
func (f *flight) take() (retry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for !f.stopped {
		now := time.Now()
		switch {
		case len(f.waiting) > 0 && !f.waiting[0].due.After(now):
			r := f.waiting[0]
			f.waiting = f.waiting[1:]
			if f.queued >= f.w.cfg.PageBytes {
				f.progress.Broadcast() // await may have room again
			}
			f.queued -= len(r.ev.raw)
			return r, true
		case len(f.fresh) > 0 && (!f.ordered || len(f.waiting) == 0):
			ev := f.fresh[0]
			f.fresh = f.fresh[1:]
			if len(f.fresh) == 0 {
				f.fresh = nil // the page's events now live only in their attempts and retries
				f.progress.Broadcast()
			}
			return retry{ev: ev, pg: f.pages[len(f.pages)-1]}, true
		}
		var t *time.Timer
		if len(f.waiting) > 0 {
			t = time.AfterFunc(f.waiting[0].due.Sub(now), func() {
				f.mu.Lock()
				f.work.Broadcast()
				f.mu.Unlock()
			})
		}
		f.work.Wait()
		if t != nil {
			t.Stop()
		}
	}
	return retry{}, false
}

// attempt sends ev once on l, its (n+1)th attempt, after the rate limiter.
// It returns false when ctx ended first: the attempt does not count.
func (f *flight) attempt(ctx context.Context, l *webhook.Line, ev event, n int) (Record, bool) {
	if f.limiter.Wait(ctx) != nil {
		return Record{}, false
	}
	ep := f.ep.Load()
	now := time.Now()
	a := l.Send(ep.URL, webhook.Message{ID: ev.id, Body: ev.raw, ReplayID: f.job.ID, Secrets: ep.Secrets(now), Headers: ep.Headers})
	if ctx.Err() != nil {
		return Record{}, false
	}
	return Record{EndpointID: ep.ID, ReplayID: f.job.ID, EventID: ev.id, EventType: ev.typ, Attempt: n + 1, Result: a, At: now}, true
}

// settle counts an attempt of r in its page and queues r's retry if one
// follows. Call it with mu held.
func (f *flight) settle(ctx context.Context, rec Record, r retry) {
	a, ep, m := &rec.Result, f.ep.Load(), f.w.metrics
	m.attemptSeconds.Observe(a.Latency.Seconds())
	var wait time.Duration
	again, lastErr := false, a.Err
	if a.Outcome == webhook.Retry {
		if wait, again = webhook.RetryDelay(ep.RetrySchedule, r.n, a.RetryAfter); !again {
			// No retry follows: the attempt log says failed, not retry.
			a.Outcome = webhook.Failed
			lastErr = fmt.Sprintf("gave up after %d attempts: %s", r.n+1, a.Err)
		}
	}
	if f.attempts = append(f.attempts, rec); len(f.attempts) == f.w.cfg.PageSize {
		f.progress.Broadcast() // for the job to log them
	}
	r.pg.attempts++
	if a.Outcome == webhook.Delivered {
		f.run.lastOK = rec.At
	} else if ep.DisableAfter > 0 && time.Since(f.run.checked) >= healthEvery {
		f.checkHealth(ctx, ep, a.Err)
	}
	switch {
	case again:
		m.attempts.WithLabelValues("retrying").Inc()
		f.push(retry{r.ev, r.pg, r.n + 1, time.Now().Add(wait)})
		return
	case a.Outcome == webhook.Delivered:
		r.pg.delivered++
		m.attempts.WithLabelValues("delivered").Inc()
	default:
		r.pg.failed++
		r.pg.lastErr = lastErr
		m.attempts.WithLabelValues("failed").Inc()
	}
	if r.pg.left--; r.pg.left == 0 {
		f.progress.Broadcast()
	}
}

// push queues a retry by its due time. Call it with mu held.
func (f *flight) push(r retry) {
	i, _ := slices.BinarySearchFunc(f.waiting, r, func(a, b retry) int { return a.due.Compare(b.due) })
	f.waiting = slices.Insert(f.waiting, i, r)
	f.queued += len(r.ev.raw)
	f.work.Broadcast()
}

// checkHealth logs the attempts made so far, so the log holds the
// endpoint's run of failures whole, and disables the endpoint and pauses
// the job if that run is DisableAfter long. The run starts after the job's
// last delivered attempt and after the endpoint's last re-enabling: failures
// before either do not count. lastErr is the latest failure's. Call it with
// mu held.
func (f *flight) checkHealth(ctx context.Context, ep *Endpoint, lastErr string) {
	w := f.w
	f.run.checked = time.Now()
	if err := w.store.RecordAttempts(ctx, f.attempts); err != nil {
		w.log.Warn("record attempts", "replay", f.job.ID, "err", err)
		return
	}
	f.attempts = nil
	after := f.run.lastOK
	if ep.EnabledAt.After(after) {
		after = ep.EnabledAt
	}
	since, err := w.store.failingSince(ctx, ep.ID, after)
	if err != nil {
		w.log.Warn("read endpoint failures", "endpoint", ep.ID, "err", err)
		return
	}
	if since.IsZero() || time.Since(since) < ep.DisableAfter {
		return
	}
	if err := w.disable(ctx, *ep, since, lastErr); err != nil {
		w.log.Warn("disable endpoint", "endpoint", ep.ID, "err", err)
		return
	}
	f.pause(errPaused)
}
