package dlq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ReplayOptions say how Replay runs.
type ReplayOptions struct {
	// DryRun reports what would be replayed and produces nothing.
	DryRun bool
	// Again replays the selected dead letters that were replayed before
	// too (they are not replayed again otherwise).
	Again bool
	// BatchSize is how many dead letters one transaction replays (default
	// 100): a crash loses at most one batch's work, which the next run
	// does.
	BatchSize int
	// ListLimit bounds Summary.Letters (default 1000; -1: no list).
	ListLimit int
	// Progress, when set, is called after each committed batch with the
	// dead letters replayed so far and the number to replay; on the
	// caller's goroutine.
	Progress func(done, total int)
}

// Outcome is what Replay did, or in a dry run would do, with a dead letter.
type Outcome string

// Outcomes of the selected dead letters; a dead letter that cannot be
// replayed has its SkipReason as outcome.
const (
	// OutcomeReplay: replayed (in a dry run: would be).
	OutcomeReplay Outcome = "replay"
	// OutcomeAlreadyReplayed: replayed by an earlier run, so not again
	// (see ReplayOptions.Again).
	OutcomeAlreadyReplayed Outcome = "already_replayed"
)

// Planned is one selected dead letter and its outcome.
type Planned struct {
	Letter
	Outcome Outcome
}

// Summary is what Replay did.
type Summary struct {
	DryRun bool
	// Scanned is how many dead letters were read; Matched how many of them
	// the filter selected.
	Scanned, Matched int
	// Replayed is how many were replayed, committed (in a dry run: how
	// many would be).
	Replayed int
	// AlreadyReplayed were replayed by an earlier run.
	AlreadyReplayed int
	// Skipped are the selected dead letters that cannot be replayed as
	// their input was, by reason.
	Skipped map[SkipReason]int
	// Letters are the first selected dead letters (ReplayOptions.ListLimit)
	// with their outcome, per partition in offset order.
	Letters []Planned
	// Unread: see Stats.Unread.
	Unread []int32
}

// Replay produces the dead letters f selects back into the input topic as
// they were on input (key, value, headers, timestamp, partitioned by key
// like any record), each with HeaderReplayOf naming the dead letter; the
// pipeline then processes them like any input. Dead letters that cannot be
// replayed faithfully (a truncated key, value or header set, or written
// without the input's context) are skipped and counted by reason.
//
// Replay is safe to run twice: a dead letter replayed before is not
// replayed again unless opt.Again. What was replayed is recorded in the
// compacted marker topic (Config.MarkerTopic, made on the first run), one
// record per dead letter, produced in the same Kafka transaction as its
// replay: both are committed or neither is, so the record of what was
// replayed is right after a crash at any moment. A run first fences its
// transactional id (an InitProducerID request), which aborts what a
// crashed or still running earlier run left open (that run then fails
// with a fencing error) before the markers are read with read_committed.
// A crash mid-run loses at most its open batch, which the next run
// replays. The pipeline reads the input topic with read_committed in
// exactly_once; in at_least_once it reads uncommitted records too, so an
// aborted batch may have been processed already (a duplicate, as
// at_least_once allows).
//
// The dead letters are read twice (once to count them for the progress,
// once to replay them), in the range of Stats. Replay blocks until done or
// ctx is cancelled; on cancellation the open batch is aborted and the
// Summary holds what was committed, with ctx's error.
func (c *Client) Replay(ctx context.Context, f Filter, opt ReplayOptions) (Summary, error) {
	if opt.BatchSize <= 0 {
		opt.BatchSize = 100
	}
	if opt.ListLimit == 0 {
		opt.ListLimit = 1000
	}
	sum := Summary{DryRun: opt.DryRun, Skipped: map[SkipReason]int{}}
	if err := f.check(); err != nil {
		return sum, fmt.Errorf("dlq replay: %w", err)
	}
	c, err := c.begin()
	if err != nil {
		return sum, fmt.Errorf("dlq replay: %w", err)
	}
	defer c.end()
	var tx *txn
	if !opt.DryRun {
		if err := c.makeMarkerTopic(ctx); err != nil {
			return sum, fmt.Errorf("dlq replay: %w", err)
		}
		if err := c.fence(ctx); err != nil {
			return sum, fmt.Errorf("dlq replay: %w", err)
		}
		// The producer that replays takes its producer id now, before the
		// markers are read: from here any other replay of this topic is
		// fenced (its next commit fails), and whatever it committed before
		// is in the markers read below. Taking it at the first produce,
		// after the counting pass, would let a replay that started later
		// commit batches this one has already decided to replay.
		if tx, err = c.newTxn(); err != nil {
			return sum, fmt.Errorf("dlq replay: %w", err)
		}
		defer tx.close()
		if _, _, err := tx.cl.ProducerID(ctx); err != nil {
			return sum, fmt.Errorf("dlq replay: taking the transactional id %s: %w", c.cfg.TransactionalID, err)
		}
	}
	done, err := c.replayed(ctx)
	if err != nil {
		return sum, fmt.Errorf("dlq replay: reading the replay markers: %w", err)
	}
	if c.cfg.afterMarkers != nil {
		c.cfg.afterMarkers()
	}
	sp, err := c.spanOf(ctx, c.cfg.DLQTopic, f.Since)
	if err != nil {
		return sum, fmt.Errorf("dlq replay: %w", err)
	}
	// decide is the one place that says what happens to a dead letter; both
	// passes ask it, on the same records and markers.
	decide := func(l *Letter) Outcome {
		switch {
		case l.Skip != "":
			return Outcome(l.Skip)
		case done[l.markerKey()] && !opt.Again:
			return OutcomeAlreadyReplayed
		}
		return OutcomeReplay
	}
	total := 0
	sum.Unread, err = c.scan(ctx, c.cfg.DLQTopic, sp, func(r *kgo.Record) error {
		sum.Scanned++
		l := parse(r)
		if !f.match(&l) {
			return nil
		}
		sum.Matched++
		o := decide(&l)
		switch o {
		case OutcomeReplay:
			total++
		case OutcomeAlreadyReplayed:
			sum.AlreadyReplayed++
		default:
			sum.Skipped[l.Skip]++
		}
		if len(sum.Letters) < opt.ListLimit {
			sum.Letters = append(sum.Letters, Planned{Letter: l, Outcome: o})
		}
		return nil
	})
	if err != nil {
		return sum, fmt.Errorf("dlq replay: %w", err)
	}
	if opt.DryRun || total == 0 {
		if opt.DryRun {
			sum.Replayed = total
		}
		return sum, nil
	}

	// One input record dead-lettered for several destinations has a dead
	// letter per destination: it is replayed once (the pipeline processes
	// it for every destination), and each of its dead letters is marked.
	sources := map[string]bool{}
	at := time.Now()
	_, err = c.scan(ctx, c.cfg.DLQTopic, sp, func(r *kgo.Record) error {
		l := parse(r)
		if !f.match(&l) || decide(&l) != OutcomeReplay {
			return nil
		}
		var replay *kgo.Record
		if src := fmt.Sprintf("%s/%d/%d", l.SourceTopic, l.SourcePartition, l.SourceOffset); !sources[src] {
			sources[src] = true
			replay = c.replayRecord(r, &l, at)
		}
		if err := tx.add(ctx, replay, &kgo.Record{
			Topic: c.cfg.MarkerTopic, Key: []byte(l.markerKey()), Value: []byte(time.Now().UTC().Format(time.RFC3339)),
		}); err != nil {
			return err
		}
		if tx.n < opt.BatchSize {
			return nil
		}
		n, err := tx.commit(ctx)
		sum.Replayed += n
		if err == nil && opt.Progress != nil {
			opt.Progress(sum.Replayed, total)
		}
		return err
	})
	if err == nil {
		var n int
		n, err = tx.commit(ctx)
		sum.Replayed += n
		if err == nil && n > 0 && opt.Progress != nil {
			opt.Progress(sum.Replayed, total)
		}
	}
	if err != nil {
		tx.abort()
		return sum, fmt.Errorf("dlq replay: %w", err)
	}
	return sum, nil
}

// makeMarkerTopic makes the marker topic, compacted, when it is missing.
func (c *Client) makeMarkerTopic(ctx context.Context) error {
	compact := "compact"
	resp, err := c.adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, c.cfg.MarkerTopic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("making the marker topic %s: %w", c.cfg.MarkerTopic, err)
	}
	return nil
}

// fence initializes the transactional id, which aborts the transaction an
// earlier run left open and fences that run's producer. The coordinator
// answers CONCURRENT_TRANSACTIONS until the abort is complete.
func (c *Client) fence(ctx context.Context) error {
	id := c.cfg.TransactionalID
	for {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID = &id
		req.TransactionTimeoutMillis = 60000
		req.ProducerID, req.ProducerEpoch = -1, -1
		resp, err := req.RequestWith(ctx, c.cl)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, kerr.ConcurrentTransactions) && !kerr.IsRetriable(err) {
			return fmt.Errorf("fencing earlier replays (transactional id %s): %w", id, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// replayed reads the marker topic: the keys of the dead letters replayed
// in committed transactions. A missing marker topic means none.
func (c *Client) replayed(ctx context.Context) (map[string]bool, error) {
	// A transaction committed a moment ago is visible once its commit
	// markers are written, which follows the commit; wait for them a
	// little, so that a dry run right after a replay sees it. (Replay's
	// fence has waited for it already.)
	for wait := time.Now().Add(c.cfg.IdleTimeout); time.Now().Before(wait); {
		lso, err1 := c.adm.ListCommittedOffsets(ctx, c.cfg.MarkerTopic)
		hwm, err2 := c.adm.ListEndOffsets(ctx, c.cfg.MarkerTopic)
		if err1 != nil || err2 != nil || listErr(lso) != nil || listErr(hwm) != nil || settled(lso, hwm) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	sp, err := c.spanOf(ctx, c.cfg.MarkerTopic, time.Time{})
	if errors.Is(err, errNoTopic) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	done := map[string]bool{}
	unread, err := c.scan(ctx, c.cfg.MarkerTopic, sp, func(r *kgo.Record) error {
		done[string(r.Key)] = r.Value != nil // a tombstone forgets a replay
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(unread) > 0 {
		return nil, fmt.Errorf("partitions %v of %s could not be read to their end", unread, c.cfg.MarkerTopic)
	}
	return done, nil
}

// settled reports whether every partition's last stable offset is its
// high watermark: no transaction is open or finishing.
func settled(lso, hwm kadm.ListedOffsets) bool {
	ok := true
	hwm.Each(func(h kadm.ListedOffset) {
		l, found := lso.Lookup(h.Topic, h.Partition)
		ok = ok && found && l.Offset == h.Offset
	})
	return ok
}

// txn is Replay's transactional producer: replays and their markers, n of
// them in the open transaction.
type txn struct {
	cl   *kgo.Client
	open bool
	n    int
	mu   sync.Mutex
	errs []error
	wg   sync.WaitGroup
}

func (c *Client) newTxn() (*txn, error) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(c.cfg.Brokers...),
		kgo.TransactionalID(c.cfg.TransactionalID),
		kgo.TransactionTimeout(60 * time.Second),
	}, c.cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the transactional kafka client: %w", err)
	}
	return &txn{cl: cl}, nil
}

// add produces a replay (nil: its input was replayed already in this run)
// and its marker in the open transaction, opening one when none is.
func (t *txn) add(ctx context.Context, replay, marker *kgo.Record) error {
	if !t.open {
		if err := t.cl.BeginTransaction(); err != nil {
			return fmt.Errorf("beginning a transaction: %w", err)
		}
		t.open = true
	}
	for _, r := range []*kgo.Record{replay, marker} {
		if r == nil {
			continue
		}
		t.wg.Add(1)
		t.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer t.wg.Done()
			if err != nil {
				t.mu.Lock()
				t.errs = append(t.errs, fmt.Errorf("producing to %s: %w", r.Topic, err))
				t.mu.Unlock()
			}
		})
	}
	t.n++
	return nil
}

// commit commits the open transaction once every record of it is
// acknowledged; it returns how many dead letters it replayed.
func (t *txn) commit(ctx context.Context) (int, error) {
	if !t.open {
		return 0, nil
	}
	if err := t.cl.Flush(ctx); err != nil {
		return 0, fmt.Errorf("flushing a transaction: %w", err)
	}
	t.wg.Wait()
	t.mu.Lock()
	err := errors.Join(t.errs...)
	t.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if err := t.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return 0, fmt.Errorf("committing a transaction (a later replay of the same dead-letter topic fences this one): %w", err)
	}
	n := t.n
	t.open, t.n = false, 0
	return n, nil
}

// abort aborts the open transaction, within 10 s (also after ctx was
// cancelled).
func (t *txn) abort() {
	if !t.open {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = t.cl.AbortBufferedRecords(ctx)
	_ = t.cl.EndTransaction(ctx, kgo.TryAbort)
	t.open, t.n = false, 0
}

func (t *txn) close() { t.cl.Close() }
