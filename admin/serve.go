package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/idsync/idsync/idsync"
)

// Route patterns. The server matches paths with http.ServeMux and methods
// itself, so that 404 and 405 answers are JSON like every other error.
const (
	patternConnection  = "/v1/spaces/{space}/audiences/{audience}/connections/{destination}"
	patternConnections = "/v1/spaces/{space}/audiences/{audience}/connections"
	patternHistory     = "/v1/spaces/{space}/audiences/{audience}/connections/{destination}/history"
	patternTypes       = "/v1/destination-types"
	patternPreview     = "/v1/preview"
	patternWhoami      = "/v1/whoami"
	patternResyncStart = "/v1/spaces/{space}/audiences/{audience}/connections/{destination}/resync"
	patternResyncList  = "/v1/spaces/{space}/audiences/{audience}/connections/{destination}/resyncs"
	patternResync      = "/v1/resyncs/{id}"
)

// endpoint is one method of a route.
type endpoint struct {
	method  string
	scope   Scope
	handler func(http.ResponseWriter, *http.Request, *call)
}

// call is what the server knows about a request while serving it.
type call struct {
	token string // the token's name: the audit actor and the log's "token"
	scope Scope
	route string // "METHOD pattern", for the log
}

type callKey struct{}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.handle(patternConnection,
		endpoint{http.MethodGet, ScopeRead, s.getConnection},
		endpoint{http.MethodPut, ScopeWrite, s.putConnection},
		endpoint{http.MethodDelete, ScopeWrite, s.deleteConnection})
	s.handle(patternConnections, endpoint{http.MethodGet, ScopeRead, s.listConnections})
	s.handle(patternHistory, endpoint{http.MethodGet, ScopeRead, s.history})
	s.handle(patternTypes, endpoint{http.MethodGet, ScopeRead, s.types})
	s.handle(patternPreview, endpoint{http.MethodPost, ScopeRead, s.preview})
	s.handle(patternWhoami, endpoint{http.MethodGet, ScopeRead, s.whoami})
	s.handle(patternResyncStart, endpoint{http.MethodPost, ScopeWrite, s.startResync})
	s.handle(patternResyncList, endpoint{http.MethodGet, ScopeRead, s.listResyncs})
	s.handle(patternResync,
		endpoint{http.MethodGet, ScopeRead, s.getResync},
		endpoint{http.MethodDelete, ScopeWrite, s.cancelResync})
}

// whoamiView answers GET /v1/whoami: the calling token's name and scope, so
// that a client (the web console) can sign in and show what it may do.
type whoamiView struct {
	Name  string `json:"name"`
	Scope Scope  `json:"scope"`
	// ActivationDelaySeconds is how long after an edit of an existing
	// connection the new version takes effect (the first version of a
	// connection is effective at once).
	ActivationDelaySeconds float64 `json:"activation_delay_seconds"`
	// ServerTime is the server's clock, so that a client can count down to
	// effective_at times without trusting its own clock.
	ServerTime time.Time `json:"server_time"`
}

func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, c *call) {
	writeJSON(w, http.StatusOK, whoamiView{Name: c.token, Scope: c.scope,
		ActivationDelaySeconds: s.opt.Activation.Delay.Seconds(), ServerTime: s.opt.Now().UTC()})
}

// handle registers pattern for any method and dispatches on the method:
// an unknown one gets 405 with Allow, an insufficient scope 403. Every
// route goes through it, so that s.endpoints lists them all.
func (s *Server) handle(pattern string, eps ...endpoint) {
	methods := make([]string, len(eps))
	for i, e := range eps {
		methods[i] = e.method
		s.endpoints = append(s.endpoints, endpointInfo{method: e.method, pattern: pattern, scope: e.scope})
	}
	allow := strings.Join(methods, ", ")
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		c, ok := r.Context().Value(callKey{}).(*call)
		if !ok {
			writeError(w, http.StatusInternalServerError, "internal error", nil)
			return
		}
		for _, e := range eps {
			if e.method != r.Method {
				continue
			}
			c.route = r.Method + " " + pattern
			if !c.scope.allows(e.scope) {
				writeError(w, http.StatusForbidden, "token "+c.token+" has scope "+string(c.scope)+"; this call needs scope "+string(e.scope), nil)
				return
			}
			e.handler(w, r, c)
			return
		}
		c.route = pattern
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed; allowed: "+allow, nil)
	})
}

// Pattern returns the route pattern r matches (such as
// "/v1/spaces/{space}/audiences/{audience}/connections"), whatever its
// method and credentials, or "" when it matches none. It is a label that
// never holds an id, for request metrics.
func (s *Server) Pattern(r *http.Request) string {
	_, pattern := s.mux.Handler(r)
	return pattern
}

// ServeHTTP authenticates the request, routes it, serves it and logs one
// line about it. It never panics: a panic in a handler is logged and
// answered with 500.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	c := &call{route: "-", token: "-"}
	defer s.finish(sw, r, c, start)

	tok, ok := s.authenticate(r)
	if !ok {
		sw.Header().Set("WWW-Authenticate", `Bearer realm="idsync"`)
		writeError(sw, http.StatusUnauthorized, "missing or invalid bearer token", nil)
		return
	}
	c.token, c.scope = tok.name, tok.scope
	if _, pattern := s.mux.Handler(r); pattern == "" {
		writeError(sw, http.StatusNotFound, "no such endpoint", nil)
		return
	}
	s.mux.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
}

// finish recovers from a handler panic and writes the request's log line.
// The line names the method, the route pattern (never the path, which holds
// ids), the status, the duration and the token's name.
func (s *Server) finish(sw *statusWriter, r *http.Request, c *call, start time.Time) {
	if v := recover(); v != nil {
		if v == http.ErrAbortHandler {
			panic(v)
		}
		s.log.Error("admin: handler panic", "route", c.route, "panic", v)
		if sw.status == 0 {
			writeError(sw, http.StatusInternalServerError, "internal error", nil)
		}
	}
	status := sw.status
	if status == 0 {
		status = http.StatusOK
	}
	method := r.Method
	if len(method) > 16 {
		method = method[:16]
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "admin request",
		slog.String("method", method),
		slog.String("route", c.route),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(start)),
		slog.String("token", c.token))
}

// authenticate finds the token of the request's bearer credential. Secrets
// are compared as SHA-256 digests with crypto/subtle, against every token
// without an early exit, so the time taken says nothing about how close a
// guess was or which token matched.
func (s *Server) authenticate(r *http.Request) (tokenHash, bool) {
	h := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return tokenHash{}, false
	}
	secret = strings.TrimSpace(secret)
	if secret == "" {
		return tokenHash{}, false
	}
	sum := sha256.Sum256([]byte(secret))
	found := -1
	for i := range s.tokens {
		eq := subtle.ConstantTimeCompare(sum[:], s.tokens[i].sum[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return tokenHash{}, false
	}
	return s.tokens[found], true
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// errorBody is every error response: a message and, for invalid input, the
// problems with their field paths.
type errorBody struct {
	Error    string           `json:"error"`
	Problems []idsync.Problem `json:"problems,omitempty"`
}

func writeError(w http.ResponseWriter, status int, msg string, problems []idsync.Problem) {
	writeJSON(w, status, errorBody{Error: msg, Problems: problems})
}

// writeJSON writes v as the response. HTML characters are not escaped, so
// the envelopes preview embeds keep their bytes.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":"internal error"}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// storeError answers a failed store call: the expected conditions with
// their status, anything else with 500 and the error in the log.
func (s *Server) storeError(w http.ResponseWriter, c *call, op string, err error) {
	var ve *idsync.ValidationError
	switch {
	case errors.As(err, &ve):
		writeError(w, http.StatusBadRequest, "invalid connection configuration", ve.Problems)
	case errors.Is(err, idsync.ErrNotFound):
		writeError(w, http.StatusNotFound, "connection not found", nil)
	case errors.Is(err, ErrPreconditionFailed):
		writeError(w, http.StatusPreconditionFailed, "If-Match does not name the connection's newest version; read it again and retry", nil)
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, "the connection was edited concurrently; read it again and retry", nil)
	case errors.Is(err, ErrInvalidKey):
		writeError(w, http.StatusBadRequest, "the store refused the connection key", nil)
	case errors.Is(err, idsync.ErrUnusableConfig):
		// Redis holds a record this binary cannot read: not the request's
		// fault, and not a failure to hide behind "internal error".
		writeError(w, http.StatusConflict, "the stored record cannot be used and is left unchanged; repair it as docs/store.md says (Repairing a stored record)",
			[]idsync.Problem{{Field: "stored_record", Message: err.Error()}})
	case errors.Is(err, ErrNotConfirmed):
		s.log.Error("admin: edit not confirmed", "route", c.route, "op", op, "err", err)
		writeError(w, http.StatusInternalServerError, "the edit was written to the Redis master, but not enough replicas confirmed it (redis.replica_acks) in time: it may be lost in a failover; read the connection again, and retry if it is not there", nil)
	default:
		s.log.Error("admin: store failure", "route", c.route, "op", op, "err", err)
		writeError(w, http.StatusInternalServerError, "the configuration store (Redis) failed or could not be reached (the cause is in the server log): an edit may or may not have been applied; read the connection again before retrying", nil)
	}
}
