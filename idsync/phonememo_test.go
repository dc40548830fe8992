package idsync

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// liveHeap returns the live heap after a collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestPhoneMemoBoundedInBytes is issue 12 case 8: 20,000 distinct 16 KiB
// phone values kept 353 MiB live in the memo. Through the normalizer, as
// Process calls it, hostile values must leave the memo (as it counts itself
// and as the live heap shows) empty; and filled to the brim, with the
// longest values it remembers or with real numbers, it stays under
// phoneMemoMaxBytes (12 MiB).
func TestPhoneMemoBoundedInBytes(t *testing.T) {
	saved := phones
	t.Cleanup(func() { phones = saved })
	normalize := NormalizerFor(FacebookCustomAudiences, "PHONE", "US")
	through := func(v string) { _, _ = normalize(v) }
	// put fills the memo as parsePhone would, without the 20 µs of parsing
	// per value.
	put := func(v string) {
		phones.put(phoneKey{region: "US", raw: strings.Clone(v)}, phoneParse{e164: "+1" + v[len(v)-10:]})
	}
	tests := []struct {
		name   string
		values int
		value  func(i int) string
		add    func(string)
		// most is the bound on what the memo keeps, as it counts it.
		most int
	}{
		{"16 KiB values are never remembered", 20000, func(i int) string {
			return fmt.Sprintf("+1 650 555 %04d ", i%10000) + strings.Repeat("9", 16<<10)
		}, through, 0},
		{"values just over the remembered length", 20000, func(i int) string {
			return fmt.Sprintf("+1 650 %07d", i) + strings.Repeat(" ", phoneMemoMaxRaw-12) + "1"
		}, through, 0},
		{"the longest remembered values fill it to its byte bound", 200000, func(i int) string {
			return strings.Repeat("-", phoneMemoMaxRaw-10) + fmt.Sprintf("%010d", i)
		}, put, phoneMemoMaxBytes},
		{"real numbers fill it to its entry bound", 200000, func(i int) string {
			return fmt.Sprintf("+1 (650) %03d-%04d", 200+i/10000, i%10000)
		}, put, 2 * phoneMemoShards * phoneMemoGeneration * (17 + 12 + phoneMemoEntryOverhead)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phones = newPhoneMemo()
			before := liveHeap()
			for i := range tt.values {
				tt.add(tt.value(i))
			}
			entries, counted := phones.stats()
			grown := int64(liveHeap()) - int64(before)
			t.Logf("%d values: memo holds %d entries, %d bytes counted, live heap grew %d bytes",
				tt.values, entries, counted, grown)
			if counted > tt.most || counted > phoneMemoMaxBytes {
				t.Errorf("memo counts %d bytes, want at most %d", counted, tt.most)
			}
			if tt.most > 0 && entries < tt.values/10 {
				t.Errorf("only %d entries remembered", entries)
			}
			// The live heap follows the memo's own count, with 1 MiB for
			// the rest of the process's noise.
			if grown > int64(tt.most)+1<<20 {
				t.Errorf("live heap grew %d bytes, want at most %d", grown, tt.most+1<<20)
			}
			runtime.KeepAlive(phones)
		})
	}
}

// TestPhoneMemoSameResults checks that a value gives the same result
// whether the memo remembers it or not.
func TestPhoneMemoSameResults(t *testing.T) {
	saved := phones
	t.Cleanup(func() { phones = saved })
	for _, v := range []string{"+1 (650) 555-0100", "+44 (0)20 7946 0958", "not a phone", "+1 650 555 0100" + strings.Repeat(" ", 80) + "x", strings.Repeat("1", 300)} {
		phones = newPhoneMemo()
		normalize := NormalizerFor(GoogleAdsRemarketingLists, "hashed_phone_number", "US")
		first, err1 := normalize(v)
		second, err2 := normalize(v)
		if first != second || err1 != err2 {
			t.Errorf("%.20q: %q %v then %q %v", v, first, err1, second, err2)
		}
		// The memo keeps what libphonenumber parsed: not what the fast
		// path answers, not values longer than a phone can be.
		_, fast := phoneFast(strings.TrimSpace(v), "US")
		if entries, _ := phones.stats(); (entries == 1) != (!fast && len(strings.TrimSpace(v)) <= phoneMemoMaxRaw) {
			t.Errorf("%.20q: %d entries remembered (fast path: %v)", v, entries, fast)
		}
	}
}
