package admin

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idsync/idsync/idsync"
)

// editView answers PUT and DELETE: the version the edit created.
type editView struct {
	SpaceID       string         `json:"space_id"`
	AudienceID    string         `json:"audience_id"`
	DestinationID string         `json:"destination_id"`
	Version       int64          `json:"version"`
	UpdatedAt     time.Time      `json:"updated_at"`
	EffectiveAt   time.Time      `json:"effective_at"`
	State         idsync.State   `json:"state"`
	Deleted       bool           `json:"deleted"`
	Config        *idsync.Config `json:"config"`
}

// connectionView is one connection as GET shows it: the version that
// applies now and the one waiting for its effective_at, either null.
type connectionView struct {
	DestinationID string       `json:"destination_id"`
	Active        *versionView `json:"active"`
	Pending       *versionView `json:"pending"`
	// Invalid says why the stored record cannot be used at all (its events
	// are dead-lettered invalid_config); see docs/store.md.
	Invalid string `json:"invalid,omitempty"`
}

type versionView struct {
	Version     int64     `json:"version"`
	UpdatedAt   time.Time `json:"updated_at"`
	EffectiveAt time.Time `json:"effective_at"`
	// Deleted marks a pending tombstone: the connection goes at EffectiveAt.
	Deleted bool           `json:"deleted"`
	Config  *idsync.Config `json:"config"`
	// Invalid says why this stored version cannot be used by this binary
	// (its events are dead-lettered invalid_config); a new edit repairs it.
	Invalid string `json:"invalid,omitempty"`
}

type listView struct {
	SpaceID     string           `json:"space_id"`
	AudienceID  string           `json:"audience_id"`
	Connections []connectionView `json:"connections"`
}

type historyView struct {
	SpaceID       string       `json:"space_id"`
	AudienceID    string       `json:"audience_id"`
	DestinationID string       `json:"destination_id"`
	Entries       []AuditEntry `json:"entries"`
}

type typesView struct {
	DestinationTypes []idsync.TypeInfo `json:"destination_types"`
	// IdentifierTypes are the default Segment identifier types (any other
	// lower-case type is a custom identifier, sent in customized setup only).
	IdentifierTypes []string `json:"identifier_types"`
	// MobileAdIDTypes are sent only with settings.send_mobile_ids.
	MobileAdIDTypes []string `json:"mobile_ad_id_types"`
	// MaxMappings is the most identifiers a customized setup may map.
	MaxMappings int `json:"max_mappings"`
}

func (s *Server) putConnection(w http.ResponseWriter, r *http.Request, c *call) {
	k, ok := pathKey(w, r, true)
	if !ok {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	ifMatch, ok := parseIfMatch(w, r)
	if !ok {
		return
	}
	cfg, err := idsync.ParseConfig(body)
	if err != nil {
		writeProblems(w, err)
		return
	}
	// Read first only to tell 201 (created) from 200 (edited).
	existed := false
	prior, err := s.st.Get(r.Context(), k)
	switch {
	case err == nil:
		existed = s.view(prior) != nil
	case !errors.Is(err, idsync.ErrNotFound):
		s.storeError(w, c, "get", err)
		return
	}
	v, err := s.st.Put(r.Context(), k, cfg, c.token, ifMatch)
	if err != nil {
		s.storeError(w, c, "put", err)
		return
	}
	status := http.StatusOK
	if !existed {
		status = http.StatusCreated
	}
	writeJSON(w, status, s.editView(k, v))
}

func (s *Server) deleteConnection(w http.ResponseWriter, r *http.Request, c *call) {
	k, ok := pathKey(w, r, true)
	if !ok {
		return
	}
	ifMatch, ok := parseIfMatch(w, r)
	if !ok {
		return
	}
	v, err := s.st.Delete(r.Context(), k, c.token, ifMatch)
	if err != nil {
		s.storeError(w, c, "delete", err)
		return
	}
	writeJSON(w, http.StatusOK, s.editView(k, v))
}

func (s *Server) getConnection(w http.ResponseWriter, r *http.Request, c *call) {
	k, ok := pathKey(w, r, true)
	if !ok {
		return
	}
	conn, err := s.st.Get(r.Context(), k)
	if err != nil {
		s.storeError(w, c, "get", err)
		return
	}
	view := s.view(conn)
	if view == nil {
		writeError(w, http.StatusNotFound, "connection not found", nil)
		return
	}
	// A record that cannot be read at all (view.Invalid) has no version
	// to name: no ETag, and an edit repairs it without If-Match.
	if n := len(conn.Versions); n > 0 {
		w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(conn.Versions[n-1].Version, 10)))
	}
	writeJSON(w, http.StatusOK, view)
}

func (s *Server) listConnections(w http.ResponseWriter, r *http.Request, c *call) {
	k, ok := pathKey(w, r, false)
	if !ok {
		return
	}
	conns, err := s.st.List(r.Context(), k.Space, k.Audience)
	if err != nil {
		s.storeError(w, c, "list", err)
		return
	}
	out := listView{SpaceID: k.Space, AudienceID: k.Audience, Connections: []connectionView{}}
	for _, conn := range conns {
		if v := s.view(conn); v != nil {
			out.Connections = append(out.Connections, *v)
		}
	}
	slices.SortFunc(out.Connections, func(a, b connectionView) int { return strings.Compare(a.DestinationID, b.DestinationID) })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request, c *call) {
	k, ok := pathKey(w, r, true)
	if !ok {
		return
	}
	entries, err := s.st.History(r.Context(), k)
	if err != nil {
		s.storeError(w, c, "history", err)
		return
	}
	if len(entries) == 0 {
		writeError(w, http.StatusNotFound, "connection not found", nil)
		return
	}
	for i := range entries {
		entries[i].At = entries[i].At.UTC()
		entries[i].EffectiveAt = entries[i].EffectiveAt.UTC()
	}
	writeJSON(w, http.StatusOK, historyView{SpaceID: k.Space, AudienceID: k.Audience, DestinationID: k.Destination, Entries: entries})
}

func (s *Server) types(w http.ResponseWriter, _ *http.Request, _ *call) {
	writeJSON(w, http.StatusOK, typesView{
		DestinationTypes: idsync.Catalog(),
		IdentifierTypes:  idsync.DefaultIdentifierTypes,
		MobileAdIDTypes:  []string{"ios.idfa", "android.idfa"},
		MaxMappings:      idsync.MaxMappings,
	})
}

// view returns the connection's active and pending versions now, or nil
// when it has neither (never created, or its deletion is effective).
func (s *Server) view(conn idsync.Connection) *connectionView {
	if conn.Invalid != "" {
		return &connectionView{DestinationID: conn.DestinationID, Invalid: conn.Invalid}
	}
	now := s.opt.Now()
	versions := s.opt.Activation.Prune(conn.Versions, now)
	active, pending := idsync.ActiveAndPending(versions, now)
	if active != nil && (active.Deleted || (active.Config == nil && active.Invalid == "")) {
		active = nil
	}
	if active == nil && pending == nil {
		return nil
	}
	return &connectionView{DestinationID: conn.DestinationID, Active: newVersionView(active), Pending: newVersionView(pending)}
}

func newVersionView(v *idsync.Version) *versionView {
	if v == nil {
		return nil
	}
	return &versionView{Version: v.Version, UpdatedAt: v.UpdatedAt.UTC(), EffectiveAt: v.EffectiveAt.UTC(), Deleted: v.Deleted,
		Config: v.Config, Invalid: v.Invalid}
}

func (s *Server) editView(k Key, v idsync.Version) editView {
	state := idsync.StateActive
	if v.EffectiveAt.After(s.opt.Now()) {
		state = idsync.StatePending
	}
	return editView{
		SpaceID: k.Space, AudienceID: k.Audience, DestinationID: k.Destination,
		Version: v.Version, UpdatedAt: v.UpdatedAt.UTC(), EffectiveAt: v.EffectiveAt.UTC(),
		State: state, Deleted: v.Deleted, Config: v.Config,
	}
}

// pathKey reads and checks the path's ids (the destination too when
// withDestination), answering 400 naming every invalid one. Invalid values
// are not echoed.
func pathKey(w http.ResponseWriter, r *http.Request, withDestination bool) (Key, bool) {
	k := Key{Space: r.PathValue("space"), Audience: r.PathValue("audience"), Destination: r.PathValue("destination")}
	var problems []idsync.Problem
	if !idsync.ValidEntityID(k.Space) {
		problems = append(problems, idsync.Problem{Field: "space_id", Message: "must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"})
	}
	if !idsync.ValidEntityID(k.Audience) {
		problems = append(problems, idsync.Problem{Field: "audience_id", Message: "must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"})
	}
	if withDestination && !idsync.ValidDestinationID(k.Destination) {
		problems = append(problems, idsync.Problem{Field: "destination_id", Message: "must match ^[a-z0-9][a-z0-9_-]{0,63}$"})
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid id in the path", problems)
		return Key{}, false
	}
	return k, true
}

// readBody reads a JSON request body: 415 for a Content-Type that is not
// JSON (a missing one is accepted), 413 above MaxBodyBytes.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json", nil)
		return nil, false
	}
	if r.ContentLength > s.opt.MaxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "request body larger than "+strconv.FormatInt(s.opt.MaxBodyBytes, 10)+" bytes", nil)
		return nil, false
	}
	if r.Body == nil {
		return nil, true
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opt.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body larger than "+strconv.FormatInt(s.opt.MaxBodyBytes, 10)+" bytes", nil)
		} else {
			writeError(w, http.StatusBadRequest, "reading the request body failed", nil)
		}
		return nil, false
	}
	return body, true
}

// isJSON accepts application/json, text/json and any +json media type.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt, _, _ = strings.Cut(contentType, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// parseIfMatch reads If-Match as a version number. It is liberal: 7, "7"
// and W/"7" all mean version 7; * and an absent header mean no
// precondition (0).
func parseIfMatch(w http.ResponseWriter, r *http.Request) (int64, bool) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if none, ok := r.Header["If-None-Match"]; ok {
		// Only "*": create the connection, on condition that it does not
		// exist (no version in effect or pending).
		if len(none) != 1 || strings.TrimSpace(none[0]) != "*" || v != "" {
			writeError(w, http.StatusBadRequest, "invalid If-None-Match header", []idsync.Problem{{Field: "If-None-Match",
				Message: "only * is supported (create if the connection does not exist), and not together with If-Match"}})
			return 0, false
		}
		return IfAbsent, true
	}
	if v == "" || v == "*" {
		return 0, true
	}
	v = strings.TrimPrefix(v, "W/")
	v = strings.TrimSuffix(strings.TrimPrefix(v, `"`), `"`)
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 1 {
		writeError(w, http.StatusBadRequest, "invalid If-Match header", []idsync.Problem{{Field: "If-Match", Message: "must be a version number such as \"7\""}})
		return 0, false
	}
	return n, true
}

// writeProblems answers 400 for a refused configuration.
func writeProblems(w http.ResponseWriter, err error) {
	var ve *idsync.ValidationError
	if errors.As(err, &ve) {
		writeError(w, http.StatusBadRequest, "invalid connection configuration", ve.Problems)
		return
	}
	writeError(w, http.StatusBadRequest, "invalid connection configuration", []idsync.Problem{{Field: "", Message: err.Error()}})
}
