package replay

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pageDelivery is what came of delivering a page: every attempt made (the
// first recorded of them already in the attempt log), how many events were
// delivered and how many failed for good, and the error of the last that
// failed.
type pageDelivery struct {
	attempts          []Record
	recorded          int
	delivered, failed uint64
	lastErr           string
}

// streak is what a job knows, across pages, of its endpoint's run of
// failed attempts beyond the attempt log.
type streak struct {
	lastOK  time.Time // the job's latest delivered attempt
	checked time.Time // when the log was last asked how long the run is
}

// healthEvery is how often a job whose endpoint is failing logs the attempts
// of its page so far and asks the log how long the endpoint has failed.
const healthEvery = 2 * time.Second

// deliverPage sends a page: in order with one delivery in flight, or with
// job.Concurrency in flight. An event waiting out a retry's backoff holds no
// delivery slot in an unordered replay; in an ordered one, the events after
// it wait with it, as their order demands.
func (w *Worker) deliverPage(ctx context.Context, job Job, ep Endpoint, page []event, run *streak, pause context.CancelCauseFunc) pageDelivery {
	limit := job.RateLimit
	if ep.RateLimit > 0 && (limit == 0 || ep.RateLimit < limit) {
		limit = ep.RateLimit
	}
	var limiter *rate.Limiter
	if limit > 0 {
		limiter = rate.NewLimiter(rate.Limit(limit), 1)
	}
	d := deliverer{w: w, job: job, ep: ep, limiter: limiter, run: run, pause: pause}
	if job.Ordered || job.Concurrency <= 1 {
		return d.inOrder(ctx, page)
	}
	return d.unordered(ctx, page, job.Concurrency)
}

// deliverer makes the attempts of one page.
type deliverer struct {
	w       *Worker
	job     Job
	ep      Endpoint
	limiter *rate.Limiter
	res     pageDelivery
	run     *streak
	pause   context.CancelCauseFunc // ends the page when the endpoint is disabled
}

// attempt sends ev once, its (n+1)th attempt, after the rate limiter. It
// returns false when ctx ended first: the attempt does not count.
func (d *deliverer) attempt(ctx context.Context, ev event, n int) (Record, bool) {
	if d.limiter != nil && d.limiter.Wait(ctx) != nil {
		return Record{}, false
	}
	now := time.Now()
	a := d.w.sender.Send(ctx, d.ep.URL, Message{ID: ev.id, Body: ev.raw, ReplayID: d.job.ID, Secrets: d.ep.Secrets(now), Headers: d.ep.Headers})
	if ctx.Err() != nil {
		return Record{}, false
	}
	return Record{EndpointID: d.ep.ID, ReplayID: d.job.ID, EventID: ev.id, EventType: ev.typ, Attempt: n + 1, Result: a, At: now}, true
}

// settle counts an attempt and says when to try again: again false means the
// event is done, delivered or failed for good.
func (d *deliverer) settle(ctx context.Context, rec Record, n int) (wait time.Duration, again bool) {
	d.res.attempts = append(d.res.attempts, rec)
	a := rec.Result
	d.w.metrics.attemptSeconds.Observe(a.Latency.Seconds())
	if a.Outcome == Delivered {
		d.run.lastOK = rec.At
	} else if d.ep.DisableAfter > 0 && time.Since(d.run.checked) >= healthEvery {
		d.checkHealth(ctx, a.Err)
	}
	switch a.Outcome {
	case Delivered:
		d.res.delivered++
		d.w.metrics.attempts.WithLabelValues("delivered").Inc()
		return 0, false
	case Failed:
		d.res.failed++
		d.res.lastErr = a.Err
		d.w.metrics.attempts.WithLabelValues("failed").Inc()
		return 0, false
	}
	wait, again = RetryDelay(d.ep.RetrySchedule, n, a.RetryAfter)
	if !again {
		// No retry follows: the attempt log says failed, not retry.
		d.res.attempts[len(d.res.attempts)-1].Result.Outcome = Failed
		d.res.failed++
		d.res.lastErr = fmt.Sprintf("gave up after %d attempts: %s", n+1, a.Err)
		d.w.metrics.attempts.WithLabelValues("failed").Inc()
		return wait, again
	}
	d.w.metrics.attempts.WithLabelValues("retrying").Inc()
	return wait, again
}

// checkHealth logs the page's attempts so far, so the log holds the
// endpoint's run of failures whole, and disables the endpoint and pauses
// the job if that run is DisableAfter long. The run starts after the job's
// last delivered attempt and after the endpoint's last re-enabling: failures
// before either do not count. lastErr is the latest failure's.
func (d *deliverer) checkHealth(ctx context.Context, lastErr string) {
	d.run.checked = time.Now()
	if err := d.w.store.RecordAttempts(ctx, d.res.attempts[d.res.recorded:]); err != nil {
		d.w.log.Warn("record attempts", "replay", d.job.ID, "err", err)
		return
	}
	d.res.recorded = len(d.res.attempts)
	after := d.run.lastOK
	if d.ep.EnabledAt.After(after) {
		after = d.ep.EnabledAt
	}
	since, err := d.w.store.failingSince(ctx, d.ep.ID, after)
	if err != nil {
		d.w.log.Warn("read endpoint failures", "endpoint", d.ep.ID, "err", err)
		return
	}
	if since.IsZero() || time.Since(since) < d.ep.DisableAfter {
		return
	}
	if err := d.w.disable(ctx, d.ep, since, lastErr); err != nil {
		d.w.log.Warn("disable endpoint", "endpoint", d.ep.ID, "err", err)
		return
	}
	d.pause(errPaused)
}

// inOrder sends the page one event at a time, each until it is done.
func (d *deliverer) inOrder(ctx context.Context, page []event) pageDelivery {
	for _, ev := range page {
		for n := 0; ; n++ {
			rec, ok := d.attempt(ctx, ev, n)
			if !ok {
				return d.res
			}
			wait, again := d.settle(ctx, rec, n)
			if !again {
				break
			}
			select {
			case <-ctx.Done():
				return d.res
			case <-time.After(wait):
			}
		}
	}
	return d.res
}

// retry is an event waiting out its backoff before attempt n.
type retry struct {
	ev  event
	n   int
	due time.Time
}

// unordered runs slots workers over the page. Each takes the next event
// due: a retry whose backoff is over first, else the next new event in page
// order. An event to retry waits in a queue by due time and holds no worker;
// a worker with nothing due waits for the earliest retry or for another
// worker to queue one.
func (d *deliverer) unordered(ctx context.Context, page []event, slots int) pageDelivery {
	q := retryQueue{page: page}
	q.cond = sync.NewCond(&q.mu)
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.stopped = true
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	var wg sync.WaitGroup
	for range min(slots, len(page)) {
		wg.Go(func() {
			for {
				ev, n, ok := q.take()
				if !ok {
					return
				}
				rec, sent := d.attempt(ctx, ev, n)
				q.mu.Lock()
				if sent {
					if wait, again := d.settle(ctx, rec, n); again {
						q.push(retry{ev, n + 1, time.Now().Add(wait)})
					}
				}
				q.busy--
				q.cond.Broadcast()
				q.mu.Unlock()
			}
		})
	}
	wg.Wait()
	return d.res
}

// retryQueue hands out a page's events and their retries. d.settle runs
// under its mutex too.
type retryQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	page    []event
	next    int
	waiting []retry // by due time
	busy    int     // attempts in flight
	stopped bool
}

// take returns the next event to attempt and its attempt number, waiting
// for a retry to fall due if need be; false when the page is done or the
// replay stops.
func (q *retryQueue) take() (event, int, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.stopped {
		now := time.Now()
		switch {
		case len(q.waiting) > 0 && !q.waiting[0].due.After(now):
			r := q.waiting[0]
			q.waiting = q.waiting[1:]
			q.busy++
			return r.ev, r.n, true
		case q.next < len(q.page):
			q.next++
			q.busy++
			return q.page[q.next-1], 0, true
		case len(q.waiting) == 0 && q.busy == 0:
			return event{}, 0, false
		}
		// Nothing due yet: wake at the earliest retry, or when a worker
		// queues one or finishes.
		var t *time.Timer
		if len(q.waiting) > 0 {
			t = time.AfterFunc(q.waiting[0].due.Sub(now), func() {
				q.mu.Lock()
				q.cond.Broadcast()
				q.mu.Unlock()
			})
		}
		q.cond.Wait()
		if t != nil {
			t.Stop()
		}
	}
	return event{}, 0, false
}

// push queues a retry by its due time. Call with mu held.
func (q *retryQueue) push(r retry) {
	i, _ := slices.BinarySearchFunc(q.waiting, r, func(a, b retry) int { return a.due.Compare(b.due) })
	q.waiting = slices.Insert(q.waiting, i, r)
}
