package replay

import (
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/time/rate"
)

// pageDelivery is what came of delivering a page: every attempt made, how
// many events were delivered and how many failed for good, and the error of
// the last that failed.
type pageDelivery struct {
	attempts          []Record
	delivered, failed uint64
	lastErr           string
}

// deliverPage sends a page: in order with one delivery in flight, or with
// job.Concurrency in flight. An event waiting out a retry's backoff holds no
// delivery slot in an unordered replay; in an ordered one, the events after
// it wait with it, as their order demands.
func (w *Worker) deliverPage(ctx context.Context, job Job, ep Endpoint, page []event) pageDelivery {
	limit := job.RateLimit
	if ep.RateLimit > 0 && (limit == 0 || ep.RateLimit < limit) {
		limit = ep.RateLimit
	}
	var limiter *rate.Limiter
	if limit > 0 {
		limiter = rate.NewLimiter(rate.Limit(limit), 1)
	}
	d := deliverer{w: w, job: job, ep: ep, limiter: limiter}
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
}

// attempt sends ev once, its (n+1)th attempt, after the rate limiter. It
// returns false when ctx ended first: the attempt does not count.
func (d *deliverer) attempt(ctx context.Context, ev event, n int) (Record, bool) {
	if d.limiter != nil && d.limiter.Wait(ctx) != nil {
		return Record{}, false
	}
	now := time.Now()
	a := d.w.sender.Send(ctx, d.ep.URL, Message{ID: ev.id, Body: ev.raw, ReplayID: d.job.ID, Secrets: d.ep.Secrets(now)})
	if ctx.Err() != nil {
		return Record{}, false
	}
	return Record{EndpointID: d.ep.ID, ReplayID: d.job.ID, EventID: ev.id, Attempt: n + 1, Result: a, At: now}, true
}

// settle counts an attempt and says when to try again: ok false means the
// event is done, delivered or failed for good.
func (d *deliverer) settle(rec Record, n int) (wait time.Duration, again bool) {
	d.res.attempts = append(d.res.attempts, rec)
	a := rec.Result
	switch a.Outcome {
	case Delivered:
		d.res.delivered++
		return 0, false
	case Failed:
		d.res.failed++
		d.res.lastErr = a.Err
		return 0, false
	}
	wait, again = RetryDelay(n, a.RetryAfter)
	if !again {
		d.res.failed++
		d.res.lastErr = fmt.Sprintf("gave up after %d attempts: %s", n+1, a.Err)
	}
	return wait, again
}

// inOrder sends the page one event at a time, each until it is done.
func (d *deliverer) inOrder(ctx context.Context, page []event) pageDelivery {
	for _, ev := range page {
		for n := 0; ; n++ {
			rec, ok := d.attempt(ctx, ev, n)
			if !ok {
				return d.res
			}
			wait, again := d.settle(rec, n)
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

// unordered keeps up to slots attempts in flight. First attempts go in
// page order; an event to retry waits in a queue by due time, holding no
// slot, and goes before new events once due.
func (d *deliverer) unordered(ctx context.Context, page []event, slots int) pageDelivery {
	type done struct {
		ev  event
		n   int
		rec Record
		ok  bool
	}
	results := make(chan done, slots)
	var waiting []retry // by due time
	next, inflight := 0, 0
	for {
		stopping := ctx.Err() != nil
		for !stopping && inflight < slots {
			var ev event
			var n int
			switch {
			case len(waiting) > 0 && !waiting[0].due.After(time.Now()):
				ev, n, waiting = waiting[0].ev, waiting[0].n, waiting[1:]
			case next < len(page):
				ev, next = page[next], next+1
			default:
				n = -1
			}
			if n < 0 {
				break
			}
			inflight++
			go func() {
				rec, ok := d.attempt(ctx, ev, n)
				results <- done{ev, n, rec, ok}
			}()
		}
		if inflight == 0 && (stopping || (next == len(page) && len(waiting) == 0)) {
			return d.res
		}
		var due <-chan time.Time
		var timer *time.Timer
		if !stopping && len(waiting) > 0 && inflight < slots {
			timer = time.NewTimer(time.Until(waiting[0].due))
			due = timer.C
		}
		var stop <-chan struct{}
		if !stopping {
			stop = ctx.Done()
		}
		select {
		case r := <-results:
			inflight--
			if !r.ok {
				continue
			}
			if wait, again := d.settle(r.rec, r.n); again {
				rt := retry{r.ev, r.n + 1, time.Now().Add(wait)}
				i, _ := slices.BinarySearchFunc(waiting, rt, func(a, b retry) int { return a.due.Compare(b.due) })
				waiting = slices.Insert(waiting, i, rt)
			}
		case <-due:
		case <-stop:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}
