package admin

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/idsync/idsync/idsync"
)

// fakeStore is an in-memory Store with the store's rules: versions by
// idsync.Activation.Edit, If-Match against the newest version, an audit log
// newest first. failNext makes the next call return that error.
type fakeStore struct {
	mu       sync.Mutex
	act      idsync.Activation
	now      func() time.Time
	conns    map[Key][]idsync.Version
	audit    map[Key][]AuditEntry
	edits    int // successful Put and Delete calls
	failNext error
}

func newFakeStore(act idsync.Activation, now func() time.Time) *fakeStore {
	return &fakeStore{act: act, now: now, conns: map[Key][]idsync.Version{}, audit: map[Key][]AuditEntry{}}
}

func (f *fakeStore) fail() error {
	err := f.failNext
	f.failNext = nil
	return err
}

func (f *fakeStore) edit(k Key, cfg *idsync.Config, actor string, ifMatch int64) (idsync.Version, error) {
	if err := f.fail(); err != nil {
		return idsync.Version{}, err
	}
	old := f.conns[k]
	now := f.now()
	if ifMatch > 0 && (len(old) == 0 || old[len(old)-1].Version != ifMatch) {
		return idsync.Version{}, fmt.Errorf("fake: %w", ErrPreconditionFailed)
	}
	if ifMatch == IfAbsent && idsync.Current(f.act.Prune(old, now), now) {
		return idsync.Version{}, fmt.Errorf("fake: %w", ErrPreconditionFailed)
	}
	versions, v, err := f.act.Edit(old, cfg, now)
	if err != nil {
		return idsync.Version{}, err
	}
	var prev *idsync.Config // the newest version's, as the store records it
	if n := len(old); n > 0 {
		prev = old[n-1].Config
	}
	action := "put"
	if cfg == nil {
		action = "delete"
	}
	f.conns[k] = versions
	f.audit[k] = append([]AuditEntry{{Version: v.Version, Action: action, Actor: actor, At: now, EffectiveAt: v.EffectiveAt, Old: prev, New: cfg}}, f.audit[k]...)
	f.edits++
	return v, nil
}

func (f *fakeStore) Put(_ context.Context, k Key, cfg *idsync.Config, actor string, ifMatch int64) (idsync.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.edit(k, cfg, actor, ifMatch)
}

func (f *fakeStore) Delete(_ context.Context, k Key, actor string, ifMatch int64) (idsync.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.edit(k, nil, actor, ifMatch)
}

func (f *fakeStore) Get(_ context.Context, k Key) (idsync.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail(); err != nil {
		return idsync.Connection{}, err
	}
	v, ok := f.conns[k]
	if !ok {
		return idsync.Connection{}, idsync.ErrNotFound
	}
	return idsync.Connection{DestinationID: k.Destination, Versions: slices.Clone(v)}, nil
}

func (f *fakeStore) List(_ context.Context, space, audience string) ([]idsync.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail(); err != nil {
		return nil, err
	}
	var out []idsync.Connection
	for k, v := range f.conns {
		if k.Space == space && k.Audience == audience {
			out = append(out, idsync.Connection{DestinationID: k.Destination, Versions: slices.Clone(v)})
		}
	}
	return out, nil
}

func (f *fakeStore) History(_ context.Context, k Key) ([]AuditEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail(); err != nil {
		return nil, err
	}
	return slices.Clone(f.audit[k]), nil
}

func (f *fakeStore) editCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.edits
}
