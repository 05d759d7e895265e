// Package proctest runs Hindsight as its users do, for the suites that test
// real processes (internal/faults, internal/cluster): the binary built once,
// processes started with their logs kept, records produced to a broker, and
// a consumer group's offsets committed as ingest would.
package proctest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Build compiles cmd/hindsight to dir/hindsight and returns its path.
func Build(dir string) (string, error) {
	bin := dir + "/hindsight"
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/dodev/hindsight/cmd/hindsight").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// Start runs bin with args, env added to this process' environment, its
// output appended to logPath. It is killed if the test binary dies; the
// caller stops it.
func Start(t testing.TB, bin, logPath string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("process log: %v", err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	return cmd
}

// Produce sends values to topic, chunk by chunk, pausing between chunks.
// Each record is keyed by its position, so a producer retry (the same value
// again) lands on any partition, as a retry by a restarted producer does, and
// often in another ingest process than the first copy.
func Produce(brokers []string, topic string, values [][]byte, chunk int, pause time.Duration) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchMaxBytes(2<<20), kgo.RecordRetries(100))
	if err != nil {
		return err
	}
	defer cl.Close()
	for i := 0; i < len(values); i += chunk {
		recs := make([]*kgo.Record, 0, chunk)
		for j, v := range values[i:min(i+chunk, len(values))] {
			recs = append(recs, &kgo.Record{Key: strconv.AppendInt(nil, int64(i+j), 10), Value: v})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			return fmt.Errorf("produce records %d to %d: %w", i, i+len(recs), err)
		}
		time.Sleep(pause)
	}
	return nil
}

// TopicValues reads topic from its start until a poll of 3 s brings
// nothing more, and returns the distinct record values.
func TopicValues(brokers []string, topic string) (map[string]bool, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(8<<20))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	got := map[string]bool{}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(rec *kgo.Record) { got[string(rec.Value)] = true; n++ })
		if n == 0 {
			return got, nil
		}
	}
}

// CommitEnd commits, for group, the end of every partition of topic: as if
// ingest had read and stored everything there (a follow starts there).
func CommitEnd(brokers []string, topic, group string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := context.Background()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	commit := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) { commit.AddOffset(topic, o.Partition, o.Offset, -1) })
	if _, err := adm.CommitOffsets(ctx, group, commit); err != nil {
		return fmt.Errorf("commit %s's offsets of %s: %w", group, topic, err)
	}
	return nil
}

// PeakRSS reads a running process's peak resident set size (VmHWM), in
// bytes.
func PeakRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM of %d: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// CPUTime reads the user and system CPU time a running process has used.
func CPUTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count from
	// after it. utime and stime are fields 14 and 15, in clock ticks
	// (USER_HZ, 100 on Linux).
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("CPU time of %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}
