//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/proctest"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/schema"
)

// BenchmarkCluster drains one backlog with `hindsight ingest` processes into
// the single server, into the cluster with one process and with two, and
// then times GET /v1/stats/send (a day series in a zone) on the single
// server's data and the cluster's, in turns. Every figure is from the same
// run on this machine, where the four servers, ZooKeeper, the broker and
// the processes share two cores: it shows the cluster's cost, not its gain.
// Run it with `make bench-cluster`.
func BenchmarkCluster(b *testing.B) {
	const backlog = 500_000
	opts := sample.TestdataOptions(21)
	opts.Duplicates, opts.Unknown = 0, 0
	values := sample.Generate(backlog, opts)
	for b.Loop() {
		w := newWorld(b)
		require.NoError(b, proctest.Produce(w.broker.ListenAddrs(), "events", values, 10_000, 0))
		type run struct {
			name    string
			cluster bool
			procs   [][]string // each process' --clickhouse servers
		}
		runs := []run{
			{"single server, 1 process", false, [][]string{{single.Addr}}},
			{"cluster, 1 process", true, [][]string{{replica(0, 0).Addr}}},
			{"cluster, 2 processes", true, [][]string{{replica(0, 0).Addr}, {replica(1, 1).Addr}}},
		}
		var apis [2]string // single, cluster
		for i, r := range runs {
			w.db = fmt.Sprintf("bench_%d", i)
			seed := open(b, r.procs[0][0])
			drop, cluster := "DROP DATABASE IF EXISTS "+w.db, ""
			if r.cluster {
				drop, cluster = drop+" ON CLUSTER "+clusterName, clusterName
			}
			require.NoError(b, seed.Exec(context.Background(), drop), "an earlier run's database")
			_, err := schema.MigrateCluster(context.Background(), seed, w.db, cluster)
			require.NoError(b, err)
			start, first := time.Now(), len(w.procs)
			for _, servers := range r.procs {
				w.start("ingest", r.cluster, servers, "--group", w.db)
			}
			var firstRow time.Duration
			for {
				n := count(b, seed, "SELECT count() FROM "+w.db+".events")
				if n > 0 && firstRow == 0 {
					firstRow = time.Since(start)
				}
				if n >= backlog {
					break
				}
				require.Less(b, time.Since(start), 10*time.Minute, "%s: %d of %d stored", r.name, n, backlog)
				time.Sleep(50 * time.Millisecond)
			}
			took := time.Since(start)
			rate := float64(backlog) / (took - firstRow).Seconds()
			b.Logf("%-26s %8.0f events/s (%d events from the first stored row to the last, %.1f s; %.1f s from start)",
				r.name, rate, backlog, (took - firstRow).Seconds(), took.Seconds())
			b.ReportMetric(rate, fmt.Sprintf("events/s-%d", i))
			w.stop(first)
			// An API on the first two runs' databases (HINDSIGHT_DATABASE is
			// w.db when a process starts).
			if i < len(apis) {
				apis[i] = w.api(r.cluster, r.procs[0][0])
			}
		}

		path := "/v1/stats/send?from=" + from + "&to=" + to + "&granularity=day&tz=America/New_York&livemode=all"
		var took [2][]time.Duration
		for range 15 {
			for i, base := range apis {
				start := time.Now()
				var body any
				require.Equal(b, http.StatusOK, get(b, base+path, &body))
				took[i] = append(took[i], time.Since(start))
			}
		}
		p50 := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
		b.Logf("GET /v1/stats/send, %d events, day series: p50 %v single server, %v cluster (15 rounds each, in turns)",
			backlog, p50(took[0]).Round(time.Millisecond), p50(took[1]).Round(time.Millisecond))
		b.ReportMetric(float64(p50(took[0]).Milliseconds()), "stats-p50-ms-single")
		b.ReportMetric(float64(p50(took[1]).Milliseconds()), "stats-p50-ms-cluster")
	}
}
