package idsync

import (
	"fmt"
	"regexp"
	"strings"
)

// Record header names of the contract (DESIGN.md §6 and §7).
const (
	// HeaderSource is "topic/partition/offset" of the input record an output came from.
	HeaderSource = "idsync-source"
	// HeaderConfigVersion is the configuration version an output was shaped with.
	HeaderConfigVersion = "idsync-config-version"
	// HeaderErrorCode is a dead-letter record's Code.
	HeaderErrorCode = "idsync-error-code"
	// HeaderError is a dead-letter record's message (names fields, never values).
	HeaderError = "idsync-error"
	// HeaderSourceTopic, HeaderSourcePartition and HeaderSourceOffset locate
	// a dead-letter record's original.
	HeaderSourceTopic     = "idsync-source-topic"
	HeaderSourcePartition = "idsync-source-partition"
	HeaderSourceOffset    = "idsync-source-offset"
	// HeaderDestinationID names the destination of a fanout_limit dead letter.
	HeaderDestinationID = "idsync-destination-id"
	// HeaderReplayAt is set by `idsync dlq replay` on the records it puts
	// back into the input topic: when they were replayed (RFC 3339). Such a
	// record is resolved under the configuration in effect at that time
	// (Event.ReplayedAt), so that a replay after a fix uses the fix.
	HeaderReplayAt = "idsync-replay-at"
)

var (
	destinationIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	entityIDRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	topicCharsRE    = regexp.MustCompile(`^[A-Za-z0-9._-]*$`)
)

// ValidDestinationID reports whether id is a valid destination_id
// (^[a-z0-9][a-z0-9_-]{0,63}$).
func ValidDestinationID(id string) bool { return destinationIDRE.MatchString(id) }

// ValidEntityID reports whether id can name a space or an audience in the
// admin API and the connection store (^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$).
func ValidEntityID(id string) bool { return entityIDRE.MatchString(id) }

// TopicPlaceholder is what a topic template replaces with the destination id.
const TopicPlaceholder = "{destination_id}"

// maxTopicLen is Kafka's limit on topic names.
const maxTopicLen = 249

// TopicTemplate turns a destination id into its Kafka topic name.
type TopicTemplate struct {
	prefix, suffix string
}

// ParseTopicTemplate checks a template such as "idsync.dest.{destination_id}":
// it must hold the placeholder exactly once, and every topic it can produce
// must be a legal Kafka topic name.
func ParseTopicTemplate(s string) (TopicTemplate, error) {
	if strings.Count(s, TopicPlaceholder) != 1 {
		return TopicTemplate{}, fmt.Errorf("topic template %q must contain %s exactly once", truncate(s), TopicPlaceholder)
	}
	prefix, suffix, _ := strings.Cut(s, TopicPlaceholder)
	if !topicCharsRE.MatchString(prefix + suffix) {
		return TopicTemplate{}, fmt.Errorf("topic template %q may only hold letters, digits, '.', '_' and '-' around %s", truncate(s), TopicPlaceholder)
	}
	if len(prefix)+len(suffix)+64 > maxTopicLen {
		return TopicTemplate{}, fmt.Errorf("topic template %q gives topic names longer than %d bytes", truncate(s), maxTopicLen)
	}
	return TopicTemplate{prefix: prefix, suffix: suffix}, nil
}

// Topic returns the topic of destination id (a valid destination id gives a
// legal topic name).
func (t TopicTemplate) Topic(destinationID string) string {
	return t.prefix + destinationID + t.suffix
}

// String returns the template.
func (t TopicTemplate) String() string { return t.prefix + TopicPlaceholder + t.suffix }
