package app

import (
	"context"
	"log/slog"

	"github.com/idsync/idsync/config"
)

// KafkaLogger returns the logger the Kafka client (franz-go, through
// kslog) writes to: log with component=kafka, dropping records below
// l.KafkaLevel. log's own level still applies, so the higher of the two
// wins. kslog reports the level from Enabled, and franz-go does not even
// format a message below it.
func KafkaLogger(log *slog.Logger, l config.Log) *slog.Logger {
	h := log.With("component", "kafka").Handler()
	return slog.New(&minLevel{h: h, min: l.KafkaSlogLevel()})
}

// minLevel is a slog.Handler that drops records below min and passes the
// others to h.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m *minLevel) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= m.min && m.h.Enabled(ctx, level)
}

func (m *minLevel) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < m.min {
		return nil
	}
	return m.h.Handle(ctx, r)
}

func (m *minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &minLevel{h: m.h.WithAttrs(attrs), min: m.min}
}

func (m *minLevel) WithGroup(name string) slog.Handler {
	return &minLevel{h: m.h.WithGroup(name), min: m.min}
}
