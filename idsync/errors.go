package idsync

import (
	"errors"
	"strings"
)

// Code is a dead-letter error code (DESIGN.md §7). Codes form a small fixed
// set usable as a metric label.
type Code string

// The dead-letter codes.
const (
	CodeMalformedJSON    Code = "malformed_json"
	CodeSchemaViolation  Code = "schema_violation"
	CodeInvalidTimestamp Code = "invalid_timestamp"
	CodeTooLarge         Code = "too_large"
	CodeFanoutLimit      Code = "fanout_limit"
	// CodeInvalidKey: the event's space_id or audience_id can never name a
	// stored connection (see ErrInvalidKey), so no configuration can ever
	// be read for it.
	CodeInvalidKey Code = "invalid_key"
	// CodeInvalidConfig: the applied version of a connection is stored in a
	// form this binary cannot use (an unknown destination type, a record
	// that cannot be decoded, a configuration that breaks the rules). Per
	// destination; the audience's other connections are served.
	CodeInvalidConfig Code = "invalid_config"
	// CodeOutputTooLarge: one record for a destination would exceed the
	// record size limit even after splitting (Options.MaxRecordBytes).
	CodeOutputTooLarge Code = "output_too_large"
	// CodeDestinationRefused: the broker refused a destination's record for
	// good (record too large for the topic, authorization, policy, invalid
	// record). Per destination; set by the pipeline, not by Process.
	CodeDestinationRefused Code = "destination_refused"
)

// Codes lists every dead-letter code, for metric initialisation.
var Codes = []Code{CodeMalformedJSON, CodeSchemaViolation, CodeInvalidTimestamp, CodeTooLarge, CodeFanoutLimit,
	CodeInvalidKey, CodeInvalidConfig, CodeOutputTooLarge, CodeDestinationRefused}

// ErrInvalidKey means a space, audience or destination id is not one a
// connection can be stored under. Connection sources wrap it; the pipeline
// dead-letters the event with CodeInvalidKey instead of waiting.
var ErrInvalidKey = errors.New("invalid connection key")

// ErrUnusableConfig means the audience's stored connections exist but cannot
// be used at all (e.g. the Redis key holds another type): Redis answered,
// so waiting will not help. Connection sources wrap it; the pipeline
// dead-letters the event with CodeInvalidConfig. A single unusable
// connection is reported with Connection.Invalid instead, so that the
// audience's other connections are served.
var ErrUnusableConfig = errors.New("stored connections cannot be used")

// DecodeError is why an input record was refused. Its message names the
// field path and never contains an identifier value, so it is safe for logs
// and dead-letter headers.
type DecodeError struct {
	Code Code
	// Field is the path of the offending field, e.g. "external_ids[2].created_at";
	// empty when the record as a whole is at fault.
	Field string
	// Reason says what is wrong with the field, e.g. "required".
	Reason string
}

// Error implements error.
func (e *DecodeError) Error() string {
	if e.Field == "" {
		return string(e.Code) + ": " + e.Reason
	}
	return string(e.Code) + ": " + e.Field + ": " + e.Reason
}

// CodeOf returns the dead-letter code of err, or "" when err is not a
// *DecodeError.
func CodeOf(err error) Code {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Code
	}
	return ""
}

// Problem is one rule a connection configuration breaks.
type Problem struct {
	// Field is the path of the offending field, e.g. "identifiers[3].strategy".
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every problem of a refused configuration.
type ValidationError struct {
	Problems []Problem
}

// Error implements error, listing every problem.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid connection configuration: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Field)
		b.WriteString(": ")
		b.WriteString(p.Message)
	}
	return b.String()
}
