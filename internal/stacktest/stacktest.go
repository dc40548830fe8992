// Package stacktest connects end-to-end tests to a real Apache Kafka broker
// and a real Redis server: the ones deploy/local/start.sh runs (what
// `make test` does), or any others named by two environment variables:
//
//	IDSYNC_TEST_KAFKA=host:port[,host:port...]   seed brokers
//	IDSYNC_TEST_REDIS=host:port                  or a redis:// URL
//
// Every test gets resources of its own, named after the test plus a random
// suffix, and removed when the test ends: topics and consumer groups
// ([Cluster.Topic], [Cluster.Group]), a Redis key prefix ([Keyspace]). Tests
// can therefore run in parallel with each other and against a stack that
// outlives them.
//
// When a variable is unset, a test that asks for that service is skipped under
// `go test -short` and fails otherwise: an end-to-end test must never pass by
// silently not running.
//
// Non-goals: starting or stopping the services (that is deploy/local's job),
// and hermetic tests (use kfake and miniredis for those).
package stacktest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment variables that name the services under test.
const (
	// KafkaEnv names the seed brokers, comma-separated host:port pairs.
	KafkaEnv = "IDSYNC_TEST_KAFKA"
	// RedisEnv names the Redis server, as host:port or a redis:// URL.
	RedisEnv = "IDSYNC_TEST_REDIS"
)

// setupTimeout bounds each call this package makes on a test's behalf
// (reaching a service, creating or deleting a topic, deleting keys).
const setupTimeout = 30 * time.Second

// lookupEnv returns the value of the environment variable name, or ends the
// test: with t.Skip under -short, with t.Fatal otherwise.
func lookupEnv(t testing.TB, name string) string {
	t.Helper()
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	msg := fmt.Sprintf("%s is not set: this test needs a real Kafka and Redis. "+
		"Run `make test` (it starts both from deploy/local and sets the variables), "+
		"or point the tests at a running stack with %s=host:port and %s=host:port "+
		"(e.g. after `make stack-up`, or `docker compose up kafka redis`). "+
		"`go test -short` skips end-to-end tests.", name, KafkaEnv, RedisEnv)
	if testing.Short() {
		t.Skip(msg)
	}
	t.Fatal(msg)
	return ""
}

// reachability remembers, per service address, whether the first attempt to
// reach it in this test binary succeeded, so that an unreachable address fails
// every test quickly with the same message instead of each waiting on its own.
var reachability sync.Map // address -> *reachable

type reachable struct {
	once sync.Once
	err  error
}

// checkReachable runs ping once per address and process and fails t with its
// error, then and on every later call.
func checkReachable(t testing.TB, what, addr string, ping func(context.Context) error) {
	t.Helper()
	v, _ := reachability.LoadOrStore(what+" "+addr, new(reachable))
	r := v.(*reachable)
	r.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		r.err = ping(ctx)
	})
	if r.err != nil {
		t.Fatalf("%s at %s is not reachable: %v (is the stack up? `make stack-up` starts it)", what, addr, r.err)
	}
}

// Name returns a name unique to this call for a resource that t owns: t.Name()
// reduced to the characters Kafka allows in topic names ([a-zA-Z0-9._-]), cut
// to a sensible length, plus a random suffix. It suits topics, consumer groups,
// transactional IDs and Redis key prefixes, and contains no glob characters.
func Name(t testing.TB) string {
	var b strings.Builder
	for _, r := range t.Name() {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	base := b.String()
	// Kafka allows 249 characters; leave room for the suffix and for
	// names derived from this one.
	const maxBase = 160
	if len(base) > maxBase {
		base = base[:maxBase]
	}
	return fmt.Sprintf("%s-%08x", base, rand.Uint32())
}

// waitFor calls cond every interval until it reports done, returns an error,
// or ctx ends. It returns ctx's error wrapped with the last error from cond,
// if any, when the deadline comes first.
func waitFor(ctx context.Context, interval time.Duration, cond func(context.Context) (bool, error)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last error
	for {
		done, err := cond(ctx)
		if err == nil && done {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}
