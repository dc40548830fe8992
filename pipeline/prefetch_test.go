package pipeline

import (
	"context"
	"fmt"
	"iter"
	"sync"
	"testing"
	"time"

	"github.com/idsync/idsync/idsync"
)

// slowSource answers like its inner source, but each audience's first
// lookup is a fetch that takes delay (as a cold config cache's Redis round
// trip); it can start that fetch ahead (Prefetcher) and records how many
// fetches were in flight at once.
type slowSource struct {
	inner ConnectionSource
	delay time.Duration

	mu          sync.Mutex
	fetched     map[string]chan struct{} // closed once the audience is fetched
	inFlight    int
	maxInFlight int
	prefetches  int
}

func (s *slowSource) fetch(key string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.fetched[key]; ok {
		return ch
	}
	ch := make(chan struct{})
	s.fetched[key] = ch
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	go func() {
		time.Sleep(s.delay)
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
		close(ch)
	}()
	return ch
}

func (s *slowSource) Prefetch(_ context.Context, audiences iter.Seq2[string, string]) {
	for space, audience := range audiences {
		s.mu.Lock()
		s.prefetches++
		s.mu.Unlock()
		s.fetch(space + "/" + audience)
	}
}

func (s *slowSource) Connections(ctx context.Context, space, audience string) ([]idsync.Connection, error) {
	select {
	case <-s.fetch(space + "/" + audience):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.inner.Connections(ctx, space, audience)
}

// A batch of records of audiences not yet cached has their fetches made
// together, not one after another per worker: the records a worker is
// about to process are decoded first and their audiences prefetched.
// Every record is still delivered, in order.
func TestColdAudiencesFetchedTogether(t *testing.T) {
	e, _ := kfakeEnv(t, 1)
	e.createInput(t, 1)
	base := fixture(t)
	inner := &staticSource{conns: map[string][]idsync.Connection{}}
	const audiences = 64
	var values [][]byte
	for i := range audiences {
		aud := fmt.Sprintf("aud_cold_%02d", i)
		inner.conns["spa/"+aud] = base.conns["spa/aud_multi"]
		values = append(values, event(i, aud, "entered"))
	}
	in := produceInputs(t, e, values)
	src := &slowSource{inner: inner, delay: 50 * time.Millisecond, fetched: map[string]chan struct{}{}}
	r := start(t, e, src, nil)
	waitCommitted(t, e, 30*time.Second)
	alive(t, r)
	want := expect(t, e, inner, in, r.p.cfg.Options, r.p.cfg.Limits)
	compare(t, want, readAll(t, e, want, false))

	src.mu.Lock()
	defer src.mu.Unlock()
	// A worker prefetches a run of 16 records before it waits for the
	// first: without prefetching, at most one fetch per worker (GOMAXPROCS)
	// is in flight.
	if src.maxInFlight < 16 || src.prefetches < audiences {
		t.Errorf("at most %d fetches in flight at once, %d prefetches for %d cold audiences; want at least 16 and %d",
			src.maxInFlight, src.prefetches, audiences, audiences)
	}
}
