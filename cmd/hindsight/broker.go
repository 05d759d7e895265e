package main

import (
	"context"
	"fmt"
	"net"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dodev/hindsight/ingest"
)

// defaultKafka is where the embedded broker listens, and where produce
// sends, unless told otherwise.
const defaultKafka = "127.0.0.1:9092"

// startBroker starts franz-go's kfake, a Kafka-protocol broker, listening on
// listen, with the topic seeded with partitions. With dataDir set, records
// and committed offsets persist there across restarts.
func startBroker(listen, dataDir, topic string, partitions int32) (*kfake.Cluster, error) {
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		// kfake advertises its listener's address; listening on exactly the
		// address clients dial keeps metadata pointing at it.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, listen) }),
		kfake.AllowAutoTopicCreation(),
		kfake.SeedTopics(partitions, topic),
	}
	if dataDir != "" {
		opts = append(opts, kfake.DataDir(dataDir))
	}
	b, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka broker on %s: %w", listen, err)
	}
	return b, nil
}

// runBroker serves the embedded broker alone, for tests and for producers
// that want a Kafka endpoint without the rest of dev.
func runBroker(ctx context.Context, args []string) error {
	fs := newFlags("broker")
	var listen, dataDir, topic string
	var partitions int
	fs.StringVar(&listen, "listen", defaultKafka, "address to listen on and advertise")
	fs.StringVar(&dataDir, "data", "", "directory to keep records and offsets in (default: memory only)")
	fs.StringVar(&topic, "topic", ingest.DefaultTopic, "topic to create")
	fs.IntVar(&partitions, "partitions", 4, "partitions of the topic")
	if err := fs.parse(args); err != nil {
		return helpOK(err)
	}
	if err := checkAddr("listen", listen); err != nil {
		return err
	}
	if partitions < 1 || partitions > 1000 {
		return usagef("--partitions %d: want 1 to 1000", partitions)
	}
	b, err := startBroker(listen, dataDir, topic, int32(partitions))
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Printf("hindsight broker ready on %s (topic %s, %d partitions)\n", listen, topic, partitions)
	<-ctx.Done()
	return nil
}
