package store

import (
	"encoding/json"
	"strings"
	"sync"

	"github.com/idsync/idsync/idsync"
)

// Interning bounds: strings longer than internMaxLen are not shared, and
// once internMaxEntries distinct strings are held new ones are not added.
const (
	internMaxLen     = 64
	internMaxEntries = 1 << 16
	internMaxConfigs = 1 << 13
)

// interner shares what repeats across many connections, so that a million
// cached connections do not hold a million copies of "last_added", of the
// same identifier mappings or of the same configuration: strings
// (destination types, setups, strategies, identifier types and keys, event
// names, destination ids), mapping lists, and whole configurations. It is
// bounded and safe for concurrent use; what it does not hold is returned
// unchanged. Shared values are never modified (callers of Store and Cache
// treat results as read-only).
type interner struct {
	mu       sync.Mutex
	strs     map[string]string
	mappings map[string][]idsync.Mapping
	configs  map[string]internedConfig
}

func newInterner() *interner {
	return &interner{
		strs:     make(map[string]string),
		mappings: make(map[string][]idsync.Mapping),
		configs:  make(map[string]internedConfig),
	}
}

// get returns the shared copy of s.
func (in *interner) get(s string) string {
	if s == "" || len(s) > internMaxLen {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.str(s)
}

// str is get with in.mu held.
func (in *interner) str(s string) string {
	if s == "" || len(s) > internMaxLen {
		return s
	}
	if v, ok := in.strs[s]; ok {
		return v
	}
	if len(in.strs) < internMaxEntries {
		in.strs[s] = s
	}
	return s
}

// internedConfig is a shared configuration with the result of checking it.
type internedConfig struct {
	c *idsync.Config
	// invalid says why c cannot be used, "" when it can.
	invalid string
}

// config decodes a configuration from raw, its JSON in a stored record,
// checks it (checkConfig) and returns the shared copy of it, or a new one
// with its strings and mappings shared, with why it cannot be used ("" when
// it can). A shared configuration is checked once, when it is first
// decoded, not on every read. err is the decoding error.
func (in *interner) config(raw []byte) (c *idsync.Config, invalid string, err error) {
	in.mu.Lock()
	v, ok := in.configs[string(raw)]
	in.mu.Unlock()
	if ok {
		return v.c, v.invalid, nil
	}
	c = new(idsync.Config)
	if err := json.Unmarshal(raw, c); err != nil {
		return nil, "", err
	}
	invalid = checkConfig(c)
	in.mu.Lock()
	defer in.mu.Unlock()
	c.DestinationType = idsync.DestinationType(in.str(string(c.DestinationType)))
	c.Setup = idsync.Setup(in.str(string(c.Setup)))
	c.Settings.EnterEvent = in.str(c.Settings.EnterEvent)
	c.Settings.ExitEvent = in.str(c.Settings.ExitEvent)
	c.Settings.UploadKeyType = in.str(c.Settings.UploadKeyType)
	c.Identifiers = in.mappingList(c.Identifiers)
	// A list's external_audience_id makes its configuration unique: not
	// worth a place.
	if c.ExternalAudienceID == "" && len(in.configs) < internMaxConfigs {
		in.configs[string(raw)] = internedConfig{c: c, invalid: invalid}
	}
	return c, invalid, nil
}

// checkConfig returns why a stored configuration cannot be used by this
// binary, or "": its destination type must be one it knows, and it must
// pass idsync.Validate (the rules the admin API applied when it was
// stored; a rolling upgrade or a hand edit can break them). The reason is
// idsync.Validate's: it names fields, and a configuration holds no
// identifier value to leak.
func checkConfig(c *idsync.Config) string {
	if err := idsync.Validate(c); err != nil {
		return err.Error()
	}
	if idsync.KindOf(c.DestinationType) == "" {
		// Validate refuses unknown types; this keeps the promise should
		// it ever stop doing so.
		return "destination_type: unknown destination type"
	}
	return ""
}

// mappingList returns the shared copy of ms, sized exactly. in.mu must be
// held.
func (in *interner) mappingList(ms []idsync.Mapping) []idsync.Mapping {
	if len(ms) == 0 {
		return nil
	}
	var key strings.Builder
	for _, m := range ms {
		key.WriteString(m.Segment)
		key.WriteByte(0)
		key.WriteString(m.Destination)
		key.WriteByte(0)
		key.WriteString(string(m.Strategy))
		key.WriteByte(0)
	}
	if v, ok := in.mappings[key.String()]; ok {
		return v
	}
	out := make([]idsync.Mapping, len(ms))
	for i, m := range ms {
		out[i] = idsync.Mapping{
			Segment:     in.str(m.Segment),
			Destination: in.str(m.Destination),
			Strategy:    idsync.Strategy(in.str(string(m.Strategy))),
		}
	}
	if len(in.mappings) < internMaxEntries {
		in.mappings[key.String()] = out
	}
	return out
}
