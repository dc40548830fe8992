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
// The memo is bounded in entries and in bytes and holds no clock:
//   - only raw values of at most phoneMemoMaxRaw bytes are remembered
//     (a phone number, even formatted with an extension, is far shorter;
//     longer values are parsed every time, and above 250 bytes
//     libphonenumber refuses them at once);
//   - it is split in phoneMemoShards shards, each with two generations of
//     at most phoneMemoGeneration entries and phoneMemoGenerationBytes
//     bytes (an entry counts its raw value, its E.164 form and
//     phoneMemoEntryOverhead for its share of the map); when the current
//     generation is full it becomes the previous one and the old previous
//     one is dropped.
//
// So at most phoneMemoMaxBytes (12 MiB) are kept, whatever the input, and
// the entries used recently survive (a hit in the previous generation is
// copied into the current one). It is safe for concurrent use. A result
// depends only on its key and the bundled metadata, so the memo never
// changes what Process returns, only how fast.
type phoneMemo struct {
	seed   maphash.Seed
	shards [phoneMemoShards]phoneMemoShard
}

const (
	phoneMemoShards          = 16
	phoneMemoGeneration      = 2048
	phoneMemoGenerationBytes = 384 << 10
	// phoneMemoMaxRaw bounds the raw values remembered.
	phoneMemoMaxRaw = 64
	// phoneMemoEntryOverhead is an entry's share of the map beyond its
	// strings: its key and value headers (64 bytes), the map's control
	// bytes and free slots (about 155 bytes in all, measured), rounded up.
	phoneMemoEntryOverhead = 160
	// phoneMemoMaxBytes bounds what the memo keeps, as it counts it.
	phoneMemoMaxBytes = 2 * phoneMemoShards * phoneMemoGenerationBytes
)

type phoneMemoShard struct {
	mu        sync.Mutex
	cur, prev map[phoneKey]phoneParse
	// curBytes and prevBytes are the generations' sizes as entryBytes
	// counts them.
	curBytes, prevBytes int
}

type phoneKey struct{ region, raw string }

// phoneParse is a memoized parse: e164 when err is nil.
type phoneParse struct {
	e164 string
	err  error
}

// entryBytes is what an entry counts against phoneMemoGenerationBytes. The
// region is not counted: it is the normalizer's own string, shared by
// every entry.
func entryBytes(k phoneKey, p phoneParse) int {
	return len(k.raw) + len(p.e164) + phoneMemoEntryOverhead
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
	if len(k.raw) > phoneMemoMaxRaw {
		return phoneParse{}, false
	}
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

// put remembers the parse of k, unless k's raw value is too long to be
// worth it.
func (m *phoneMemo) put(k phoneKey, p phoneParse) {
	if len(k.raw) > phoneMemoMaxRaw {
		return
	}
	s := m.shard(k)
	s.mu.Lock()
	s.putLocked(k, p)
	s.mu.Unlock()
}

func (s *phoneMemoShard) putLocked(k phoneKey, p phoneParse) {
	if s.cur == nil {
		s.cur = make(map[phoneKey]phoneParse)
	}
	size := entryBytes(k, p)
	if len(s.cur) >= phoneMemoGeneration || s.curBytes+size > phoneMemoGenerationBytes {
		s.prev, s.cur = s.cur, make(map[phoneKey]phoneParse, phoneMemoGeneration/4)
		s.prevBytes, s.curBytes = s.curBytes, 0
	}
	s.cur[k] = p
	s.curBytes += size
}

// stats returns the entries the memo holds and their bytes as it counts
// them.
func (m *phoneMemo) stats() (entries, bytes int) {
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		entries += len(s.cur) + len(s.prev)
		bytes += s.curBytes + s.prevBytes
		s.mu.Unlock()
	}
	return entries, bytes
}
