package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/idsync/idsync/idsync"
)

// Resyncs is what the admin API needs to run resyncs (docs/resync.md): the
// store of resyncs and the input topic their start records go to.
type Resyncs interface {
	// Start stores r and writes its start records into every input
	// partition; it sets r.Partitions and returns r as stored.
	Start(ctx context.Context, r idsync.Resync) (idsync.Resync, error)
	// Get returns resync id, nil when there is none.
	Get(ctx context.Context, id string) (*idsync.Resync, error)
	// Progress returns what the instances last reported, per partition.
	Progress(ctx context.Context, id string) ([]idsync.ResyncProgress, error)
	// Cancel marks resync id cancelled at at; an error wrapping
	// idsync.ErrNotFound for an unknown id.
	Cancel(ctx context.Context, id string, at time.Time) (*idsync.Resync, error)
	// List returns the resyncs of connection k, newest first.
	List(ctx context.Context, k Key) ([]idsync.Resync, error)
}

// resyncRequest is POST .../resync's optional body.
type resyncRequest struct {
	// StartAt is when the resync starts and which version it sends with
	// (the one in effect then); default: when the connection's newest
	// version takes effect, or now when it is in effect already.
	StartAt *time.Time `json:"start_at"`
}

// maxResyncStartAhead bounds how far ahead a resync may be scheduled.
const maxResyncStartAhead = 30 * 24 * time.Hour

// Resync states.
const (
	resyncScheduled = "scheduled"
	resyncRunning   = "running"
	resyncFinished  = "finished"
	resyncCancelled = "cancelled"
	resyncFailed    = "failed"
)

// resyncView is a resync as the API shows it, with its progress: Done and
// Total sum the partitions' snapshot members; State is scheduled (before
// start_at), running, finished (every partition finished) or cancelled.
type resyncView struct {
	idsync.Resync
	State      string                  `json:"state"`
	Done       int64                   `json:"done"`
	Total      int64                   `json:"total"`
	Sent       int64                   `json:"sent"`
	Finished   int32                   `json:"partitions_finished"`
	Progress   []idsync.ResyncProgress `json:"progress"`
	ServerTime time.Time               `json:"server_time"`
}

type resyncListView struct {
	SpaceID       string       `json:"space_id"`
	AudienceID    string       `json:"audience_id"`
	DestinationID string       `json:"destination_id"`
	Resyncs       []resyncView `json:"resyncs"`
}

func (s *Server) resyncsOrUnavailable(w http.ResponseWriter) bool {
	if s.opt.Resyncs == nil {
		writeError(w, http.StatusServiceUnavailable, "resync is disabled on this instance (resync.enabled)", nil)
		return false
	}
	return true
}

func (s *Server) startResync(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.resyncsOrUnavailable(w) {
		return
	}
	k, ok := pathKey(w, r, true)
	if !ok {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req resyncRequest
	if len(body) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "invalid resync request", []idsync.Problem{{Field: "start_at",
				Message: "the body must be {} or {\"start_at\": \"<RFC 3339 time>\"}"}})
			return
		}
	}
	conn, err := s.st.Get(r.Context(), k)
	if err != nil {
		s.storeError(w, c, "get", err)
		return
	}
	if conn.Invalid != "" || len(conn.Versions) == 0 {
		writeError(w, http.StatusConflict, "the connection cannot be used: nothing to resync with", nil)
		return
	}
	now := s.opt.Now().UTC()
	newest := conn.Versions[len(conn.Versions)-1]
	startAt := newest.EffectiveAt.UTC()
	if startAt.Before(now) {
		startAt = now
	}
	if req.StartAt != nil {
		startAt = req.StartAt.UTC()
		if startAt.After(now.Add(maxResyncStartAhead)) {
			writeError(w, http.StatusBadRequest, "invalid resync request", []idsync.Problem{{Field: "start_at",
				Message: "must be at most 30 days ahead"}})
			return
		}
	}
	v := idsync.VersionAt(conn.Versions, startAt)
	if v == nil || v.Deleted || v.Config == nil || v.Invalid != "" {
		writeError(w, http.StatusConflict, "the connection has no usable version in effect at start_at: nothing to resync with", nil)
		return
	}
	var raw [8]byte
	var secret [32]byte
	_, _ = rand.Read(raw[:])
	_, _ = rand.Read(secret[:])
	job := idsync.Resync{ID: "rs_" + hex.EncodeToString(raw[:]), SpaceID: k.Space, AudienceID: k.Audience,
		DestinationID: k.Destination, Version: v.Version, StartAt: startAt, CreatedAt: now, CreatedBy: c.token,
		Secret: hex.EncodeToString(secret[:])}
	job, err = s.opt.Resyncs.Start(r.Context(), job)
	if err != nil {
		s.storeError(w, c, "start resync", err)
		return
	}
	w.Header().Set("Location", "/v1/resyncs/"+job.ID)
	writeJSON(w, http.StatusAccepted, s.resyncView(job, nil))
}

func (s *Server) getResync(w http.ResponseWriter, r *http.Request, c *call) {
	s.oneResync(w, r, c, "get resync", func(id string) (*idsync.Resync, error) { return s.opt.Resyncs.Get(r.Context(), id) })
}

func (s *Server) cancelResync(w http.ResponseWriter, r *http.Request, c *call) {
	s.oneResync(w, r, c, "cancel resync", func(id string) (*idsync.Resync, error) {
		job, err := s.opt.Resyncs.Cancel(r.Context(), id, s.opt.Now())
		if errors.Is(err, idsync.ErrNotFound) {
			return nil, nil
		}
		return job, err
	})
}

// oneResync serves a call on /v1/resyncs/{id}: the id checked, op's
// resync (nil: 404) shown with its progress.
func (s *Server) oneResync(w http.ResponseWriter, r *http.Request, c *call, name string, op func(id string) (*idsync.Resync, error)) {
	if !s.resyncsOrUnavailable(w) {
		return
	}
	id := r.PathValue("id")
	if !idsync.ValidResyncID(id) {
		writeError(w, http.StatusBadRequest, "invalid id in the path", []idsync.Problem{{Field: "id", Message: "must be a resync id"}})
		return
	}
	job, err := op(id)
	if err != nil {
		s.storeError(w, c, name, err)
		return
	}
	if job == nil {
		writeError(w, http.StatusNotFound, "resync not found", nil)
		return
	}
	ps, err := s.opt.Resyncs.Progress(r.Context(), id)
	if err != nil {
		s.storeError(w, c, "resync progress", err)
		return
	}
	writeJSON(w, http.StatusOK, s.resyncView(*job, ps))
}

func (s *Server) listResyncs(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.resyncsOrUnavailable(w) {
		return
	}
	k, ok := pathKey(w, r, true)
	if !ok {
		return
	}
	jobs, err := s.opt.Resyncs.List(r.Context(), k)
	if err != nil {
		s.storeError(w, c, "list resyncs", err)
		return
	}
	out := resyncListView{SpaceID: k.Space, AudienceID: k.Audience, DestinationID: k.Destination, Resyncs: []resyncView{}}
	for _, j := range jobs {
		ps, err := s.opt.Resyncs.Progress(r.Context(), j.ID)
		if err != nil {
			s.storeError(w, c, "resync progress", err)
			return
		}
		out.Resyncs = append(out.Resyncs, s.resyncView(j, ps))
	}
	writeJSON(w, http.StatusOK, out)
}

// resyncView sums a resync's progress and says its state: scheduled,
// running, finished, cancelled, or failed (every partition ended, some
// stopped without finishing).
func (s *Server) resyncView(job idsync.Resync, ps []idsync.ResyncProgress) resyncView {
	now := s.opt.Now().UTC()
	job.Secret = "" // never shown
	v := resyncView{Resync: job, Progress: []idsync.ResyncProgress{}, ServerTime: now}
	stopped := int32(0)
	slices.SortFunc(ps, func(a, b idsync.ResyncProgress) int { return int(a.Partition) - int(b.Partition) })
	for _, p := range ps {
		if p.Partition < 0 || (job.Partitions > 0 && p.Partition >= job.Partitions) {
			continue
		}
		p.Updated = p.Updated.UTC()
		v.Progress = append(v.Progress, p)
		v.Done += p.Done
		v.Total += p.Total
		v.Sent += p.Sent
		if p.Finished {
			v.Finished++
		}
		if p.Cancelled {
			stopped++
		}
	}
	v.StartAt = v.StartAt.UTC()
	v.CreatedAt = v.CreatedAt.UTC()
	switch {
	case job.Cancelled():
		v.State = resyncCancelled
	case job.Partitions > 0 && v.Finished >= job.Partitions:
		v.State = resyncFinished
	case stopped > 0 && v.Finished+stopped >= job.Partitions:
		// Every partition ended, some without finishing (a control record
		// dead-lettered, e.g. too many members): see the dead letters.
		v.State = resyncFailed
	case now.Before(job.StartAt):
		v.State = resyncScheduled
	default:
		v.State = resyncRunning
	}
	return v
}
