package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/internal/stacktest"
)

// backend is one Redis the shared suites run against.
type backend struct {
	name string
	// open returns a fresh client (with a command counter installed) and a
	// key prefix that t owns.
	open func(t *testing.T) *env
}

// env is what a suite test gets: a client with a command counter, a key
// prefix of its own, and a unique space so keys never collide.
type env struct {
	rdb    redis.UniversalClient
	prefix string
	space  string
	cmds   *counter
	// replicas is how many replicas each master has (0 for a standalone
	// server).
	replicas int
}

// backends returns the Redis servers the suites run against: miniredis
// always, the real server named by IDSYNC_TEST_REDIS (skipped under -short
// when unset, failed otherwise, by internal/stacktest), and the opt-in Redis
// Cluster (IDSYNC_TEST_REDIS_CLUSTER) and Sentinel-managed Redis
// (IDSYNC_TEST_REDIS_SENTINEL), each over mutual TLS when
// IDSYNC_TEST_REDIS_TLS_DIR is set, skipped when unset.
func backends() []backend {
	return []backend{
		{name: "miniredis", open: func(t *testing.T) *env {
			mr := miniredis.RunT(t)
			return newEnv(t, &redis.Options{Addr: mr.Addr()}, "idsync-test:")
		}},
		{name: "redis", open: func(t *testing.T) *env {
			ks := stacktest.Redis(t)
			return newEnv(t, ks.Options(), ks.Prefix())
		}},
		{name: "redis-cluster", open: func(t *testing.T) *env {
			r := stacktest.RedisCluster(t)
			e := newUniversalEnv(t, r.Options(), r.Prefix())
			e.replicas = 1
			return e
		}},
		{name: "redis-sentinel", open: func(t *testing.T) *env {
			r := stacktest.RedisSentinel(t)
			e := newUniversalEnv(t, r.Options(), r.Prefix())
			e.replicas = 1
			return e
		}},
	}
}

// forEachBackend runs test as a subtest per backend.
func forEachBackend(t *testing.T, test func(t *testing.T, e *env)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			test(t, b.open(t))
		})
	}
}

func newEnv(t *testing.T, opt *redis.Options, prefix string) *env {
	t.Helper()
	// A fresh Options: go-redis keeps per-client state in the one it is given.
	return openEnv(t, redis.NewClient(&redis.Options{
		Addr: opt.Addr, Username: opt.Username, Password: opt.Password,
		DB: opt.DB, TLSConfig: opt.TLSConfig, MaxRetries: opt.MaxRetries,
	}), opt.Addr, prefix)
}

// newUniversalEnv is newEnv on a cluster or Sentinel client; opt must be
// the test's own copy.
func newUniversalEnv(t *testing.T, opt *redis.UniversalOptions, prefix string) *env {
	t.Helper()
	return openEnv(t, redis.NewUniversalClient(opt), strings.Join(opt.Addrs, ","), prefix)
}

func openEnv(t *testing.T, rdb redis.UniversalClient, addr, prefix string) *env {
	t.Helper()
	t.Cleanup(func() { rdb.Close() })
	cmds := &counter{}
	rdb.AddHook(cmds)
	// Open a connection now, so that its handshake (HELLO, CLIENT
	// SETINFO) is not counted as the test's commands.
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("PING %s: %v", addr, err)
	}
	cmds.reset()
	return &env{rdb: rdb, prefix: prefix, space: fmt.Sprintf("spa_%08x", rand.Uint32()), cmds: cmds}
}

// store returns a Store on e with the given clock and the activation used
// throughout the tests (5 minute delay, 24 hour retention).
func (e *env) store(t *testing.T, clk *clock, opt Options) *Store {
	t.Helper()
	opt.Prefix = e.prefix
	if clk != nil {
		opt.Now = clk.Now
	}
	s, err := New(e.rdb, opt)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// counter is a go-redis hook counting the commands sent, by name, and
// optionally holding HGETALL until released.
type counter struct {
	mu    sync.Mutex
	byCmd map[string]int
	total atomic.Int64
	// gate, when set, is received from before each HGETALL is sent;
	// reached (buffered) is signalled first unless it is full.
	gate    chan struct{}
	reached chan struct{}
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.record(cmd)
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.record(cmd)
		}
		return next(ctx, cmds)
	}
}

// roundTrips counts one per ProcessHook call or pipeline, and is what
// "one round trip" is checked against.
func (c *counter) record(cmd redis.Cmder) {
	name := strings.ToLower(cmd.Name())
	c.mu.Lock()
	if c.byCmd == nil {
		c.byCmd = make(map[string]int)
	}
	c.byCmd[name]++
	gate, reached := c.gate, c.reached
	c.mu.Unlock()
	c.total.Add(1)
	if name == "hgetall" && gate != nil {
		select {
		case reached <- struct{}{}:
		default:
		}
		<-gate
	}
}

func (c *counter) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byCmd[name]
}

func (c *counter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byCmd = nil
	c.total.Store(0)
}

// clock is a settable clock for Store and Cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// eventually polls cond every 10ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		<-tick.C
	}
}

// webhook returns a valid configuration whose enter event is name, so that
// versions can be told apart.
func webhook(name string) *idsync.Config {
	s := idsync.DefaultSettings()
	s.UploadKeyType = ""
	s.EnterEvent = name
	return &idsync.Config{
		DestinationType: idsync.Webhook,
		Settings:        s,
		Setup:           idsync.SetupCustomized,
		Identifiers: []idsync.Mapping{
			{Segment: "user_id", Destination: "userId", Strategy: idsync.LastAdded},
			{Segment: "email", Destination: "email", Strategy: idsync.All},
		},
	}
}

// outage is a Redis server a test may stop and restart.
type outage struct {
	name  string
	start func(t *testing.T) (addr string, stop, restart func())
}

// outages returns the servers the outage tests run against: miniredis
// (Close and Restart) and a redis-server process of the test's own on a
// free port (SIGTERM, then started again on the same port with its
// append-only file), so the shared test Redis is never touched.
func outages() []outage {
	return []outage{
		{name: "miniredis", start: func(t *testing.T) (string, func(), func()) {
			mr := miniredis.RunT(t)
			return mr.Addr(), mr.Close, func() {
				if err := mr.Restart(); err != nil {
					t.Fatalf("restarting miniredis: %v", err)
				}
			}
		}},
		{name: "redis-server", start: startRedisServer},
	}
}

// startRedisServer runs redis-server on a free port in a temporary
// directory. Like internal/stacktest, it skips under -short when the
// binary is missing and fails otherwise.
func startRedisServer(t *testing.T) (addr string, stop, restart func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if testing.Short() {
			t.Skip("redis-server not installed (deploy/local/install.sh installs it)")
		}
		t.Fatalf("redis-server not installed (deploy/local/install.sh installs it): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dir := t.TempDir()

	var cmd *exec.Cmd
	start := func() {
		t.Helper()
		cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
		log, err := os.OpenFile(filepath.Join(dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatalf("opening the redis-server log: %v", err)
		}
		defer log.Close()
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting redis-server: %v", err)
		}
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		defer c.Close()
		eventually(t, 10*time.Second, "redis-server answers PING", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return c.Ping(ctx).Err() == nil
		})
	}
	stop = func() {
		t.Helper()
		if cmd == nil {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		cmd = nil
	}
	start()
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "redis.log")); err == nil {
				t.Logf("redis-server log:\n%s", b)
			}
		}
	})
	return addr, stop, start
}

// isUnavailable reports whether err wraps ErrUnavailable.
func isUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }
