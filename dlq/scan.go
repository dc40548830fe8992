package dlq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// span is the part of a topic one call reads: per partition, the offsets
// [start, end).
type span map[int32][2]int64

// errNoTopic: the topic does not exist.
var errNoTopic = errors.New("topic does not exist")

// ends lists topic's last stable offsets: with read_committed, everything
// before them is decided (committed or aborted), so a scan up to them
// terminates and sees every committed record.
func (c *Client) ends(ctx context.Context, topic string) (kadm.ListedOffsets, error) {
	ends, err := c.adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = listErr(ends)
	}
	if err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("topic %s: %w", topic, errNoTopic)
		}
		return nil, fmt.Errorf("listing the end offsets of %s: %w", topic, err)
	}
	return ends, nil
}

// listErr returns the first partition error of a listing.
func listErr(l kadm.ListedOffsets) error {
	var first error
	l.Each(func(o kadm.ListedOffset) {
		if o.Err != nil && first == nil {
			first = o.Err
		}
	})
	return first
}

// spanOf returns what to read of topic for the range of record timestamps
// starting at since (zero: from the start): from the first offset whose
// timestamp is since or later (ListOffsetsAfterMilli; offsets before it
// are all earlier) to the last stable offset at this moment, so that
// records written during the call are not read and the call ends.
// Timestamps need not grow with offsets (a dead letter has its input's), so
// the end is not bounded by time: the records past the range are filtered
// as they are read.
func (c *Client) spanOf(ctx context.Context, topic string, since time.Time) (span, error) {
	ends, err := c.ends(ctx, topic)
	if err != nil {
		return nil, err
	}
	starts, err := c.adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = listErr(starts)
	}
	if err != nil {
		return nil, fmt.Errorf("listing the start offsets of %s: %w", topic, err)
	}
	var after kadm.ListedOffsets
	if !since.IsZero() {
		after, err = c.adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic)
		if err == nil {
			err = listErr(after)
		}
		if err != nil {
			return nil, fmt.Errorf("listing the offsets of %s after %s: %w", topic, since.Format(time.RFC3339), err)
		}
	}
	sp := span{}
	for p, e := range ends[topic] {
		start := starts[topic][p].Offset
		if a, ok := after.Lookup(topic, p); ok && a.Offset > start {
			start = a.Offset
		}
		sp[p] = [2]int64{start, e.Offset}
	}
	return sp, nil
}

// scan reads sp of topic with read_committed and calls fn for each record,
// in offset order within a partition. A partition is done at its end
// offset. With read_committed the records before the end are all visible,
// except aborted ones; the transaction markers are kept (KeepControlRecords)
// so that a partition that ends with them is seen to end. Should a
// partition still deliver nothing for Config.IdleTimeout (an aborted
// record that ends it, its marker past the end), scan stops and returns
// the partitions it did not finish, sorted.
func (c *Client) scan(ctx context.Context, topic string, sp span, fn func(*kgo.Record) error) ([]int32, error) {
	offsets := map[int32]kgo.Offset{}
	for p, r := range sp {
		if r[0] < r[1] {
			offsets[p] = kgo.NewOffset().At(r[0])
		}
	}
	if len(offsets) == 0 {
		return nil, nil
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(c.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	}, c.cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating a kafka client to read %s: %w", topic, err)
	}
	defer cl.Close()
	left := map[int32]bool{}
	for p := range offsets {
		left[p] = true
	}
	idleSince := time.Now()
	for len(left) > 0 {
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("reading %s partition %d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		n := 0
		var finished []int32
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if ferr != nil || !left[r.Partition] {
				return
			}
			end := sp[r.Partition][1]
			if r.Offset < end && !r.Attrs.IsControl() {
				if err := fn(r); err != nil {
					ferr = err
					return
				}
			}
			if r.Offset >= end-1 {
				delete(left, r.Partition)
				finished = append(finished, r.Partition)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		if len(finished) > 0 {
			cl.PauseFetchPartitions(map[string][]int32{topic: finished})
		}
		if n > 0 {
			idleSince = time.Now()
		} else if time.Since(idleSince) > c.cfg.IdleTimeout {
			break
		}
	}
	var unread []int32
	for p := range left {
		unread = append(unread, p)
	}
	slices.Sort(unread)
	return unread, nil
}
