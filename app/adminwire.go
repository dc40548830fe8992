package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/idsync/idsync/admin"
	"github.com/idsync/idsync/config"
	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/store"
)

// DemoToken is the admin token of embedded mode when none is configured
// (DESIGN.md §9).
const DemoToken = "demo-token"

// adminTokens returns the configured tokens, or in embedded mode without
// any, the demo token with write scope.
func adminTokens(cfg *config.Config) []admin.Token {
	var out []admin.Token
	for _, t := range cfg.Admin.Tokens {
		out = append(out, admin.Token{Name: t.Name, Secret: t.Token, Scope: admin.Scope(t.Scope)})
	}
	if len(out) == 0 && cfg.Embedded.Enabled {
		out = append(out, admin.Token{Name: "demo", Secret: DemoToken, Scope: admin.ScopeWrite})
	}
	return out
}

func adminHandler(st *store.Store, cfg *config.Config, tokens []admin.Token, now func() time.Time, log *slog.Logger) (http.Handler, error) {
	if len(tokens) == 0 {
		return nil, errors.New("admin.tokens: the admin API is enabled (admin.listen) but no token is configured")
	}
	tmpl, err := cfg.Kafka.TopicTemplate()
	if err != nil {
		return nil, err
	}
	srv, err := admin.New(storeAdapter{st}, admin.Options{
		Tokens:       tokens,
		MaxBodyBytes: cfg.Admin.MaxBodyBytes,
		Limits:       cfg.Processing.Limits(),
		Process:      cfg.Processing.Options(),
		Topics:       tmpl,
		Activation:   cfg.Connections.Activation(),
		Now:          now,
		Logger:       log,
	})
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	return srv, nil
}

// storeAdapter gives the admin API the store, translating keys, audit
// entries and error kinds between the two packages.
type storeAdapter struct{ st *store.Store }

func (a storeAdapter) Put(ctx context.Context, k admin.Key, cfg *idsync.Config, actor string, ifMatch int64) (idsync.Version, error) {
	v, err := a.st.Put(ctx, store.Key(k), cfg, actor, ifMatch)
	return v, adminError(err)
}

func (a storeAdapter) Delete(ctx context.Context, k admin.Key, actor string, ifMatch int64) (idsync.Version, error) {
	v, err := a.st.Delete(ctx, store.Key(k), actor, ifMatch)
	return v, adminError(err)
}

func (a storeAdapter) Get(ctx context.Context, k admin.Key) (idsync.Connection, error) {
	c, err := a.st.Get(ctx, store.Key(k))
	return c, adminError(err)
}

func (a storeAdapter) List(ctx context.Context, space, audience string) ([]idsync.Connection, error) {
	cs, err := a.st.List(ctx, space, audience)
	return cs, adminError(err)
}

func (a storeAdapter) History(ctx context.Context, k admin.Key) ([]admin.AuditEntry, error) {
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
	}
	return err
}
