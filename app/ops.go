package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/idsync/idsync/pipeline"
)

// readiness says whether the instance can do its work, and if not, why.
type readiness func() (bool, string)

// waiting lists what the instance waits for: the input partitions stopped
// at a record until a cause passes, and the batch held up by its
// acknowledgements, if any.
type waiting func() ([]pipeline.Wait, time.Time)

// opsHandler serves /metrics, /healthz (the process is alive) and /readyz
// (it is ready: partitions assigned, configuration readable; followed by
// the partitions that wait, with why and since when), and with withPprof
// Go's profiler under /debug/pprof/ (ops.pprof).
func opsHandler(g prometheus.Gatherer, ready readiness, waits waiting, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	if withPprof {
		// The handlers of net/http/pprof on this mux. (Importing the
		// package also registers them on http.DefaultServeMux, which
		// idsync never serves.)
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", why)
		} else {
			fmt.Fprintln(w, "ready")
		}
		if waits != nil {
			writeWaits(w, waits)
		}
	})
	return mux
}

// server is an HTTP listener with a bounded graceful shutdown.
type server struct {
	name string
	srv  *http.Server
	ln   net.Listener
	log  *slog.Logger
	done chan error
	// scheme is http, or https when the listener serves TLS.
	scheme string
}

// listen binds addr now (so a taken port fails start-up with its name) and
// serves h in the background.
func listen(name, addr string, h http.Handler, log *slog.Logger) (*server, error) {
	return listenTLS(name, addr, h, nil, log)
}

// listenTLS is listen serving HTTPS with tc (plain HTTP when tc is nil).
func listenTLS(name, addr string, h http.Handler, tc *tls.Config, log *slog.Logger) (*server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener on %s: %w", name, addr, err)
	}
	scheme := "http"
	if tc != nil {
		ln, scheme = tls.NewListener(ln, tc), "https"
	}
	s := &server{
		name:   name,
		srv:    &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute},
		ln:     ln,
		log:    log,
		done:   make(chan error, 1),
		scheme: scheme,
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// addr is where the server listens (the bound port when addr had :0).
func (s *server) addr() string { return s.ln.Addr().String() }

// url is the server's base URL.
func (s *server) url() string { return s.scheme + "://" + s.addr() }

// shutdown stops accepting, lets requests in flight finish until ctx ends,
// then closes what is left.
func (s *server) shutdown(ctx context.Context) {
	if err := s.srv.Shutdown(ctx); err != nil {
		s.log.Warn("closing listener", "listener", s.name, "err", err)
		_ = s.srv.Close()
	}
	if err := <-s.done; err != nil {
		s.log.Warn("listener stopped", "listener", s.name, "err", err)
	}
}

// writeWaits writes the waiting partitions, oldest first, one a line:
// "waiting: <topic>/<partition> at offset <n>: <reason> for <age> (since <RFC 3339>)".
func writeWaits(w io.Writer, waits waiting) {
	ws, batch := waits()
	now := time.Now()
	for _, x := range ws {
		fmt.Fprintf(w, "waiting: %s/%d at offset %d: %s for %s (since %s)\n", x.Topic, x.Partition, x.Offset, x.Reason,
			now.Sub(x.Since).Round(time.Second), x.Since.UTC().Format(time.RFC3339))
	}
	if !batch.IsZero() && now.Sub(batch) > 5*time.Second {
		fmt.Fprintf(w, "waiting: a batch for its acknowledgements from the brokers for %s (since %s)\n",
			now.Sub(batch).Round(time.Second), batch.UTC().Format(time.RFC3339))
	}
}
