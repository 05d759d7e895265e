// Package recent remembers the last n eventIds seen, in fixed memory, so
// ingest and a follow each drop a producer's retry of an event they have
// just read.
package recent

import (
	"math/bits"

	"github.com/cespare/xxhash/v2"
)

// IDs remembers the last n eventIds seen, oldest forgotten first. It
// keeps 64-bit hashes, not strings, in an open-addressing table of at least
// 2n slots with linear probing, plus a ring that says which hash to forget
// next: two million ids take 48 MB, allocated once (a Go map of the same
// hashes took about 160 MB here). Two different ids collide with odds of
// about n/2^64 per event (1e-13 at the default); the duplicates counter would
// show it.
type IDs struct {
	slots []uint64 // 0 is an empty slot; a hash of 0 is stored as 1
	mask  uint64
	ring  []uint64
	next  int
	full  bool
	count int
	sink  uint64 // what Prefetch read, so that its loads are not left out
}

// New returns an empty IDs for n ids.
func New(n int) *IDs {
	size := uint64(1) << bits.Len64(uint64(2*n-1)) // the power of two >= 2n
	return &IDs{slots: make([]uint64, size), mask: size - 1, ring: make([]uint64, n)}
}

// Add remembers id and reports whether it was new.
func (r *IDs) Add(id string) bool { return r.AddHash(Hash(id)) }

// Hash is the hash of id that AddHash takes.
func Hash(id string) uint64 {
	h := xxhash.Sum64String(id)
	if h == 0 {
		h = 1
	}
	return h
}

// Prefetch reads the slots that adding hs, in this order, looks at first:
// each hash's own and those of the ids the adds will forget. Each is
// likely a cache miss of its own, and a look-up waits for it; read here
// together, the misses overlap, and the adds that follow find the slots
// in cache. It changes nothing: AddHash gives the same answers without it.
func (r *IDs) Prefetch(hs []uint64) {
	var sum uint64
	for _, h := range hs {
		sum += r.slots[h&r.mask]
	}
	if r.full {
		for k := range len(hs) {
			sum += r.slots[r.ring[(r.next+k)%len(r.ring)]&r.mask]
		}
	}
	r.sink += sum
}

// AddHash remembers the id of hash h (see Hash) and reports whether it
// was new.
func (r *IDs) AddHash(h uint64) bool {
	i := h & r.mask
	for r.slots[i] != 0 {
		if r.slots[i] == h {
			return false
		}
		i = (i + 1) & r.mask
	}
	if r.full {
		r.remove(r.ring[r.next])
		// The removal may have moved the slot we found; look again.
		for i = h & r.mask; r.slots[i] != 0; i = (i + 1) & r.mask {
		}
	}
	r.slots[i] = h
	r.count++
	r.ring[r.next] = h
	r.next++
	if r.next == len(r.ring) {
		r.next, r.full = 0, true
	}
	return true
}

// remove deletes h, shifting later entries of its probe run back so lookups
// never stop early at the hole (Knuth's algorithm R; no tombstones).
func (r *IDs) remove(h uint64) {
	i := h & r.mask
	for r.slots[i] != h {
		if r.slots[i] == 0 {
			return
		}
		i = (i + 1) & r.mask
	}
	r.count--
	j := i
	for {
		j = (j + 1) & r.mask
		if r.slots[j] == 0 {
			break
		}
		home := r.slots[j] & r.mask
		// Move slots[j] into the hole at i unless its home lies cyclically
		// in (i, j], where it is still reachable.
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			r.slots[i] = r.slots[j]
			i = j
		}
	}
	r.slots[i] = 0
}

// Len is how many ids are remembered.
func (r *IDs) Len() int { return r.count }
