package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"log/slog"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/idsync"
)

// Limits returns the decoding limits for idsync.Decode.
func (p Processing) Limits() idsync.Limits {
	return idsync.Limits{
		MaxRecordBytes: p.MaxRecordBytes,
		MaxExternalIDs: p.MaxExternalIDs,
		MaxFutureSkew:  p.MaxFutureSkew,
	}
}

// Options returns the options for idsync.Process set by processing.*;
// what is not configurable (rows per Facebook record) keeps
// idsync.DefaultOptions, and so does MaxRecordBytes, which comes from a
// kafka.* setting: Config.ProcessOptions sets it too and is what the
// pipeline takes.
func (p Processing) Options() idsync.Options {
	o := idsync.DefaultOptions()
	o.MaxCombinations = p.MaxCombinations
	o.PhoneRegion = p.PhoneRegion
	o.MaxOutputBytes = p.MaxOutputBytes
	o.MaxEventOutputBytes = p.MaxEventOutputBytes
	o.MaxFacebookRows = p.MaxFacebookRows
	return o
}

// RecordOverheadBytes is the room kept in a produced record batch for
// what is not an output record's key and value: the record's headers
// (idsync-source, idsync-config-version) and the batch and record framing.
const RecordOverheadBytes = 1 << 10

// MinProducerBatchMaxBytes is the smallest kafka.producer_batch_max_bytes
// accepted: RecordOverheadBytes plus 1 KiB, the least an output record
// (its envelope and a short key) needs.
const MinProducerBatchMaxBytes = RecordOverheadBytes + 1<<10

// ProcessOptions returns the options for idsync.Process: Processing.Options
// with MaxRecordBytes, the bound of one output record's key and value,
// derived from kafka.producer_batch_max_bytes less RecordOverheadBytes, so
// that every record idsync makes fits in a batch the producer may send.
func (c *Config) ProcessOptions() idsync.Options {
	o := c.Processing.Options()
	o.MaxRecordBytes = c.Kafka.ProducerBatchMaxBytes - RecordOverheadBytes
	return o
}

// Activation returns the activation rules of configuration versions.
func (c Connections) Activation() idsync.Activation {
	return idsync.Activation{Delay: c.ActivationDelay, RetainSuperseded: c.RetainSuperseded}
}

// TopicTemplate parses OutputTopicTemplate. After Validate it cannot fail.
func (k Kafka) TopicTemplate() (idsync.TopicTemplate, error) {
	return idsync.ParseTopicTemplate(k.OutputTopicTemplate)
}

// TLSConfig returns the TLS client configuration of the Kafka connections,
// or nil when kafka.tls.enabled is false. It reads the CA and certificate
// files; an error is an *Error naming the setting and path.
func (k Kafka) TLSConfig() (*tls.Config, error) {
	return k.TLS.config("kafka.tls")
}

// TLSConfig returns the TLS client configuration of the Redis connections,
// or nil when redis.tls.enabled is false. It reads the CA and certificate
// files; an error is an *Error naming the setting and path.
func (r Redis) TLSConfig() (*tls.Config, error) {
	return r.TLS.config("redis.tls")
}

func (t TLS) config(key string) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	var ps problems
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // an explicit, documented setting for tests
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		switch {
		case err != nil:
			ps.add(key+".ca_file", "reading %q: %v", t.CAFile, pathErr(err))
		default:
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				ps.add(key+".ca_file", "%q holds no PEM certificate", t.CAFile)
			}
			cfg.RootCAs = pool
		}
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			ps.add(key+".cert_file", "loading %q with key %q: %v", t.CertFile, t.KeyFile, pathErr(err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// pathErr drops the path from a file error (the message names it already).
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// The Redis deployment modes, chosen by redis.addrs and redis.master_name.
const (
	RedisStandalone = "standalone"
	RedisCluster    = "cluster"
	RedisSentinel   = "sentinel"
)

// Mode returns RedisSentinel when MasterName is set, RedisCluster with
// several addresses, RedisStandalone otherwise — the client
// redis.NewUniversalClient builds from UniversalOptions.
func (r Redis) Mode() string {
	switch {
	case r.MasterName != "":
		return RedisSentinel
	case len(r.Addrs) > 1:
		return RedisCluster
	}
	return RedisStandalone
}

// UniversalOptions returns the options for redis.NewUniversalClient, which
// builds a standalone, cluster or sentinel client as Mode says. It reads the
// TLS files (see TLSConfig). Pool sizes and retries keep go-redis defaults.
func (r Redis) UniversalOptions() (*redis.UniversalOptions, error) {
	tc, err := r.TLSConfig()
	if err != nil {
		return nil, err
	}
	o := &redis.UniversalOptions{
		Addrs:        append([]string(nil), r.Addrs...),
		DB:           r.DB,
		Username:     r.Username,
		Password:     r.Password,
		MasterName:   r.MasterName,
		DialTimeout:  r.DialTimeout,
		ReadTimeout:  r.ReadTimeout,
		WriteTimeout: r.WriteTimeout,
		TLSConfig:    tc,
	}
	if r.MasterName != "" {
		o.SentinelPassword = r.SentinelPassword
	}
	return o, nil
}

// SlogLevel returns Level as a slog.Level (info for an invalid level, which
// Validate refuses).
func (l Log) SlogLevel() slog.Level {
	return slogLevel(l.Level)
}

// KafkaSlogLevel returns KafkaLevel as a slog.Level (info for an invalid
// level, which Validate refuses).
func (l Log) KafkaSlogLevel() slog.Level {
	return slogLevel(l.KafkaLevel)
}

// Text reports whether the log is to be text rather than JSON: Format is
// text, or auto and terminal says the log goes to a terminal.
func (l Log) Text(terminal bool) bool {
	return l.Format == LogText || (l.Format == LogAuto && terminal)
}

func slogLevel(level string) slog.Level {
	switch level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
