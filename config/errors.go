package config

import (
	"fmt"
	"strings"
)

// Problem is one invalid setting.
type Problem struct {
	// Key names the setting, e.g. "kafka.delivery", "admin.tokens[1].scope",
	// or an environment variable such as "IDSYNC_KAFKA_BROKER".
	Key string
	// Message says what is wrong. It never holds a secret's value.
	Message string
}

// Error lists every invalid setting Load or Validate found. Its message names
// each setting by its key and never holds a secret's value, so it is safe to
// print and log.
type Error struct {
	Problems []Problem
}

// Error implements error: "invalid configuration: key: message; …".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Key)
		b.WriteString(": ")
		b.WriteString(p.Message)
	}
	return b.String()
}

// problems collects Problems.
type problems []Problem

func (ps *problems) add(key, format string, args ...any) {
	*ps = append(*ps, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

// err returns an *Error, or nil when there is no problem.
func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return &Error{Problems: ps}
}
