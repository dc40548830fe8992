package app

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves a PEM certificate and key from files, read again when
// either file changes (its modification time or size), so that a renewed
// certificate (cert-manager, a mounted Secret) is served without a
// restart. A file that cannot be read or paired after a change leaves the
// previous certificate in use, with a warning.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu    sync.Mutex
	stamp [2]fileStamp
	cert  *tls.Certificate
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// newCertReloader reads the pair once; an error names the settings.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("admin.tls_cert_file and admin.tls_key_file: %w", err)
	}
	return r, nil
}

func (r *certReloader) load() error {
	s1, err1 := stampOf(r.certFile)
	s2, err2 := stampOf(r.keyFile)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("reading the certificate files: %v %v", err1, err2)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert, r.stamp = &cert, [2]fileStamp{s1, s2}
	return nil
}

// get is tls.Config.GetCertificate.
func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s1, err1 := stampOf(r.certFile)
	s2, err2 := stampOf(r.keyFile)
	if err1 == nil && err2 == nil && [2]fileStamp{s1, s2} != r.stamp {
		if err := r.load(); err != nil {
			r.log.Warn("admin TLS certificate changed but cannot be used; serving the previous one", "err", err)
			r.stamp = [2]fileStamp{s1, s2} // warn once per change
		} else {
			r.log.Info("admin TLS certificate reloaded", "file", r.certFile)
		}
	}
	return r.cert, nil
}

// tlsConfig is the admin listener's TLS configuration.
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{GetCertificate: r.get, MinVersion: tls.VersionTLS12}
}
