package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/idsync/idsync/config"
)

// TestRedisSettingsError: the PING failures that a setting causes name
// that setting; the others (Redis down) are not settings errors.
func TestRedisSettingsError(t *testing.T) {
	withCert := config.Redis{TLS: config.TLS{Enabled: true, CertFile: "c.pem", KeyFile: "c.key"}}
	for _, tc := range []struct {
		name    string
		err     error
		r       config.Redis
		setting string // "" = not a settings error
	}{
		{"no client certificate", &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}, config.Redis{}, "redis.tls.cert_file"},
		{"certificate not accepted", errors.New("remote error: tls: certificate required"), withCert, "redis.tls.cert_file"},
		{"Sentinel, no client certificate", errors.New("redis: all sentinels specified in configuration are unreachable: remote error: tls: certificate required"), config.Redis{}, "redis.tls.cert_file"},
		{"bad certificate", errors.New("remote error: tls: bad certificate"), withCert, "redis.tls.cert_file"},
		{"unknown CA", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, config.Redis{}, "redis.tls.ca_file"},
		{"wrong name", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "redis"}, config.Redis{}, "redis.tls.server_name"},
		{"not TLS", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, config.Redis{}, "redis.tls.enabled"},
		{"wrong password", errors.New("WRONGPASS invalid username-password pair or user is disabled."), config.Redis{}, "redis.password"},
		{"refused", &net.OpError{Op: "dial", Err: errors.New("connect: connection refused")}, config.Redis{}, ""},
		{"EOF", io.EOF, config.Redis{}, ""},
		{"loading", errors.New("LOADING Redis is loading the dataset in memory"), config.Redis{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			se := redisSettingsError(tc.err, tc.r)
			switch {
			case tc.setting == "" && se != nil:
				t.Errorf("a settings error naming %s, want none", se.Setting)
			case tc.setting != "" && (se == nil || se.Setting != tc.setting):
				t.Errorf("%v, want a settings error naming %s", se, tc.setting)
			case se != nil && !errors.Is(se, tc.err):
				t.Errorf("the settings error does not wrap the cause: %v", se)
			}
		})
	}
}
