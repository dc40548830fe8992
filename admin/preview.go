package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/idsync/idsync/idsync"
)

// PreviewDestinationID is the destination id preview uses when the request
// names none.
const PreviewDestinationID = "preview"

// previewRequest is the body of POST /v1/preview.
type previewRequest struct {
	DestinationID *string         `json:"destination_id"`
	Connection    json.RawMessage `json:"connection"`
	Event         json.RawMessage `json:"event"`
}

type previewView struct {
	Records   []previewRecord `json:"records"`
	Unmatched bool            `json:"unmatched"`
	// InvalidIdentifiers counts identifier values that could not be
	// normalized (not sent).
	InvalidIdentifiers int         `json:"invalid_identifiers"`
	DLQ                *previewDLQ `json:"dlq"`
	// Explain says, mapping by mapping, which identifiers were picked and
	// why (null when the event could not be decoded).
	Explain *idsync.Explanation `json:"explain"`
}

// PreviewExplainBounds bound the explanation preview returns beside its
// records (at most this many candidates and bytes of their values).
var PreviewExplainBounds = idsync.ExplainBounds{Candidates: 1000, Bytes: 256 << 10}

type previewRecord struct {
	Topic   string            `json:"topic"`
	Key     string            `json:"key"`
	Headers map[string]string `json:"headers"`
	Value   json.RawMessage   `json:"value"`
}

type previewDLQ struct {
	Code  idsync.Code `json:"code"`
	Error string      `json:"error"`
}

// preview shows what idsync would do with an event under a configuration,
// as if that configuration were the effective version 1 of the
// destination's only connection. Nothing is stored or produced. The body
// may hold identifier values: it is never logged. Process runs with
// preview's own, lower bounds (PreviewOptions), so that neither the
// response nor the work is more than a few MiB whatever the request.
func (s *Server) preview(w http.ResponseWriter, r *http.Request, _ *call) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req previewRequest
	if p, ok := decodeStrict(body, &req); !ok {
		writeError(w, http.StatusBadRequest, "invalid preview request", []idsync.Problem{p})
		return
	}
	var problems []idsync.Problem
	dest := PreviewDestinationID
	if req.DestinationID != nil {
		dest = *req.DestinationID
		if !idsync.ValidDestinationID(dest) {
			problems = append(problems, idsync.Problem{Field: "destination_id", Message: "must match ^[a-z0-9][a-z0-9_-]{0,63}$"})
		}
	}
	var cfg *idsync.Config
	if absent(req.Connection) {
		problems = append(problems, idsync.Problem{Field: "connection", Message: "required"})
	} else {
		var err error
		cfg, err = idsync.ParseConfig(req.Connection)
		var ve *idsync.ValidationError
		switch {
		case errors.As(err, &ve):
			for _, p := range ve.Problems {
				p.Field = joinField("connection", p.Field)
				problems = append(problems, p)
			}
		case err != nil:
			problems = append(problems, idsync.Problem{Field: "connection", Message: err.Error()})
		}
	}
	if absent(req.Event) {
		problems = append(problems, idsync.Problem{Field: "event", Message: "required"})
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid preview request", problems)
		return
	}

	out := previewView{Records: []previewRecord{}}
	now := s.opt.Now()
	ev, err := idsync.Decode(req.Event, now, s.opt.Limits)
	if err != nil {
		out.DLQ = &previewDLQ{Code: idsync.CodeOf(err), Error: err.Error()}
		writeJSON(w, http.StatusOK, out)
		return
	}
	conns := []idsync.Connection{{
		DestinationID: dest,
		Versions:      []idsync.Version{{Version: 1, Config: cfg}},
	}}
	res := idsync.Process(ev, conns, now, s.previewOpt)
	ex := idsync.Explain(ev, cfg, s.previewOpt.PhoneRegion, PreviewExplainBounds)
	out.Explain = &ex
	for _, o := range res.Outputs {
		out.Records = append(out.Records, previewRecord{
			Topic: s.opt.Topics.Topic(o.DestinationID),
			Key:   o.Key,
			Headers: map[string]string{
				idsync.HeaderSource:        "preview",
				idsync.HeaderConfigVersion: strconv.FormatInt(o.ConfigVersion, 10),
			},
			Value: json.RawMessage(o.Value),
		})
	}
	out.Unmatched = len(res.Unmatched) > 0
	for _, n := range res.Invalid {
		out.InvalidIdentifiers += n
	}
	if len(res.DeadLetters) > 0 {
		dl := res.DeadLetters[0]
		out.DLQ = &previewDLQ{Code: dl.Code, Error: dl.Message}
		if (dl.Code == idsync.CodeFanoutLimit || dl.Code == idsync.CodeOutputTooLarge) && s.previewOpt != s.opt.Process {
			out.DLQ.Error += fmt.Sprintf(" (preview's own bounds, lower than the pipeline's: %d records, %d Facebook rows, %d bytes)",
				s.previewOpt.MaxCombinations, s.previewOpt.MaxFacebookRows, s.previewOpt.MaxOutputBytes)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// absent reports whether a raw member was left out or null.
func absent(raw json.RawMessage) bool {
	return len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func joinField(prefix, field string) string {
	if field == "" {
		return prefix
	}
	return prefix + "." + field
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and
// trailing data, and returns the problem when it fails.
func decodeStrict(body []byte, v any) (idsync.Problem, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			return idsync.Problem{Message: "unexpected data after the JSON object"}, false
		}
		return idsync.Problem{}, true
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return idsync.Problem{Message: "the body must be a JSON object"}, false
		}
		return idsync.Problem{Field: field, Message: "has the wrong type"}, false
	case errors.As(err, &se):
		return idsync.Problem{Message: fmt.Sprintf("malformed JSON at byte %d", se.Offset)}, false
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return idsync.Problem{Message: "malformed JSON: unexpected end of input"}, false
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return idsync.Problem{Field: strings.Trim(name, `"`), Message: "unknown field"}, false
	}
	return idsync.Problem{Message: "malformed JSON"}, false
}
