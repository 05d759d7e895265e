package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/dodev/hindsight/replay/webhook"
	"github.com/dodev/hindsight/schema"
)

// Job statuses.
const (
	StatusPending   = "pending"
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
	// StatusPaused is a job whose endpoint is disabled: it keeps its
	// cursor and goes on when the endpoint is enabled again.
	StatusPaused = "paused"
	// StatusFollowing is a follow that delivered its range and now delivers
	// each matching event as ingest reads it, until cancelled.
	StatusFollowing = "following"
)

// Job is a replay: a range of events to deliver to one endpoint, and how far
// it has come.
type Job struct {
	ID            string
	EndpointID    string
	Since, Until  time.Time
	EnabledEvents []string
	Livemode      schema.Livemode
	Ordered       bool
	Concurrency   int
	RateLimit     float64 // deliveries per second; 0 is no limit
	// OnlyFailed keeps only the events whose latest attempt to the
	// endpoint, in the deliveries log, was not delivered.
	OnlyFailed bool
	// Filters keep the events whose dimensions hold one of the values
	// (schema.Dimensions), dimension → values.
	Filters map[string][]string
	// Follow keeps the job going after its range: every matching event
	// read from Kafka from FollowOffsets (partition → next offset, set
	// from ingest's committed offsets when the job starts) is delivered.
	Follow        bool
	FollowOffsets map[int32]int64
	// Lag is, while events wait in Kafka after the last one delivered, how
	// long ago that one was produced; 0 when the follow has caught up.
	Lag       time.Duration
	Status    string
	Matched   uint64
	Delivered uint64
	Failed    uint64
	Attempts  uint64
	// The cursor: every event up to (CursorAt, CursorID) in (createdAt,
	// eventId) order is done.
	CursorAt   int64
	CursorID   string
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	LastError  string
}

// Done reports whether the job has ended.
func (j Job) Done() bool {
	return j.Status == StatusCompleted || j.Status == StatusFailed || j.Status == StatusCancelled
}

var jobCols = []string{"id", "endpoint_id", "since", "until", "enabled_events", "livemode", "ordered", "concurrency",
	"rate_limit", "status", "matched", "delivered", "failed", "attempts", "cursor_created_at", "cursor_event_id",
	"created_at", "started_at", "finished_at", "last_error", "version", "only_failed", "filters", "follow", "follow_offsets", "lag_ms"}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// SaveJob writes the job's current state.
func (s *Store) SaveJob(ctx context.Context, j Job) error {
	return s.insert(ctx, "replays", jobCols, []any{j.ID, j.EndpointID, ms(j.Since), ms(j.Until), j.EnabledEvents, string(j.Livemode),
		asUInt8(j.Ordered), uint16(j.Concurrency), j.RateLimit, j.Status, j.Matched, j.Delivered, j.Failed, j.Attempts,
		j.CursorAt, j.CursorID, ms(j.CreatedAt), ms(j.StartedAt), ms(j.FinishedAt), j.LastError, s.version(), asUInt8(j.OnlyFailed),
		filtersJSON(j.Filters), asUInt8(j.Follow), offsetsJSON(j.FollowOffsets), j.Lag.Milliseconds()})
}

func offsetsJSON(m map[int32]int64) string {
	if m == nil {
		return ""
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func filtersJSON(m map[string][]string) string {
	if len(m) == 0 {
		return ""
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func asUInt8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// JobKey is a replay's place in the list, newest first: (CreatedAt, ID)
// descending.
type JobKey struct {
	CreatedAt int64  `json:"c"`
	ID        string `json:"i"`
}

// Jobs returns replays, newest first (by created_at, then id, both
// descending), or the one with id; after a key, only those after it. A
// pending or running job whose cancellation was asked is reported
// cancelled even before a worker has seen it.
func (s *Store) Jobs(ctx context.Context, id string, limit int, after ...JobKey) ([]Job, error) {
	where, args := "", []any{}
	switch {
	case id != "":
		where, args = " WHERE id = ?", append(args, id)
	case len(after) > 0:
		where = " WHERE created_at < ? OR (created_at = ? AND id < ?)"
		args = append(args, after[0].CreatedAt, after[0].CreatedAt, after[0].ID)
	}
	args = append(args, limit)
	rows, err := s.conn.Query(ctx, "SELECT id, endpoint_id, since, until, enabled_events, CAST(livemode AS String), ordered, "+
		"concurrency, rate_limit, CAST(status AS String), matched, delivered, failed, attempts, cursor_created_at, cursor_event_id, "+
		"created_at, started_at, finished_at, last_error, only_failed, filters, follow, follow_offsets, lag_ms FROM "+s.table("replays")+" FINAL"+where+
		" ORDER BY created_at DESC, id DESC LIMIT ?", args...)
	if err != nil {
		return nil, fmt.Errorf("read replays: %w", err)
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		var j Job
		var since, until, created, started, finished int64
		var ordered, onlyFailed, follow uint8
		var filters, livemode, offsets string
		var lag int64
		var conc uint16
		if err := rows.Scan(&j.ID, &j.EndpointID, &since, &until, &j.EnabledEvents, &livemode, &ordered, &conc,
			&j.RateLimit, &j.Status, &j.Matched, &j.Delivered, &j.Failed, &j.Attempts, &j.CursorAt, &j.CursorID,
			&created, &started, &finished, &j.LastError, &onlyFailed, &filters, &follow, &offsets, &lag); err != nil {
			return nil, fmt.Errorf("read replays: %w", err)
		}
		j.Livemode = schema.Livemode(livemode)
		if filters != "" {
			if err := json.Unmarshal([]byte(filters), &j.Filters); err != nil {
				return nil, fmt.Errorf("read replays: the filters of %s: %w", j.ID, err)
			}
		}
		j.Since, j.Until, j.CreatedAt, j.StartedAt, j.FinishedAt = fromMS(since), fromMS(until), fromMS(created), fromMS(started), fromMS(finished)
		j.Ordered, j.Concurrency, j.OnlyFailed, j.Follow, j.Lag = ordered == 1, int(conc), onlyFailed == 1, follow == 1, time.Duration(lag)*time.Millisecond
		if offsets != "" {
			if err := json.Unmarshal([]byte(offsets), &j.FollowOffsets); err != nil {
				return nil, fmt.Errorf("read replays: the follow offsets of %s: %w", j.ID, err)
			}
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read replays: %w", err)
	}
	cancelled, err := s.cancelled(ctx, id)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if !out[i].Done() && cancelled[out[i].ID] {
			out[i].Status = StatusCancelled
		}
	}
	return out, nil
}

// Unfinished lists the ids of replays whose stored status is pending or
// running, and of paused ones whose endpoint is enabled again or whose
// cancellation was asked: the work for workers. A job cancelled before it
// started is among them, so a worker records its end.
func (s *Store) Unfinished(ctx context.Context) ([]string, error) {
	rows, err := s.conn.Query(ctx, "SELECT id FROM (SELECT id, endpoint_id, CAST(status AS String) AS st FROM "+s.table("replays")+
		" FINAL) WHERE st IN ('pending', 'running', 'following') OR (st = 'paused' AND (endpoint_id NOT IN (SELECT endpoint_id FROM "+
		s.table("endpoint_changes")+" GROUP BY endpoint_id HAVING argMax(change, at) = 'disabled') OR id IN (SELECT replay_id FROM "+
		s.table("replay_cancels")+"))) ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("read unfinished replays: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read unfinished replays: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// HeldElsewhere reports which of ids another worker than owner holds a live
// lease on: a worker tries only the others, so held jobs cannot fill its
// slots with lease attempts that must fail.
func (s *Store) HeldElsewhere(ctx context.Context, ids []string, owner string) (map[string]bool, error) {
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT replay_id FROM "+s.table("replay_leases")+
		" WHERE has(?, replay_id) AND owner != ? GROUP BY replay_id, owner, claimed_at HAVING "+liveClaim,
		ids, owner, time.Now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	defer rows.Close()
	held := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read leases: %w", err)
		}
		held[id] = true
	}
	return held, rows.Err()
}

// Job returns one replay.
func (s *Store) Job(ctx context.Context, id string) (Job, error) {
	js, err := s.Jobs(ctx, id, 1)
	if err != nil {
		return Job{}, err
	}
	if len(js) == 0 {
		return Job{}, fmt.Errorf("replay %s: %w", id, ErrNotFound)
	}
	return js[0], nil
}

// Cancel asks for a replay to stop. It is its own table, so the worker's
// progress writes cannot overwrite it.
func (s *Store) Cancel(ctx context.Context, id string) error {
	return s.insert(ctx, "replay_cancels", []string{"replay_id", "at"}, []any{id, time.Now().UnixMilli()})
}

func (s *Store) cancelled(ctx context.Context, id string) (map[string]bool, error) {
	where, args := "", []any{}
	if id != "" {
		where, args = " WHERE replay_id = ?", append(args, id)
	}
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT replay_id FROM "+s.table("replay_cancels")+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read cancellations: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var rid string
		if err := rows.Scan(&rid); err != nil {
			return nil, fmt.Errorf("read cancellations: %w", err)
		}
		out[rid] = true
	}
	return out, rows.Err()
}

// IsCancelled reports whether cancelling replay id was asked.
func (s *Store) IsCancelled(ctx context.Context, id string) (bool, error) {
	c, err := s.cancelled(ctx, id)
	return c[id], err
}

// Leases. Claims on a job are appended to replay_leases, never replaced. A
// claim starts as a trial; its worker then reads the claims live beside it
// and confirms it if there are none, else releases it and tries again a
// little later. A renewal repeats its claim's claimed_at with a later until,
// and a release writes until = -1. Of the confirmed claims still live (until
// in the future, not released), the one claimed first holds the job.
//
// Two trials cannot both be confirmed: the one that became visible second
// was written after the first was visible, so its worker's read sees the
// first. That needs every worker to read the server it writes, as on one
// server, where an insert is visible to every read once it returns; on a
// cluster a worker fails over to a replica that may lag, and LeaseSettle
// waits out that lag between a trial and its read. A holder checks every
// second that it still holds (Worker.watch), which bounds any overlap from
// clock skew between hosts or a worker that stalls between its trial and
// its confirmation for longer than the lease's TTL.

// liveClaim holds for a claim, its rows grouped by (owner, claimed_at),
// that is still live at the bound time: not expired, not released.
const liveClaim = "max(until) > ? AND min(until) >= 0"

// claim is one live claim on a job.
type claim struct {
	owner     string
	claimedAt int64
	confirmed bool
}

// Workers that find a job free at the same moment see each other's trials
// and all step back: each tries again after a random wait, up to
// claimTries times, the waits growing from claimBackoff, and the first to
// try alone takes the job.
const (
	claimTries   = 6
	claimBackoff = 20 * time.Millisecond
)

// TryLease takes or renews the lease on a replay for ttl. It reports false
// when another worker holds it, or when other workers kept claiming it at
// the same time.
func (s *Store) TryLease(ctx context.Context, id, owner string, ttl time.Duration) (bool, error) {
	rival := func(c claim) bool { return c.owner != owner } // one worker claims a job once at a time
	for try := range claimTries {
		if try > 0 {
			if err := sleep(ctx, rand.N(claimBackoff<<(try-1))); err != nil {
				return false, err
			}
		}
		claims, err := s.liveClaims(ctx, id)
		if err != nil {
			return false, err
		}
		switch h := holder(claims); {
		case h.owner == owner:
			// A renewal: the claim keeps its place.
			return true, s.writeLease(ctx, id, owner, h.claimedAt, time.Now().Add(ttl).UnixMilli(), true)
		case h.owner != "":
			return false, nil
		case slices.ContainsFunc(claims, rival):
			continue
		}
		claimedAt := time.Now().UnixNano()
		if err := s.writeLease(ctx, id, owner, claimedAt, time.Now().Add(ttl).UnixMilli(), false); err != nil {
			return false, err
		}
		if err := sleep(ctx, s.leaseSettle); err != nil {
			return false, err
		}
		if claims, err = s.liveClaims(ctx, id); err != nil {
			return false, err
		}
		if !slices.ContainsFunc(claims, rival) {
			return true, s.writeLease(ctx, id, owner, claimedAt, time.Now().Add(ttl).UnixMilli(), true)
		}
		if err := s.writeLease(ctx, id, owner, claimedAt, -1, false); err != nil {
			return false, err
		}
	}
	return false, nil
}

// ReleaseLease ends this owner's claims early, so another worker can go on
// at once.
func (s *Store) ReleaseLease(ctx context.Context, id, owner string) error {
	claims, err := s.liveClaims(ctx, id)
	h := holder(claims)
	if err != nil || h.owner != owner {
		return err
	}
	return s.writeLease(ctx, id, owner, h.claimedAt, -1, false)
}

func (s *Store) writeLease(ctx context.Context, id, owner string, claimedAt, until int64, confirmed bool) error {
	var c uint8
	if confirmed {
		c = 1
	}
	return s.insert(ctx, "replay_leases", []string{"replay_id", "owner", "claimed_at", "until", "confirmed"},
		[]any{id, owner, claimedAt, until, c})
}

// PruneLeases deletes the renewal rows of claims that expired before
// cutoff. Every renewal appends a row (a running job adds one every third of
// its TTL), and 18.16 has no TTL to age them out. Release rows (until -1)
// stay, one per claim: deleting one while the claim's last renewal is still
// in the future would make the claim live again. A live claim keeps its
// newest renewal, so who holds what does not change. ClickHouse applies the
// delete in the background (a mutation).
func (s *Store) PruneLeases(ctx context.Context, cutoff time.Time) error {
	if err := s.conn.Exec(ctx, "ALTER TABLE "+s.table("replay_leases")+" DELETE WHERE until >= 0 AND until < ?", cutoff.UnixMilli()); err != nil {
		return fmt.Errorf("prune leases: %w", err)
	}
	return nil
}

// LeaseHolder returns who holds a replay now, or "" when nobody does.
func (s *Store) LeaseHolder(ctx context.Context, id string) (string, error) {
	claims, err := s.liveClaims(ctx, id)
	return holder(claims).owner, err
}

// liveClaims returns the claims on a replay that are live now, confirmed
// or not, the earliest claimed first.
func (s *Store) liveClaims(ctx context.Context, id string) ([]claim, error) {
	rows, err := s.conn.Query(ctx, "SELECT owner, claimed_at, max(confirmed) FROM "+s.table("replay_leases")+" WHERE replay_id = ?"+
		" GROUP BY owner, claimed_at HAVING "+liveClaim+" ORDER BY claimed_at, owner",
		id, time.Now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read lease of %s: %w", id, err)
	}
	defer rows.Close()
	var claims []claim
	for rows.Next() {
		var c claim
		var confirmed uint8
		if err := rows.Scan(&c.owner, &c.claimedAt, &confirmed); err != nil {
			return nil, fmt.Errorf("read lease of %s: %w", id, err)
		}
		c.confirmed = confirmed == 1
		claims = append(claims, c)
	}
	return claims, rows.Err()
}

// holder is the earliest confirmed of claims, in claimed order: the one
// holding the job; the zero claim when none is confirmed.
func holder(claims []claim) claim {
	for _, c := range claims {
		if c.confirmed {
			return c
		}
	}
	return claim{}
}

// Record is one delivery attempt.
type Record struct {
	EndpointID, ReplayID, EventID, EventType string
	Attempt                                  int
	Result                                   webhook.Attempt
	At                                       time.Time
}

// RecordAttempts appends attempts to the deliveries table.
func (s *Store) RecordAttempts(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	rows := make([][]any, len(recs))
	for i, r := range recs {
		rows[i] = []any{r.EndpointID, r.ReplayID, r.EventID, uint8(min(r.Attempt, math.MaxUint8)), uint16(r.Result.Status),
			r.Result.Outcome.String(), float64(r.Result.Latency.Microseconds()) / 1000, r.Result.Err, r.At.UnixMilli(),
			r.EventType, r.Result.Response}
	}
	return s.insert(ctx, "deliveries", []string{"endpoint_id", "replay_id", "event_id", "attempt", "status", "outcome",
		"latency_ms", "error", "at", "event_type", "response"}, rows...)
}
