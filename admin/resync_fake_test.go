package admin

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/idsync/idsync/idsync"
)

// fakeResyncs keeps resyncs in memory; failNext makes the next call fail.
type fakeResyncs struct {
	mu       sync.Mutex
	m        map[string]idsync.Resync
	order    []string
	failNext error
	progress map[string][]idsync.ResyncProgress
}

func newFakeResyncs() *fakeResyncs {
	return &fakeResyncs{m: map[string]idsync.Resync{}, progress: map[string][]idsync.ResyncProgress{}}
}

func (f *fakeResyncs) fail() error {
	err := f.failNext
	f.failNext = nil
	return err
}

func (f *fakeResyncs) Start(_ context.Context, r idsync.Resync) (idsync.Resync, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail(); err != nil {
		return r, err
	}
	if err := r.Check(); err != nil {
		return r, fmt.Errorf("fake: %w", err)
	}
	r.Partitions = 3
	f.m[r.ID] = r
	f.order = append([]string{r.ID}, f.order...)
	return r, nil
}

func (f *fakeResyncs) Get(_ context.Context, id string) (*idsync.Resync, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail(); err != nil {
		return nil, err
	}
	r, ok := f.m[id]
	if !ok {
		return nil, nil
	}
	return &r, nil
}

func (f *fakeResyncs) Progress(_ context.Context, id string) ([]idsync.ResyncProgress, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.progress[id], nil
}

func (f *fakeResyncs) Cancel(_ context.Context, id string, at time.Time) (*idsync.Resync, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail(); err != nil {
		return nil, err
	}
	r, ok := f.m[id]
	if !ok {
		return nil, fmt.Errorf("resync %s: %w", id, idsync.ErrNotFound)
	}
	if r.CancelledAt == nil {
		r.CancelledAt = &at
	}
	f.m[id] = r
	return &r, nil
}

func (f *fakeResyncs) List(_ context.Context, k Key) ([]idsync.Resync, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail(); err != nil {
		return nil, err
	}
	out := []idsync.Resync{}
	for _, id := range f.order {
		r := f.m[id]
		if r.SpaceID == k.Space && r.AudienceID == k.Audience && r.DestinationID == k.Destination {
			out = append(out, r)
		}
	}
	return out, nil
}
