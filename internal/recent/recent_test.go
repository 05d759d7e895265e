package recent

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRecentIDsMatchesAMap checks the table against a plain map and a queue
// over a random mix of new and repeated ids, small sizes so probe runs wrap
// and collide often.
func TestRecentIDsMatchesAMap(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 64, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(n), 1))
			r := New(n)
			want := map[string]bool{}
			var queue []string
			for step := range 20_000 {
				id := fmt.Sprintf("evt_%d", rng.IntN(3*n+5))
				isNew := !want[id]
				require.Equal(t, isNew, r.Add(id), "step %d id %s", step, id)
				if isNew {
					want[id] = true
					queue = append(queue, id)
					if len(queue) > n {
						delete(want, queue[0])
						queue = queue[1:]
					}
				}
				require.Equal(t, len(want), r.Len())
			}
		})
	}
}

func TestRecentIDsForgetsOldest(t *testing.T) {
	r := New(3)
	for _, id := range []string{"a", "b", "c", "d"} {
		assert.True(t, r.Add(id))
	}
	assert.False(t, r.Add("d"))
	assert.False(t, r.Add("b"))
	assert.True(t, r.Add("a"), "a was the oldest and is forgotten")
}

// BenchmarkRecentIDsStream adds ids never seen before to a full table of
// ingest's default size, as ingest does with every new event: each Add
// looks up its own slot and forgets the oldest id, both far from cache.
// (BenchmarkRecentIDs cycles through ids it holds, all in cache.)
func BenchmarkRecentIDsStream(b *testing.B) {
	r, id := streamed()
	for i := 1 << 21; b.Loop(); i++ {
		r.Add(id(i))
	}
}

func BenchmarkRecentIDs(b *testing.B) {
	r := New(1 << 21) // ingest's default
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = fmt.Sprintf("evt_%016x", rand.Uint64())
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r.Add(ids[i&(len(ids)-1)])
	}
}

// streamed is a table of ingest's default size filled with ids 0 to 2^21-1
// of id, which names an id for each int.
func streamed() (r *IDs, id func(int) string) {
	r = New(1 << 21)
	buf := make([]byte, 0, 32)
	id = func(i int) string {
		buf = strconv.AppendUint(append(buf[:0], "evt_"...), uint64(i)*0x9e3779b97f4a7c15, 16)
		return string(buf)
	}
	for i := range 1 << 21 {
		r.Add(id(i))
	}
	return r, id
}

// BenchmarkRecentIDsStreamPrefetched is BenchmarkRecentIDsStream with the
// adds in groups of 32, each group's slots read first (Prefetch), as ingest
// adds a poll's records.
func BenchmarkRecentIDsStreamPrefetched(b *testing.B) {
	r, id := streamed()
	hs := make([]uint64, 32)
	i := 1 << 21
	for b.Loop() {
		for k := range hs {
			hs[k] = Hash(id(i + k))
		}
		i += len(hs)
		r.Prefetch(hs)
		for _, h := range hs {
			r.AddHash(h)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(hs)), "ns/add")
}

// TestPrefetchChangesNothing: adds in prefetched groups answer as one by
// one.
func TestPrefetchChangesNothing(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	one, grouped := New(100), New(100)
	for range 200 {
		var hs []uint64
		for range rng.IntN(40) {
			hs = append(hs, Hash(fmt.Sprintf("evt_%d", rng.IntN(300))))
		}
		grouped.Prefetch(hs)
		for _, h := range hs {
			require.Equal(t, one.AddHash(h), grouped.AddHash(h))
		}
	}
	require.Equal(t, one.Len(), grouped.Len())
}
