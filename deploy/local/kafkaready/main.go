// Command kafkaready asks a Kafka broker for cluster metadata once and exits 0
// when it answers with at least -min-brokers brokers (and, with -node, lists
// that node), 1 otherwise. deploy/local/start.sh
// runs it in a loop to learn when the broker it started can serve clients: an
// open port or a log line only says the process is up, a metadata answer says
// the broker has joined its KRaft quorum and registered.
//
// On success it prints one line: the cluster ID, the brokers, and the Kafka
// release the broker's API versions match (as guessed by franz-go's kversion).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	os.Exit(run())
}

func run() int {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	timeout := flag.Duration("timeout", 3*time.Second, "how long this one attempt may take")
	minBrokers := flag.Int("min-brokers", 1, "how many registered brokers the metadata must list")
	node := flag.Int("node", -1, "a node ID the metadata must list (a restarted node that re-registered)")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*brokers, ",")...))
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkaready: creating client: %v\n", err)
		return 1
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkaready: requesting metadata: %v\n", err)
		return 1
	}
	if len(md.Brokers) < *minBrokers {
		fmt.Fprintf(os.Stderr, "kafkaready: metadata lists %d brokers, want %d\n", len(md.Brokers), *minBrokers)
		return 1
	}
	if *node >= 0 {
		if !slices.Contains(md.Brokers.NodeIDs(), int32(*node)) {
			fmt.Fprintf(os.Stderr, "kafkaready: metadata does not list node %d yet\n", *node)
			return 1
		}
	}
	guess := "unknown"
	if vs, err := adm.ApiVersions(ctx); err == nil {
		for _, v := range vs.Sorted() {
			if v.Err == nil {
				guess = v.VersionGuess()
				break
			}
		}
	}
	fmt.Printf("cluster %s, brokers %v, api versions of Kafka %s\n", md.Cluster, md.Brokers.NodeIDs(), guess)
	return 0
}
