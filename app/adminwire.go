package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/idsync/idsync/admin"
	"github.com/idsync/idsync/config"
	"github.com/idsync/idsync/internal/adminstore"
	"github.com/idsync/idsync/store"
	"github.com/idsync/idsync/webui"
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

func adminHandler(st *store.Store, rs admin.Resyncs, cfg *config.Config, tokens []admin.Token, now func() time.Time, log *slog.Logger) (http.Handler, error) {
	if len(tokens) == 0 {
		return nil, errors.New("admin.tokens: the admin API is enabled (admin.listen) but no token is configured")
	}
	tmpl, err := cfg.Kafka.TopicTemplate()
	if err != nil {
		return nil, err
	}
	srv, err := admin.New(adminstore.New(st), admin.Options{
		Tokens:       tokens,
		MaxBodyBytes: cfg.Admin.MaxBodyBytes,
		Limits:       cfg.Processing.Limits(),
		Process:      cfg.Processing.Options(),
		Topics:       tmpl,
		Activation:   cfg.Connections.Activation(),
		Resyncs:      rs,
		Now:          now,
		Logger:       log,
	})
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if cfg.Admin.Console {
		return webui.Mount(srv), nil
	}
	return srv, nil
}
