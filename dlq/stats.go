package dlq

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
)

// Count is how many selected dead letters share a code, a destination and
// a source partition.
type Count struct {
	Code            idsync.Code
	Destination     string // "" for dead letters of whole records
	SourcePartition int32
	DeadLetters     int
}

// Stats is what Client.Stats found.
type Stats struct {
	// Scanned is how many dead letters were read; Matched how many of them
	// the filter selected.
	Scanned, Matched int
	// Counts are the selected dead letters by code, destination and source
	// partition, sorted in that order.
	Counts []Count
	// Unread are dead-letter partitions whose end was not reached (see
	// Config.IdleTimeout); empty when every one was read to its end.
	Unread []int32
}

// ByCode sums the counts per code.
func (s *Stats) ByCode() map[idsync.Code]int {
	m := map[idsync.Code]int{}
	for _, c := range s.Counts {
		m[c.Code] += c.DeadLetters
	}
	return m
}

// ByDestination sums the counts per destination ("" for dead letters of
// whole records).
func (s *Stats) ByDestination() map[string]int {
	m := map[string]int{}
	for _, c := range s.Counts {
		m[c.Destination] += c.DeadLetters
	}
	return m
}

// Stats counts the dead letters f selects. It reads the dead-letter topic
// from the first offset of f.Since (the start without it) to the end
// offsets at the start of the call, so it ends however much is written
// meanwhile; its cost is one read of that range. It blocks until done or
// ctx is cancelled.
func (c *Client) Stats(ctx context.Context, f Filter) (Stats, error) {
	if err := f.check(); err != nil {
		return Stats{}, fmt.Errorf("dlq stats: %w", err)
	}
	c, err := c.begin()
	if err != nil {
		return Stats{}, fmt.Errorf("dlq stats: %w", err)
	}
	defer c.end()
	sp, err := c.spanOf(ctx, c.cfg.DLQTopic, f.Since)
	if err != nil {
		return Stats{}, fmt.Errorf("dlq stats: %w", err)
	}
	type key struct {
		code idsync.Code
		dest string
		part int32
	}
	counts := map[key]int{}
	var st Stats
	st.Unread, err = c.scan(ctx, c.cfg.DLQTopic, sp, func(r *kgo.Record) error {
		st.Scanned++
		l := parse(r)
		if !f.match(&l) {
			return nil
		}
		st.Matched++
		counts[key{l.Code, l.Destination, l.SourcePartition}]++
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("dlq stats: %w", err)
	}
	for k, n := range counts {
		st.Counts = append(st.Counts, Count{Code: k.code, Destination: k.dest, SourcePartition: k.part, DeadLetters: n})
	}
	slices.SortFunc(st.Counts, func(a, b Count) int {
		return cmp.Or(cmp.Compare(a.Code, b.Code), cmp.Compare(a.Destination, b.Destination), cmp.Compare(a.SourcePartition, b.SourcePartition))
	})
	return st, nil
}
