package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// report is one run's figures.
type report struct {
	machine machine
	ingest  ingestResult
	stats   statsResult
	replay  replayResult
}

// machine describes where the run ran.
type machine struct {
	Date                     time.Time
	CPU                      string
	Cores                    int
	MemGiB                   float64
	OS, ClickHouse, Go, Kcat string
	Args                     string
	Commit                   string // git describe of the checkout, "" outside one
}

func (r *rig) machine(ctx context.Context) (machine, error) {
	m := machine{Date: time.Now().UTC(), Cores: runtime.NumCPU(), Go: runtime.Version(), Args: strings.Join(os.Args[1:], " ")}
	m.CPU = procField("/proc/cpuinfo", "model name", ":")
	if kb, err := strconv.ParseFloat(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal", ":"), " kB"), 64); err == nil {
		m.MemGiB = kb / (1 << 20)
	}
	m.OS = strings.Trim(procField("/etc/os-release", "PRETTY_NAME", "="), `"`)
	if err := r.conn.QueryRow(ctx, "SELECT version()").Scan(&m.ClickHouse); err != nil {
		return m, fmt.Errorf("clickhouse version: %w", err)
	}
	out, err := exec.CommandContext(ctx, "kcat", "-V").Output()
	if err != nil {
		return m, fmt.Errorf("kcat -V: %w (apt-get install kcat)", err)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Version "); ok {
			v, _, _ = strings.Cut(v, " (")
			m.Kcat = "kcat " + v
		}
	}
	if out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	return m, nil
}

// procField returns the value of the first line of file whose key is key,
// the two split by sep; "" when there is none.
func procField(file, key, sep string) string {
	raw, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, sep); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// write prints the tables.
func (rep report) write(w io.Writer) {
	in := rep.ingest
	rate := func(run ingestRun) float64 { return float64(in.Records) / run.Took.Seconds() }
	fmt.Fprintf(w, "## Ingest\n\n%d records of sample events (%d distinct eventIds; the rest sent twice) on 4 partitions of one embedded broker, "+
		"read from the start of the topic to the last row visible. Each path reads the same records in the same run; the ratio is Hindsight's events/s over the path's.\n\n",
		in.Records, in.Unique)
	fmt.Fprintln(w, "| path | events/s | time | Hindsight ÷ path | ClickHouse server's CPU per record | rows stored | distinct eventIds stored |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	if len(in.Runs) == 0 {
		return
	}
	perRecord := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(in.Records) }
	hs := in.Runs[0]
	for _, run := range in.Runs {
		fmt.Fprintf(w, "| %s | %.0f | %.2f s | %.2f× | %.2f µs | %d | %d |\n", strings.ReplaceAll(run.Path, "|", `\|`), rate(run), run.Took.Seconds(),
			rate(hs)/rate(run), perRecord(run.ServerCPU), run.Rows, run.Unique)
	}
	fmt.Fprintf(w, "\n`hindsight ingest` used %.2f µs of CPU per record and peaked at %d MiB of RSS. The server's CPU is counted from "+
		"a path's start (its tables' set-up included) until the merges of what it stored are done (kcat's and the TSV path's parsing is clickhouse-client's, not the server's).\n\n",
		perRecord(hs.CPU), hs.PeakRSS>>20)

	st := rep.stats
	fmt.Fprintf(w, "## Stats\n\n`GET %s` over %d events: %d requests each way from one client, one at a time, "+
		"then %d from %d clients at once; the two ways take turns.\n\n", statsPath, st.Events, st.Requests/st.Clients, st.Requests, st.Clients)
	fmt.Fprintln(w, "| | one client: p50 | p99 | 8 clients: p50 | p99 |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	ratio := func(a, b time.Duration) string { return fmt.Sprintf("%.2f×", a.Seconds()/b.Seconds()) }
	fmt.Fprintf(w, "| through `hindsight api` | %s | %s | %s | %s |\n", ms(st.SingleAPI.P50), ms(st.SingleAPI.P99), ms(st.API.P50), ms(st.API.P99))
	fmt.Fprintf(w, "| its statement sent to ClickHouse directly | %s | %s | %s | %s |\n",
		ms(st.SingleDirect.P50), ms(st.SingleDirect.P99), ms(st.Direct.P50), ms(st.Direct.P99))
	fmt.Fprintf(w, "| API ÷ direct | %s | %s | %s | %s |\n", ratio(st.SingleAPI.P50, st.SingleDirect.P50), ratio(st.SingleAPI.P99, st.SingleDirect.P99),
		ratio(st.API.P50, st.Direct.P50), ratio(st.API.P99, st.Direct.P99))
	fmt.Fprintf(w, "\n`hindsight api` peaked at %d MiB of RSS.\n\n", st.APIPeakRSS>>20)

	rp := rep.replay
	fmt.Fprintf(w, "## Replay\n\n%d events replayed unordered, %d in flight, from the replay's creation to its completion, "+
		"beside a bare net/http loop posting the same bodies to the same loopback receiver, %d at a time (a 500 sent again at once). "+
		"Medians of %d rounds, the modes in turn.\n\n",
		rp.Events, rp.Concurrency, rp.Concurrency, rp.Rounds)
	fmt.Fprintln(w, "| receiver | replay | bare loop | replay's rate ÷ the loop's | replay's first request | rate from then on ÷ the loop's |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, run := range rp.Runs {
		fmt.Fprintf(w, "| %s | %.2f s (%.0f/s) | %.2f s (%.0f/s) | %.2f× | after %.2f s | %.2f× |\n", run.Mode, run.Replay.Seconds(), float64(rp.Events)/run.Replay.Seconds(),
			run.Bare.Seconds(), float64(rp.Events)/run.Bare.Seconds(), run.Bare.Seconds()/run.Replay.Seconds(),
			run.First.Seconds(), run.Bare.Seconds()/run.FromFirst.Seconds())
	}
	fmt.Fprintln(w, "\nA replay starts when a worker finds it and has claimed it: a trial claim, a read that no other worker "+
		"claims it too, and the claim confirmed (on one server, with no wait). Here `hindsight api` and `hindsight replay-worker` both have `--kafka`: the API announces "+
		"each new replay on the wake topic and the worker looks at once (without, it looks every second, `--poll`).")
	fmt.Fprintf(w, "\nFailing first attempts added %.2f s to the replay (the median of each round's difference); a first retry waits 1 s, ±20%%.\n",
		rp.Added.Seconds())
	fmt.Fprintf(w, "\n`hindsight replay-worker` peaked at %d MiB of RSS.\n", rp.WorkerPeak>>20)
}

// writeMarkdown writes the report as docs/benchmarks.md holds it.
func (rep report) writeMarkdown(w io.Writer) {
	m := rep.machine
	fmt.Fprintf(w, "# Benchmarks\n\nWritten by `go run ./cmd/bench %s` (`make bench`) at %s on %s; do not edit by hand. "+
		"Every ratio compares figures of this one run on this one machine: the same machine gives other absolutes from one run to the next.\n\n",
		m.Args, m.Commit, m.Date.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "Machine: %s, %d cores, %.0f GiB, %s. ClickHouse %s (a private server), %s, %s; broker, ClickHouse and the measured process share the machine.\n\n",
		m.CPU, m.Cores, m.MemGiB, m.OS, m.ClickHouse, m.Go, m.Kcat)
	rep.write(w)
}
