package store

import (
	"sync"

	"github.com/idsync/idsync/idsync"
)

// Interning bounds: strings longer than internMaxLen are not shared, and
// once internMaxEntries distinct strings are held new ones are not added.
const (
	internMaxLen     = 64
	internMaxEntries = 1 << 16
)

// interner shares the strings that repeat across many connections
// (destination types, setups, strategies, identifier types and keys, event
// names, destination ids), so that a million cached connections do not hold
// a million copies of "last_added". It is bounded and safe for concurrent
// use; a string it does not hold is returned unchanged.
type interner struct {
	mu sync.Mutex
	m  map[string]string
}

func newInterner() *interner {
	return &interner{m: make(map[string]string)}
}

// get returns the shared copy of s.
func (in *interner) get(s string) string {
	if s == "" || len(s) > internMaxLen {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.m[s]; ok {
		return v
	}
	if len(in.m) < internMaxEntries {
		in.m[s] = s
	}
	return s
}

// config replaces c's repeated strings with shared copies and trims its
// mapping slice to its length.
func (in *interner) config(c *idsync.Config) {
	c.DestinationType = idsync.DestinationType(in.get(string(c.DestinationType)))
	c.Setup = idsync.Setup(in.get(string(c.Setup)))
	c.Settings.EnterEvent = in.get(c.Settings.EnterEvent)
	c.Settings.ExitEvent = in.get(c.Settings.ExitEvent)
	c.Settings.UploadKeyType = in.get(c.Settings.UploadKeyType)
	if len(c.Identifiers) == 0 {
		c.Identifiers = nil
		return
	}
	ids := make([]idsync.Mapping, len(c.Identifiers))
	for i, m := range c.Identifiers {
		ids[i] = idsync.Mapping{
			Segment:     in.get(m.Segment),
			Destination: in.get(m.Destination),
			Strategy:    idsync.Strategy(in.get(string(m.Strategy))),
		}
	}
	c.Identifiers = ids
}
