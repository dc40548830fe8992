// Package dlq reads idsync's dead-letter topic for operators: Stats counts
// dead letters by code, destination and source partition over a time range,
// and Replay produces selected dead letters back into the input topic, as
// they were on input, once each (docs/operations.md, "Replaying dead
// letters"). It is the library behind `idsync dlq stats` and `idsync dlq
// replay`.
//
// It reads what package pipeline writes (the headers of
// docs/reliability.md, "Dead-letter headers") and never writes to the
// dead-letter topic. It holds no command-line parsing and no output
// formatting: the CLI maps its flags onto Filter and ReplayOptions and
// prints the results.
package dlq

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/pipeline"
)

// HeaderReplayOf marks a record Replay produced into the input topic: its
// value is "<dead-letter topic>/<partition>/<offset>" of the dead letter it
// replays. A replayed record that is dead-lettered again keeps it among its
// original headers.
const HeaderReplayOf = "idsync-replay-of"

// Config says where the dead letters are and where they go back to. Zero
// values take the defaults noted on each field.
type Config struct {
	Brokers []string
	// DLQTopic is the dead-letter topic (kafka.dlq_topic).
	DLQTopic string
	// InputTopic is where Replay produces (kafka.input_topic), whatever
	// source topic a dead letter names (Filter does not select by it).
	InputTopic string
	// MarkerTopic remembers which dead letters were replayed (default
	// DLQTopic + ".replayed"; compacted, made by the first Replay that is
	// not a dry run).
	MarkerTopic string
	// TransactionalID is the id of Replay's transactions (default
	// "idsync-dlq-replay." + DLQTopic). It must be the same for every
	// replay of one dead-letter topic: a replay fences the one before it.
	TransactionalID string
	// IdleTimeout ends a scan of partitions that delivered nothing for
	// that long (default 10s); see Stats.
	IdleTimeout time.Duration
	// ClientOpts are appended to the Kafka client options (TLS, SASL,
	// dialer, logger).
	ClientOpts []kgo.Opt

	// afterMarkers, set by tests, runs when Replay has read the markers.
	afterMarkers func()
}

func (c *Config) setDefaults() {
	if c.MarkerTopic == "" {
		c.MarkerTopic = c.DLQTopic + ".replayed"
	}
	if c.TransactionalID == "" {
		c.TransactionalID = "idsync-dlq-replay." + c.DLQTopic
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 10 * time.Second
	}
}

func (c *Config) check() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("no brokers")
	case c.DLQTopic == "":
		return errors.New("no dead-letter topic")
	case c.InputTopic == "":
		return errors.New("no input topic")
	case c.MarkerTopic == c.DLQTopic || c.MarkerTopic == c.InputTopic:
		return fmt.Errorf("the marker topic %q must differ from the dead-letter and input topics", c.MarkerTopic)
	case c.IdleTimeout < 0:
		return errors.New("negative idle timeout")
	}
	return nil
}

// Client reads the dead-letter topic and replays from it. Each call makes
// its own Kafka clients and closes them before it returns (a client's
// metadata cache would otherwise hide a topic made meanwhile, such as the
// marker topic); a Client holds nothing to close and is safe for
// concurrent use, though two Replays of one dead-letter topic fence each
// other (see Replay).
type Client struct {
	cfg Config
	// cl and adm serve one call (see begin).
	cl  *kgo.Client
	adm *kadm.Client
}

// New validates cfg, with the client options it holds; it does not
// contact the brokers.
func New(cfg Config) (*Client, error) {
	cfg.setDefaults()
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("dlq: %w", err)
	}
	c := &Client{cfg: cfg}
	call, err := c.begin()
	if err != nil {
		return nil, fmt.Errorf("dlq: %w", err)
	}
	call.end()
	return c, nil
}

// begin returns a copy of c with the Kafka client of one call; end closes
// it.
func (c *Client) begin() (*Client, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.cfg.Brokers...)}, c.cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("creating kafka client: %w", err)
	}
	return &Client{cfg: c.cfg, cl: cl, adm: kadm.NewClient(cl)}, nil
}

func (c *Client) end() { c.cl.Close() }

// Filter selects dead letters. Every set field must match; the zero Filter
// selects every dead letter.
type Filter struct {
	// Codes: one of them (none: any).
	Codes []idsync.Code
	// Destinations: the idsync-destination-id of one of them (none: any).
	// "" selects the dead letters of a whole record (no destination).
	Destinations []string
	// SourcePartitions: the input partition is one of them (none: any).
	SourcePartitions []int32
	// SourceOffsets: the input offset is within [Min, Max] (nil: any).
	SourceOffsets *OffsetRange
	// Since and Until bound the dead letters' timestamps, which are their
	// input records' timestamps: Since ≤ t < Until (zero: unbounded).
	Since, Until time.Time
}

// OffsetRange is an inclusive range of input offsets.
type OffsetRange struct{ Min, Max int64 }

func (f *Filter) check() error {
	if f.SourceOffsets != nil && f.SourceOffsets.Min > f.SourceOffsets.Max {
		return fmt.Errorf("source offsets %d-%d: the first is after the last", f.SourceOffsets.Min, f.SourceOffsets.Max)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return fmt.Errorf("time range %s to %s is empty", f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	}
	return nil
}

func (f *Filter) match(l *Letter) bool {
	switch {
	case len(f.Codes) > 0 && !slices.Contains(f.Codes, l.Code),
		len(f.Destinations) > 0 && !slices.Contains(f.Destinations, l.Destination),
		len(f.SourcePartitions) > 0 && !slices.Contains(f.SourcePartitions, l.SourcePartition),
		f.SourceOffsets != nil && (l.SourceOffset < f.SourceOffsets.Min || l.SourceOffset > f.SourceOffsets.Max),
		!f.Since.IsZero() && l.Timestamp.Before(f.Since),
		!f.Until.IsZero() && !l.Timestamp.Before(f.Until):
		return false
	}
	return true
}

// SkipReason says why a dead letter cannot be replayed as its input was.
type SkipReason string

// Why a dead letter cannot be replayed faithfully.
const (
	// SkipValueTruncated: the dead letter holds only the first bytes of
	// the input's value (idsync-original-size).
	SkipValueTruncated SkipReason = "value_truncated"
	// SkipKeyTruncated: likewise its key (idsync-original-key-size).
	SkipKeyTruncated SkipReason = "key_truncated"
	// SkipHeadersTruncated: the input's headers did not all fit; only its
	// trace context was kept (idsync-original-headers-size).
	SkipHeadersTruncated SkipReason = "headers_truncated"
	// SkipNoContext: written by an idsync that did not keep the input's
	// headers and timestamp (no idsync-original-headers header), or not by
	// idsync at all.
	SkipNoContext SkipReason = "no_context"
)

// Letter is one dead letter, without its key and value.
type Letter struct {
	// Partition and Offset are its position in the dead-letter topic.
	Partition int32
	Offset    int64
	// Timestamp is its input record's (see Filter).
	Timestamp   time.Time
	Code        idsync.Code
	Destination string // "" for a dead letter of the whole record
	Error       string
	// SourceTopic, SourcePartition and SourceOffset are its input
	// record's position.
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
	// Skip is why it cannot be replayed ("" when it can).
	Skip SkipReason
	// originals is how many of its headers are the input's.
	originals int
	// inputTS is the input's timestamp (zero when it had none).
	inputTS time.Time
}

// ID is the dead letter's "<topic>/<partition>/<offset>", the value of
// HeaderReplayOf on its replay.
func (l *Letter) ID(dlqTopic string) string {
	return dlqTopic + "/" + strconv.Itoa(int(l.Partition)) + "/" + strconv.FormatInt(l.Offset, 10)
}

// markerKey is the dead letter's key in the marker topic.
func (l *Letter) markerKey() string {
	return strconv.Itoa(int(l.Partition)) + "/" + strconv.FormatInt(l.Offset, 10)
}

// parse reads a dead letter's headers: idsync's follow the input's own
// (HeaderOriginalHeaders says how many), which may hold the same names and
// are not read. A dead letter without HeaderOriginalHeaders (written by an
// earlier idsync) has idsync's headers only.
func parse(r *kgo.Record) Letter {
	l := Letter{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp, SourcePartition: -1, SourceOffset: -1, originals: -1}
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == pipeline.HeaderOriginalHeaders {
			if n, err := strconv.Atoi(string(r.Headers[i].Value)); err == nil && n == i {
				l.originals = n
			}
			break
		}
	}
	var truncated SkipReason
	sourceTS := int64(-1)
	for _, h := range r.Headers[max(l.originals, 0):] {
		v := string(h.Value)
		switch h.Key {
		case idsync.HeaderErrorCode:
			l.Code = idsync.Code(v)
		case idsync.HeaderError:
			l.Error = v
		case idsync.HeaderDestinationID:
			l.Destination = v
		case idsync.HeaderSourceTopic:
			l.SourceTopic = v
		case idsync.HeaderSourcePartition:
			if n, err := strconv.ParseInt(v, 10, 32); err == nil {
				l.SourcePartition = int32(n)
			}
		case idsync.HeaderSourceOffset:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				l.SourceOffset = n
			}
		case pipeline.HeaderSourceTimestamp:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				sourceTS = n
			}
		case pipeline.HeaderOriginalSize:
			truncated = SkipValueTruncated
		case pipeline.HeaderOriginalKeySize:
			if truncated != SkipValueTruncated {
				truncated = SkipKeyTruncated
			}
		case pipeline.HeaderOriginalHeadersSize:
			if truncated == "" {
				truncated = SkipHeadersTruncated
			}
		}
	}
	if sourceTS >= 0 {
		// The dead letter's own timestamp is the input's too, unless
		// the topic stamps append times or a retry left it out.
		l.Timestamp = time.UnixMilli(sourceTS).UTC()
		l.inputTS = l.Timestamp
	}
	switch {
	case truncated != "":
		l.Skip = truncated
	case l.originals < 0:
		l.Skip = SkipNoContext
	}
	return l
}

// replayRecord is what Replay produces for the dead letter r (parsed as
// l): the input's key, value, headers and timestamp, HeaderReplayOf, and
// idsync.HeaderReplayAt with at, the replay's time (the pipeline resolves
// the replayed event under the configuration in effect then).
func (c *Client) replayRecord(r *kgo.Record, l *Letter, at time.Time) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, l.originals+2)
	for _, h := range r.Headers[:l.originals] {
		// An input replayed before and dead-lettered again names its
		// earlier dead letter: only the newest replay is named.
		if h.Key != HeaderReplayOf && h.Key != idsync.HeaderReplayAt {
			headers = append(headers, h)
		}
	}
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderReplayOf, Value: []byte(l.ID(c.cfg.DLQTopic))},
		kgo.RecordHeader{Key: idsync.HeaderReplayAt, Value: []byte(at.UTC().Format(time.RFC3339Nano))})
	return &kgo.Record{Topic: c.cfg.InputTopic, Key: r.Key, Value: r.Value, Headers: headers, Timestamp: l.inputTS}
}
