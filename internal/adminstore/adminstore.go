// Package adminstore serves the admin API from the Redis connection store:
// it converts keys and audit entries between the two packages and marks the
// store's errors with the admin package's kinds. The admin package declares
// what it needs and does not import the store; this is the one adapter
// between them, used by the service's wiring and by tests.
package adminstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/idsync/idsync/admin"
	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/store"
)

// New returns s as an admin.Store.
func New(s *store.Store) admin.Store { return adapter{s} }

type adapter struct{ st *store.Store }

func (a adapter) Put(ctx context.Context, k admin.Key, cfg *idsync.Config, actor string, ifMatch int64) (idsync.Version, error) {
	v, err := a.st.Put(ctx, store.Key(k), cfg, actor, ifMatch)
	return v, adminError(err)
}

func (a adapter) Delete(ctx context.Context, k admin.Key, actor string, ifMatch int64) (idsync.Version, error) {
	v, err := a.st.Delete(ctx, store.Key(k), actor, ifMatch)
	return v, adminError(err)
}

func (a adapter) Get(ctx context.Context, k admin.Key) (idsync.Connection, error) {
	c, err := a.st.Get(ctx, store.Key(k))
	return c, adminError(err)
}

func (a adapter) List(ctx context.Context, space, audience string) ([]idsync.Connection, error) {
	cs, err := a.st.List(ctx, space, audience)
	return cs, adminError(err)
}

func (a adapter) History(ctx context.Context, k admin.Key) ([]admin.AuditEntry, error) {
	es, err := a.st.History(ctx, store.Key(k))
	if err != nil {
		return nil, adminError(err)
	}
	out := make([]admin.AuditEntry, len(es))
	for i, e := range es {
		out[i] = admin.AuditEntry(e)
	}
	return out, nil
}

// adminError marks a store error with the admin package's kind of it.
func adminError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%w: %w", admin.ErrConflict, err)
	case errors.Is(err, store.ErrPreconditionFailed):
		return fmt.Errorf("%w: %w", admin.ErrPreconditionFailed, err)
	case errors.Is(err, store.ErrInvalidKey):
		return fmt.Errorf("%w: %w", admin.ErrInvalidKey, err)
	case errors.Is(err, store.ErrNotReplicated):
		return fmt.Errorf("%w: %w", admin.ErrNotConfirmed, err)
	}
	return err
}
