package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dodev/hindsight/ingest"
)

func runProduce(ctx context.Context, args []string) error {
	fs := newFlags("produce")
	var kafka, topic string
	fs.StringVar(&kafka, "kafka", defaultKafka, "Kafka seed brokers, host:port,...")
	fs.StringVar(&topic, "topic", ingest.DefaultTopic, "topic to produce to")
	if err := fs.parse(args); err != nil {
		return helpOK(err)
	}
	if fs.NArg() != 1 {
		return usagef("produce: want one FILE argument (or - for standard input), got %d", fs.NArg())
	}
	brokers, err := checkAddrs("kafka", kafka)
	if err != nil {
		return err
	}
	if topic == "" {
		return usagef("--topic: empty")
	}
	in := &countingReader{r: os.Stdin}
	var size int64 // 0: unknown, as for standard input
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return usagef("produce: %v", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
		in.r = f
	}
	progress := isTerminal(os.Stderr)
	start := time.Now()
	n, err := produceLines(ctx, brokers, topic, in, func(sent int64) {
		if progress {
			fmt.Fprint(os.Stderr, "\r"+progressLine(sent, in.n.Load(), size, time.Since(start)))
		}
	})
	if progress {
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return err
	}
	fmt.Printf("produced %d events to %s in %s\n", n, topic, time.Since(start).Round(time.Millisecond))
	return nil
}

// countingReader counts the bytes read through it, for the progress bar.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// progressLine draws "[=====>    ]  52% 2600 events 41000/s" when the input's
// size is known, and the count and rate alone when it is not.
func progressLine(sent, read, size int64, took time.Duration) string {
	rate := float64(sent) / max(took.Seconds(), 1e-3)
	if size <= 0 {
		return fmt.Sprintf("%d events %.0f/s ", sent, rate)
	}
	const width = 30
	frac := min(float64(read)/float64(size), 1)
	done := int(frac * width)
	bar := strings.Repeat("=", done) + strings.Repeat(" ", width-done)
	if done < width {
		bar = bar[:done] + ">" + bar[done+1:]
	}
	return fmt.Sprintf("[%s] %3.0f%% %d events %.0f/s ", bar, frac*100, sent, rate)
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// produceLines sends each non-empty line of r as one record value, byte for
// byte, and waits for every acknowledgement. tick is called about ten times a
// second with the count acknowledged so far.
func produceLines(ctx context.Context, brokers []string, topic string, r io.Reader, tick func(int64)) (int64, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.AllowAutoTopicCreation(),
	)
	if err != nil {
		return 0, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()

	var acked atomic.Int64
	var firstErr atomic.Pointer[error]
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				tick(acked.Load())
			}
		}
	}()
	defer close(done)

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		v := bytes.TrimSpace(sc.Bytes())
		if len(v) == 0 {
			continue
		}
		rec := &kgo.Record{Value: bytes.Clone(v)}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			acked.Add(1)
		})
		if p := firstErr.Load(); p != nil {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return acked.Load(), fmt.Errorf("read line %d: %w", line+1, err)
	}
	if err := cl.Flush(ctx); err != nil {
		return acked.Load(), fmt.Errorf("flush to kafka: %w", err)
	}
	tick(acked.Load())
	if p := firstErr.Load(); p != nil {
		return acked.Load(), fmt.Errorf("produce to %s: %w", topic, *p)
	}
	return acked.Load(), nil
}
