package hostile

import (
	"time"

	"github.com/idsync/idsync/config"
	"github.com/idsync/idsync/idsync"
)

// RecordLimit is the record limit the property test gives the pipeline
// (pipeline.Config.MaxRecordBytes): the producer's largest record and the
// max.message.bytes of the topics it creates, the dead-letter topic
// included.
const RecordLimit = 192 << 10

// Limits returns the input limits of the property test: records up to
// 128 KiB (so that a too_large input may or may not fit a dead letter),
// 1000 external ids, 24 h of clock skew.
func Limits() idsync.Limits {
	return idsync.Limits{MaxRecordBytes: 128 << 10, MaxExternalIDs: 1000, MaxFutureSkew: 24 * time.Hour}
}

// Options returns the Process options of the property test, small enough
// that the generator's amplifying events cross every bound: 200 records
// per destination, records of RecordLimit less config.RecordOverheadBytes
// (as idsync run derives it from kafka.producer_batch_max_bytes), 640 KiB
// per event and destination, 700 KiB per event, 4000 Facebook rows.
func Options() idsync.Options {
	o := idsync.DefaultOptions()
	o.MaxCombinations = 200
	o.MaxRecordBytes = RecordLimit - config.RecordOverheadBytes
	o.MaxOutputBytes = 640 << 10
	o.MaxEventOutputBytes = 700 << 10
	o.MaxFacebookRows = 4000
	return o
}
