package idsync

import (
	"hash/maphash"
	"sync"
)

// phoneMemo remembers recent phone parses: (default region, trimmed raw
// value) → E.164 form, or the reason it was refused. Parsing with
// libphonenumber costs 15–20 µs a number (most of it a case-insensitive
// regular expression looking for an extension), and a profile's phones
// come back in every event about it and once per destination that sends
// phones, so the same few strings are parsed over and over.
//
// The memo is bounded and holds no clock: it is split in phoneMemoShards
// shards, each with two generations of at most phoneMemoGeneration entries;
// when the current generation is full it becomes the previous one and the
// old previous one is dropped, so at most 2 × phoneMemoShards ×
// phoneMemoGeneration entries (about 64 Ki, a few MiB) are kept and the
// entries used recently survive (a hit in the previous generation is
// copied into the current one). It is safe for concurrent use. A result
// depends only on its key and the bundled metadata, so the memo never
// changes what Process returns, only how fast.
type phoneMemo struct {
	seed   maphash.Seed
	shards [phoneMemoShards]phoneMemoShard
}

const (
	phoneMemoShards     = 16
	phoneMemoGeneration = 2048
)

type phoneMemoShard struct {
	mu        sync.Mutex
	cur, prev map[phoneKey]phoneParse
}

type phoneKey struct{ region, raw string }

// phoneParse is a memoized parse: e164 when err is nil.
type phoneParse struct {
	e164 string
	err  error
}

var phones = newPhoneMemo()

func newPhoneMemo() *phoneMemo {
	return &phoneMemo{seed: maphash.MakeSeed()}
}

func (m *phoneMemo) shard(k phoneKey) *phoneMemoShard {
	h := maphash.String(m.seed, k.raw)
	return &m.shards[h%phoneMemoShards]
}

// get returns the memoized parse of k, if any.
func (m *phoneMemo) get(k phoneKey) (phoneParse, bool) {
	s := m.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.cur[k]; ok {
		return p, true
	}
	if p, ok := s.prev[k]; ok {
		s.putLocked(k, p)
		return p, true
	}
	return phoneParse{}, false
}

// put remembers the parse of k.
func (m *phoneMemo) put(k phoneKey, p phoneParse) {
	s := m.shard(k)
	s.mu.Lock()
	s.putLocked(k, p)
	s.mu.Unlock()
}

func (s *phoneMemoShard) putLocked(k phoneKey, p phoneParse) {
	if s.cur == nil {
		s.cur = make(map[phoneKey]phoneParse)
	}
	if len(s.cur) >= phoneMemoGeneration {
		s.prev, s.cur = s.cur, make(map[phoneKey]phoneParse, phoneMemoGeneration/4)
	}
	s.cur[k] = p
}
