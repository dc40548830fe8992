package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaConnectError is a connection to a broker that failed for a reason
// retrying cannot fix (a certificate the other side does not trust, a
// listener that does not speak TLS, a client certificate required but not
// given, TLS or SASL expected but not used), before idsync ever reached a
// broker. Run returns it instead of
// retrying forever; the command line exits 4 (Kafka unreachable).
type KafkaConnectError struct {
	Broker string // host:port
	Err    error  // the connection's error
	Hint   string // what to check, naming the settings
}

func (e *KafkaConnectError) Error() string {
	return fmt.Sprintf("kafka: connecting to broker %s: %v: %s", e.Broker, e.Err, e.Hint)
}

// Unwrap returns the connection's error.
func (e *KafkaConnectError) Unwrap() error { return e.Err }

// tlsProblem returns what to check when err is a TLS failure that retrying
// cannot fix, "" otherwise (a refused or reset connection, a timeout: a
// broker that is down or starting, which the client rides out).
func tlsProblem(err error, clientCert bool) string {
	if err == nil {
		return ""
	}
	var verr *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	var oe *net.OpError
	switch {
	case errors.As(err, &verr), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci):
		return "the broker's certificate is not trusted: set kafka.tls.ca_file to the CA that signed it (and kafka.tls.server_name if it names another host)"
	case errors.As(err, &rh):
		return "the broker does not speak TLS on this port: point kafka.brokers at its TLS listener, or set kafka.tls.enabled to false"
	case errors.As(err, &oe) && oe.Op == "remote error" && strings.Contains(oe.Err.Error(), "tls:"):
		// An alert the broker sent: with TLS 1.3 a client certificate it
		// requires and did not get, or does not trust, arrives this way.
		if !clientCert {
			return "the broker refused the handshake; it probably requires a client certificate (mutual TLS): set kafka.tls.cert_file and kafka.tls.key_file"
		}
		return "the broker refused the handshake; it probably does not trust the client certificate of kafka.tls.cert_file (signed by a CA it does not know, or expired)"
	}
	return ""
}

// eofHint is what to check when brokers close every new connection at once
// (kgo.ErrFirstReadEOF): the client speaks TLS to a plaintext listener or
// the other way round, or SASL is missing.
func eofHint(tlsEnabled bool) string {
	if tlsEnabled {
		return "the broker closes every connection at once: is kafka.brokers its TLS listener? (kafka.tls.enabled is true)"
	}
	return "the broker closes every connection at once: it probably expects TLS (kafka.tls.enabled) or SASL (kafka.sasl.mechanism)"
}

// eofsFatal is how many connections closed at once (kgo.ErrFirstReadEOF),
// and none opened, make a misconfiguration rather than a broker going down.
const eofsFatal = 3

// connWatch is a franz-go hook that turns the first unfixable connection
// failure into a KafkaConnectError passed to fail, as long as no connection to
// a broker has succeeded yet: a misconfiguration stops idsync at start with
// a clear error, while trouble later on (a broker's certificate rotated
// badly, a broker going down) is ridden out and logged like any other
// connection error.
type connWatch struct {
	tlsEnabled bool
	clientCert bool
	fail       func(error)
	connected  atomic.Bool
	eofs       atomic.Int32
	once       sync.Once
}

var _ kgo.HookBrokerConnect = (*connWatch)(nil)

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (w *connWatch) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		w.connected.Store(true)
		return
	}
	if w.connected.Load() {
		return
	}
	hint := ""
	switch {
	case w.tlsEnabled:
		hint = tlsProblem(err, w.clientCert)
	case strings.Contains(err.Error(), "appear to be a tls alert record"):
		// franz-go's reading of a plaintext request answered with a TLS
		// alert (its error has no type to match).
		hint = "the broker speaks TLS on this port: set kafka.tls.enabled (and kafka.tls.ca_file)"
	}
	var eof *kgo.ErrFirstReadEOF
	if hint == "" && errors.As(err, &eof) && w.eofs.Add(1) >= eofsFatal {
		hint = eofHint(w.tlsEnabled)
	}
	if hint != "" {
		w.once.Do(func() {
			w.fail(&KafkaConnectError{Broker: net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))), Err: err, Hint: hint})
		})
	}
}
