package ingest

import "github.com/cespare/xxhash/v2"

// recentIDs remembers the last n eventIds seen, by 64-bit hash, oldest
// forgotten first. A hash rather than the string keeps two million ids in
// about 50 MB; two different ids collide with odds of about n/2^64 per event
// (1e-13 at the default), which the duplicates counter would show.
type recentIDs struct {
	set  map[uint64]struct{}
	ring []uint64
	next int
	full bool
}

func newRecentIDs(n int) *recentIDs {
	return &recentIDs{set: make(map[uint64]struct{}, n), ring: make([]uint64, n)}
}

// add remembers id and reports whether it was new.
func (r *recentIDs) add(id string) bool {
	h := xxhash.Sum64String(id)
	if _, ok := r.set[h]; ok {
		return false
	}
	if r.full {
		delete(r.set, r.ring[r.next])
	}
	r.ring[r.next] = h
	r.set[h] = struct{}{}
	r.next++
	if r.next == len(r.ring) {
		r.next, r.full = 0, true
	}
	return true
}

func (r *recentIDs) len() int { return len(r.set) }
