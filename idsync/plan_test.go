package idsync

import (
	"fmt"
)

// Every test of the package checks each destination's plan against the
// records then written: the count and the bytes are exact, and no record
// (key plus value) is larger than the planned largest, which is exact for
// Google and for Facebook records split by bytes.
func init() {
	planHook = func(p recordPlan, outs []Output) {
		if len(outs) != p.records {
			panic(fmt.Sprintf("planned %d records, wrote %d", p.records, len(outs)))
		}
		sum, largest := 0, 0
		for _, o := range outs {
			sum += len(o.Value)
			largest = max(largest, len(o.Key)+len(o.Value))
		}
		if sum != p.bytes {
			panic(fmt.Sprintf("%s: planned %d bytes, wrote %d", outs[0].DestinationType, p.bytes, sum))
		}
		if largest > p.maxRecord {
			panic(fmt.Sprintf("%s: planned records of at most %d bytes, wrote one of %d", outs[0].DestinationType, p.maxRecord, largest))
		}
		exact := outs[0].DestinationType == GoogleAdsRemarketingLists ||
			(outs[0].DestinationType == FacebookCustomAudiences && p.ends != nil)
		if exact && largest != p.maxRecord {
			panic(fmt.Sprintf("%s: planned the largest record at %d bytes, wrote %d", outs[0].DestinationType, p.maxRecord, largest))
		}
	}
}
