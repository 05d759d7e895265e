// Command gensample writes the sample events of testdata/ to standard output:
//
//	go run ./internal/sample/gensample > testdata/events.ndjson
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"

	"github.com/dodev/hindsight/internal/sample"
)

func main() {
	n := flag.Int("n", 5000, "events to generate")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	w := bufio.NewWriter(os.Stdout)
	for _, ev := range sample.Generate(*n, sample.TestdataOptions(*seed)) {
		w.Write(ev)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "gensample:", err)
		os.Exit(1)
	}
}
