package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/config"
)

// checkRedis PINGs Redis once at start. Redis being unreachable is not an
// error (the cache waits for it and the pipeline pauses: DESIGN.md §7), but
// an answer that says a setting is wrong — the server wants a client
// certificate, its certificate is not trusted, the password is refused —
// will not mend by waiting: it is returned as a *SettingsError naming the
// setting, so that idsync stops at once with exit code 2 instead of
// running without configuration forever.
func checkRedis(ctx context.Context, rdb redis.UniversalClient, r config.Redis, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, r.DialTimeout+r.ReadTimeout)
	defer cancel()
	err := rdb.Ping(ctx).Err()
	if err == nil {
		return nil
	}
	if se := redisSettingsError(err, r); se != nil {
		return se
	}
	log.Warn("redis unreachable at start; waiting for it (uncached audiences pause their partitions)", "err", err)
	return nil
}

// redisSettingsError returns the *SettingsError that err, a failed PING,
// points at, or nil when err says nothing about the settings (Redis down,
// a network problem). go-redis does not keep every cause as a wrapped
// error (the Sentinel client keeps only its text), so TLS alerts are
// recognised by their text too.
func redisSettingsError(err error, r config.Redis) *SettingsError {
	msg := err.Error()
	var verr *tls.CertificateVerificationError
	var herr x509.HostnameError
	var rerr tls.RecordHeaderError
	switch {
	case strings.Contains(msg, "tls: certificate required"):
		if r.TLS.CertFile == "" {
			return &SettingsError{Setting: "redis.tls.cert_file", Err: fmt.Errorf("the Redis server requires a client certificate (mutual TLS): set redis.tls.cert_file and redis.tls.key_file (%w)", err)}
		}
		return &SettingsError{Setting: "redis.tls.cert_file", Err: fmt.Errorf("the Redis server did not accept the client certificate: %w", err)}
	case strings.Contains(msg, "tls: bad certificate"), strings.Contains(msg, "tls: unknown certificate authority"),
		strings.Contains(msg, "tls: certificate expired"), strings.Contains(msg, "tls: unsupported certificate"):
		return &SettingsError{Setting: "redis.tls.cert_file", Err: fmt.Errorf("the Redis server refused the client certificate: %w", err)}
	case errors.As(err, &herr), strings.Contains(msg, "x509: certificate is valid for"):
		return &SettingsError{Setting: "redis.tls.server_name", Err: fmt.Errorf("the Redis server's certificate does not name the address dialled: %w", err)}
	case errors.As(err, &verr), strings.Contains(msg, "x509: "):
		return &SettingsError{Setting: "redis.tls.ca_file", Err: fmt.Errorf("the Redis server's certificate cannot be verified: %w", err)}
	case errors.As(err, &rerr), strings.Contains(msg, "first record does not look like a TLS handshake"):
		return &SettingsError{Setting: "redis.tls.enabled", Err: fmt.Errorf("the Redis server does not answer with TLS: %w", err)}
	case redis.HasErrorPrefix(err, "WRONGPASS"), redis.HasErrorPrefix(err, "NOAUTH"),
		strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOAUTH"):
		return &SettingsError{Setting: "redis.password", Err: fmt.Errorf("the Redis server refused the credentials of redis.username and redis.password: %w", err)}
	}
	return nil
}
