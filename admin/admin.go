// Package admin serves idsync's admin API (DESIGN.md §9): HTTP JSON to
// create, read, edit and delete connections and their ID Sync
// configuration, read their audit log, list the destination types, and
// preview what idsync would do with an event under a configuration.
//
// The package authenticates and authorizes calls with bearer tokens,
// validates input with the idsync domain package and talks to the connection
// store through the small Store interface it declares. It does not listen
// (the caller mounts Server on its own listener), store anything itself, or
// touch Kafka: preview runs idsync.Process in memory.
package admin

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/idsync/idsync/idsync"
)

// Scope is what a token may do.
type Scope string

// The scopes. Write implies read.
const (
	// ScopeRead allows GET requests and POST /v1/preview.
	ScopeRead Scope = "read"
	// ScopeWrite allows everything, including PUT and DELETE of connections.
	ScopeWrite Scope = "write"
)

// allows reports whether a token of scope s may make a call needing need.
func (s Scope) allows(need Scope) bool {
	return s == ScopeWrite || (s == ScopeRead && need == ScopeRead)
}

// Token is one API credential. Name identifies it in logs and as the audit
// actor; Secret is what clients send as "Authorization: Bearer <Secret>" and
// is never logged.
type Token struct {
	Name   string
	Secret string
	Scope  Scope
}

// DefaultMaxBodyBytes is the largest request body accepted by default.
const DefaultMaxBodyBytes = 1 << 20

// DefaultTopicTemplate is the output topic template preview reports when
// Options.Topics is unset.
const DefaultTopicTemplate = "idsync.dest.{destination_id}"

// Options configure a Server. Zero fields take their defaults.
type Options struct {
	// Tokens are the accepted credentials; at least one is required, names
	// and secrets must be unique.
	Tokens []Token
	// MaxBodyBytes bounds request bodies (default 1 MiB); larger bodies get
	// 413.
	MaxBodyBytes int64
	// Limits bound the events preview decodes (zero fields take
	// idsync.DefaultLimits).
	Limits idsync.Limits
	// Process tunes preview's idsync.Process (default
	// idsync.DefaultOptions()): pass the pipeline's, so that preview shapes
	// as the pipeline does. Preview lowers its bounds to its own (see
	// PreviewOptions); a zero MaxRecordBytes, MaxOutputBytes,
	// MaxEventOutputBytes or MaxFacebookRows takes preview's.
	Process idsync.Options
	// Topics names the output topic preview reports (default
	// DefaultTopicTemplate).
	Topics idsync.TopicTemplate
	// Activation is the timing rule the store applies (default
	// idsync.DefaultActivation()). The server uses it to leave versions
	// past retention out of what it shows.
	Activation idsync.Activation
	// Now is the clock (default time.Now). It decides which version is
	// active or pending, and is preview's processor clock.
	Now func() time.Time
	// Resyncs runs resyncs (docs/resync.md); nil: the resync routes answer
	// 503, as this server cannot start one.
	Resyncs Resyncs
	// Logger receives one line per request and the details of store
	// failures (default: discard). No line holds a token secret, a request
	// body or a path id.
	Logger *slog.Logger
}

// Preview's own bounds. POST /v1/preview needs only read scope and answers
// with every record in its body, so it must not be an amplifier: a 24 KB
// request once made a 175 MB response and 1.78 GB of allocation. Whatever
// the pipeline allows, preview shapes at most this much for its one
// destination, and answers with the dead letter beyond (fanout_limit or
// output_too_large, as the pipeline would at its own bounds).
//
// With them a response holds at most PreviewMaxOutputBytes of record
// values, as much again of record keys (a key, the profile's segment_id, is
// also inside its value), and per record (at most PreviewMaxCombinations) a
// few hundred bytes of topic and headers: about 2 MiB. An event well within
// them is shaped exactly as the pipeline shapes it (only a record of nearly
// PreviewMaxOutputBytes can be split by PreviewMaxRecordBytes where the
// pipeline would not split it).
const (
	// PreviewMaxCombinations bounds the records (idsync.Options.MaxCombinations).
	PreviewMaxCombinations = 100
	// PreviewMaxFacebookRows bounds the Facebook rows (MaxFacebookRows).
	PreviewMaxFacebookRows = 10000
	// PreviewMaxRecordBytes bounds one record's key and value (MaxRecordBytes).
	PreviewMaxRecordBytes = 1 << 20
	// PreviewMaxOutputBytes bounds the records' values (MaxOutputBytes and
	// MaxEventOutputBytes: preview has one destination).
	PreviewMaxOutputBytes = 1 << 20
)

// PreviewOptions returns the options preview runs idsync.Process with: the
// pipeline's p with each bound lowered to preview's own, and preview's own
// where p leaves a bound zero. The other fields (rows per Facebook record,
// phone region) are p's, so preview shapes as the pipeline does.
func PreviewOptions(p idsync.Options) idsync.Options {
	lower := func(v, most int) int {
		if v <= 0 || v > most {
			return most
		}
		return v
	}
	p.MaxCombinations = lower(p.MaxCombinations, PreviewMaxCombinations)
	p.MaxFacebookRows = lower(p.MaxFacebookRows, PreviewMaxFacebookRows)
	p.MaxRecordBytes = lower(p.MaxRecordBytes, PreviewMaxRecordBytes)
	p.MaxOutputBytes = lower(p.MaxOutputBytes, PreviewMaxOutputBytes)
	p.MaxEventOutputBytes = lower(p.MaxEventOutputBytes, PreviewMaxOutputBytes)
	return p
}

// Server is the admin API's http.Handler. It is safe for concurrent use.
type Server struct {
	st  Store
	opt Options
	// previewOpt is what preview runs idsync.Process with: PreviewOptions
	// of opt.Process.
	previewOpt idsync.Options
	tokens     []tokenHash
	mux        *http.ServeMux
	// endpoints lists every method and pattern handle registered, with
	// the scope it needs, in registration order: what openapi.yaml must
	// document (schemas/openapi.yaml; the admin tests compare the two).
	endpoints []endpointInfo
	log       *slog.Logger
}

// endpointInfo is one registered method of a route pattern.
type endpointInfo struct {
	method, pattern string
	scope           Scope
}

// tokenHash is a token with its secret's SHA-256, so that every comparison
// is of equal length.
type tokenHash struct {
	name  string
	scope Scope
	sum   [sha256.Size]byte
}

// New returns a Server over st. It checks opt and applies the defaults; an
// invalid option is an error naming it.
func New(st Store, opt Options) (*Server, error) {
	if st == nil {
		return nil, errors.New("admin: nil store")
	}
	if len(opt.Tokens) == 0 {
		return nil, errors.New("admin: no tokens configured")
	}
	names := map[string]bool{}
	secrets := map[string]bool{}
	tokens := make([]tokenHash, 0, len(opt.Tokens))
	for i, t := range opt.Tokens {
		switch {
		case t.Name == "":
			return nil, fmt.Errorf("admin: tokens[%d]: name is required", i)
		case t.Secret == "":
			return nil, fmt.Errorf("admin: token %q: secret is required", t.Name)
		case t.Scope != ScopeRead && t.Scope != ScopeWrite:
			return nil, fmt.Errorf("admin: token %q: scope %q must be read or write", t.Name, t.Scope)
		case names[t.Name]:
			return nil, fmt.Errorf("admin: token name %q is used twice", t.Name)
		case secrets[t.Secret]:
			return nil, fmt.Errorf("admin: token %q has the same secret as another token", t.Name)
		}
		names[t.Name], secrets[t.Secret] = true, true
		tokens = append(tokens, tokenHash{name: t.Name, scope: t.Scope, sum: sha256.Sum256([]byte(t.Secret))})
	}
	if opt.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("admin: max body bytes %d is negative", opt.MaxBodyBytes)
	}
	if opt.MaxBodyBytes == 0 {
		opt.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opt.Process == (idsync.Options{}) {
		opt.Process = idsync.DefaultOptions()
	}
	previewOpt := PreviewOptions(opt.Process)
	if err := previewOpt.Check(); err != nil {
		return nil, fmt.Errorf("admin: process options: %w", err)
	}
	if opt.Topics == (idsync.TopicTemplate{}) {
		t, err := idsync.ParseTopicTemplate(DefaultTopicTemplate)
		if err != nil {
			return nil, fmt.Errorf("admin: default topic template: %w", err)
		}
		opt.Topics = t
	}
	if opt.Activation == (idsync.Activation{}) {
		opt.Activation = idsync.DefaultActivation()
	}
	if err := opt.Activation.Check(); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{st: st, opt: opt, previewOpt: previewOpt, tokens: tokens, log: log}
	s.routes()
	return s, nil
}
