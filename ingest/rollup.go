package ingest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/dodev/hindsight/schema"
)

// Counts read the stats rollup only for quarter hours checked against the
// events (schema.CheckRollup), and distinct counts read links only where
// they were built from the engagements stored (schema.LinkEngagements).
// Ingest checks and links the quarter hours it stored into once they are
// over, every rollupCheckInterval, and every quarter hour not yet checked
// or linked, whoever stored into it, at start and every rollupSweepEvery:
// those it could not check (a stop, an outage), those a rebuild left while
// a replica was behind, and those whose check met an insert half done.
// Quarter hours holding copies fail every check, so a sweep reads them
// again; they are few.
const (
	rollupCheckInterval = 30 * time.Second
	rollupSweepEvery    = time.Hour
)

// touched is the quarter hours (their start, ms) this process stored
// events into since it last checked them.
type touched struct {
	mu    sync.Mutex
	steps map[int64]struct{}
}

// add records the quarter hours of createdAt (ms).
func (t *touched) add(createdAt []int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.steps == nil {
		t.steps = map[int64]struct{}{}
	}
	last := int64(-1)
	for _, at := range createdAt {
		if s := at - at%schema.RollupStep; s != last {
			t.steps[s], last = struct{}{}, s
		}
	}
}

// takeOver removes and returns, ascending, the quarter hours over by now
// (ms).
func (t *touched) takeOver(now int64) []int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int64
	for s := range t.steps {
		if s+schema.RollupStep <= now {
			out = append(out, s)
			delete(t.steps, s)
		}
	}
	slices.Sort(out)
	return out
}

// putBack returns steps a check could not cover.
func (t *touched) putBack(steps []int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range steps {
		t.steps[s] = struct{}{}
	}
}

// checkRollup checks the quarter hours this process stored into that are
// over, or with all, every quarter hour not checked, and links their
// engagements (schema.LinkEngagements). It returns how many quarter hours
// with rollup rows it left unchecked.
func (in *Ingester) checkRollup(ctx context.Context, all bool) (int, error) {
	now := time.Now().UnixMilli()
	if all {
		in.touched.takeOver(now) // the sweep covers them
		if _, err := schema.LinkEngagements(ctx, in.conn, in.cfg.Database, 0, now); err != nil {
			return 0, err
		}
		return schema.CheckRollup(ctx, in.conn, in.cfg.Database, 0, now)
	}
	steps := in.touched.takeOver(now)
	if len(steps) > 0 {
		// Links look back, never ahead: from the first quarter hour stored
		// into on, every one over may need them built again.
		if _, err := schema.LinkEngagements(ctx, in.conn, in.cfg.Database, steps[0], now); err != nil {
			in.touched.putBack(steps)
			return 0, err
		}
	}
	unchecked := 0
	for i := 0; i < len(steps); {
		// One call per run of consecutive quarter hours.
		j := i + 1
		for j < len(steps) && steps[j] == steps[j-1]+schema.RollupStep {
			j++
		}
		n, err := schema.CheckRollup(ctx, in.conn, in.cfg.Database, steps[i], steps[j-1]+schema.RollupStep)
		if err != nil {
			in.touched.putBack(steps[i:])
			return unchecked, err
		}
		unchecked += n
		i = j
	}
	return unchecked, nil
}
