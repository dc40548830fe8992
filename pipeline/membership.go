package pipeline

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
)

// The membership topic (docs/resync.md) holds, for every (space, audience,
// profile) the pipeline has seen, the input record of the profile's latest
// "entered" event, and a tombstone once the profile exits. It is compacted,
// has the input topic's partition count, and each input partition's
// membership goes to the partition of the same number: the instance that
// owns an input partition owns its membership, and a resync of a profile is
// ordered with that profile's live events.

// membershipKey is a membership record's key: the space, audience and
// profile (segment_id), each preceded by its length as a uvarint, so that
// no id can make two keys equal.
func membershipKey(space, audience, profile string) []byte {
	b := make([]byte, 0, len(space)+len(audience)+len(profile)+6)
	for _, s := range [...]string{space, audience, profile} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// errMembershipKey is returned for a key membershipKey did not write.
var errMembershipKey = errors.New("not a membership key")

// parseMembershipKey splits a membership key into its space, audience and
// profile.
func parseMembershipKey(k []byte) (space, audience, profile string, err error) {
	var parts [3]string
	for i := range parts {
		n, w := binary.Uvarint(k)
		if w <= 0 || n > uint64(len(k)-w) {
			return "", "", "", errMembershipKey
		}
		parts[i] = string(k[w : w+int(n)])
		k = k[w+int(n):]
	}
	if len(k) != 0 {
		return "", "", "", errMembershipKey
	}
	return parts[0], parts[1], parts[2], nil
}

// memberHash names a profile in a resync's in-memory sets: 16 bytes of
// SHA-256, whatever the id's length.
type memberHash [16]byte

func hashMember(profile string) memberHash {
	sum := sha256.Sum256([]byte(profile))
	return memberHash(sum[:16])
}

// membershipRecord is the membership record of the input record rec, whose
// event is ev: its input value for an entry, a tombstone for an exit; src is
// rec's source header.
func (p *Pipeline) membershipRecord(rec *kgo.Record, ev *idsync.Event, src []byte) kgo.Record {
	var value []byte
	if ev.Action == idsync.ActionEntered {
		value = rec.Value
		if value == nil {
			value = []byte{} // never a tombstone by accident
		}
	}
	return kgo.Record{
		Topic:     p.cfg.MembershipTopic,
		Partition: rec.Partition,
		Key:       membershipKey(ev.SpaceID, ev.AudienceID, ev.SegmentID),
		Value:     value,
		Headers:   []kgo.RecordHeader{{Key: idsync.HeaderSource, Value: src}},
		Timestamp: sourceTimestamp(rec),
	}
}

// partitioner sends records to the membership topic and to the input topic
// (a resync's control records) to the partition they name, and every other
// record by franz-go's default partitioner.
type partitioner struct {
	manual map[string]bool
	def    kgo.Partitioner
}

func newPartitioner(topics ...string) partitioner {
	m := map[string]bool{}
	for _, t := range topics {
		if t != "" {
			m[t] = true
		}
	}
	return partitioner{manual: m, def: kgo.UniformBytesPartitioner(64<<10, true, true, nil)}
}

// ForTopic implements kgo.Partitioner.
func (p partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if p.manual[topic] {
		return kgo.ManualPartitioner().ForTopic(topic)
	}
	return p.def.ForTopic(topic)
}
