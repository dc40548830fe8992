package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
)

// TestHostileEmbedded (issue 12, "How we will know"): the binary, started as
// a user would (`idsync run --embedded`), fed hostile events by an
// independent client (kcat, librdkafka) on one key, keeps delivering the good
// events that follow them on that key. Every hostile event is dead-lettered
// with the code the contract gives it, the DLQ metric agrees with the DLQ
// topic, the input is committed past the last event, nothing waits
// (/readyz, idsync_partitions_waiting), memory stays bounded and the
// process keeps running.
//
// The embedded demo traffic (50 events/s, 2 % bad) flows beside the test's
// events; everything is filtered by the test's own key and message ids.
func TestHostileEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs the binary and kcat (make test-unit skips it)")
	}
	kcat := hxKcat(t)
	e := hxStartEmbedded(t)
	run := fmt.Sprintf("%08x", rand.Uint32())
	segment := "use_hx_" + run
	key := "spa_demo:" + segment
	t.Logf("embedded idsync: kafka %s, ops %s, admin %s; key %s", e.broker, e.ops, e.admin, key)

	// A Facebook connection whose three mappings all use `all`, on an
	// audience of its own, stored as a user would: `idsync config put`.
	const ampAudience, ampDest = "aud_hx_amplify", "fbca_amp"
	cfgPath := filepath.Join(t.TempDir(), "fbca_amp.json")
	if err := os.WriteFile(cfgPath, []byte(`{"destination_type":"facebook_custom_audiences","external_audience_id":"23850000000000001",
		"settings":{"send_mobile_ids":true},"setup":"customized","identifiers":[
		{"segment":"email","destination":"EMAIL","strategy":"all"},
		{"segment":"phone","destination":"PHONE","strategy":"all"},
		{"segment":"ios.idfa","destination":"MADID","strategy":"all"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := e.cli("config", "put", "spa_demo", ampAudience, ampDest, "-f", cfgPath); code != 0 || !strings.Contains(out, "active") {
		t.Fatalf("idsync config put %s: exit %d\n%s%s", ampDest, code, out, errOut)
	}

	// An operator allows records up to 8 MiB on the input topic (the
	// embedded one has the broker's 1 MiB default), so that a record above
	// processing.max_record_bytes (1 MiB) and above the producer's 4 MiB
	// limit can reach idsync: it must be dead-lettered (bounded), not stop it.
	adm := kadm.NewClient(e.client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if resps, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: ptr("8388608")}}, e.input); err != nil || resps[0].Err != nil {
		t.Fatalf("raising max.message.bytes of %s: %v %v", e.input, err, resps)
	}

	now := time.Now().UTC()
	cases := hxCases(run, segment, ampAudience, ampDest, now)
	dir := t.TempDir()
	var files []string
	for i, c := range cases {
		f := filepath.Join(dir, fmt.Sprintf("%03d.json", i))
		if err := os.WriteFile(f, c.value, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	// One kcat run, one file per record, all on one key: one partition, in
	// order (idempotent producer).
	start := time.Now()
	args := append([]string{"-P", "-b", e.broker, "-t", e.input, "-k", key, "-q",
		"-X", "enable.idempotence=true", "-X", "message.max.bytes=16777216"}, files...)
	if out, err := exec.Command(kcat, args...).CombinedOutput(); err != nil {
		e.fatalIfExited(t)
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	t.Logf("produced %d records with kcat in %s", len(cases), time.Since(start).Round(time.Millisecond))

	// Where they landed: the input records of the key, in order, with sizes.
	var partition int32 = -1
	out := hxConsume(t, kcat, e, e.input, "-f", `%k\t%p\t%o\t%S\n`)
	var offsets []int64
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 || f[0] != key {
			continue
		}
		p, _ := strconv.Atoi(f[1])
		o, _ := strconv.ParseInt(f[2], 10, 64)
		size, _ := strconv.Atoi(f[3])
		if partition >= 0 && int32(p) != partition {
			t.Fatalf("records of one key on partitions %d and %d", partition, p)
		}
		partition = int32(p)
		if i := len(offsets); i < len(cases) && size != len(cases[i].value) {
			t.Fatalf("input record %d of the key has %d bytes, the case %q has %d: order lost", i, size, cases[i].name, len(cases[i].value))
		}
		offsets = append(offsets, o)
	}
	if len(offsets) != len(cases) {
		t.Fatalf("the input holds %d records of key %s, %d were produced", len(offsets), key, len(cases))
	}
	byOffset := map[int64]int{}
	for i, o := range offsets {
		byOffset[o] = i
	}

	// Wait (bounded) until every good event is delivered to both demo
	// destinations of its audience and every hostile one is dead-lettered.
	var good, hostile []int
	for i, c := range cases {
		if c.code == "" {
			good = append(good, i)
		} else {
			hostile = append(hostile, i)
		}
	}
	dests := []string{"fbca_demo", "gads_demo"}
	var seen hxSeen
	deadline := time.Now().Add(45 * time.Second)
	for {
		seen = hxRead(t, kcat, e, key, segment, append(dests, ampDest), byOffset)
		missing := 0
		for _, i := range good {
			for _, d := range dests {
				if len(seen.outputs[d][cases[i].mid+":"+d+":0"]) == 0 {
					missing++
				}
			}
		}
		for _, i := range hostile {
			if len(seen.dlq[i]) == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) || !e.running() {
			break
		}
		time.Sleep(time.Second)
	}
	elapsed := time.Since(start)

	// Good events: delivered once to each destination, in input order.
	delivered := 0
	for _, d := range dests {
		last, lastName := int64(-1), ""
		var missing []string
		for _, i := range good {
			pos := seen.outputs[d][cases[i].mid+":"+d+":0"]
			switch {
			case len(pos) == 0:
				missing = append(missing, fmt.Sprintf("%q (input offset %d)", cases[i].name, offsets[i]))
				continue
			case len(pos) > 1:
				t.Errorf("%s: good event %q delivered %d times", d, cases[i].name, len(pos))
			}
			delivered++
			if pos[0] < last {
				t.Errorf("%s: good event %q at offset %d, before %q at %d: per-profile order lost", d, cases[i].name, pos[0], lastName, last)
			}
			last, lastName = pos[0], cases[i].name
		}
		if len(missing) > 6 {
			missing = append(missing[:3], append([]string{"..."}, missing[len(missing)-3:]...)...)
		}
		if len(missing) > 0 {
			t.Errorf("%s: good events not delivered: %s", d, strings.Join(missing, ", "))
		}
	}
	if after := hxCountAfter(seen, cases, good, dests); after < 50*len(dests) {
		t.Errorf("%d of the %d outputs of the 50 good events that follow the hostile ones were delivered", after, 50*len(dests))
	}
	// Hostile events: dead-lettered once each, with their code (and
	// destination), never delivered anywhere.
	for _, i := range hostile {
		c := cases[i]
		got := seen.dlq[i]
		if len(got) == 0 {
			t.Errorf("hostile event %q (input offset %d): not in the dead-letter topic, want code %s", c.name, offsets[i], c.code)
			continue
		}
		if len(got) > 1 {
			t.Errorf("hostile event %q: %d dead letters %v, want one", c.name, len(got), got)
		}
		t.Logf("%-42s offset %d: %d bytes → %s %s (%d bytes): %s", c.name, offsets[i], len(c.value), got[0].code, got[0].dest, got[0].bytes, got[0].msg)
		if got[0].code != string(c.code) || got[0].dest != c.dest {
			t.Errorf("hostile event %q: dead-lettered with code %q destination %q, want %q %q (%s)", c.name, got[0].code, got[0].dest, c.code, c.dest, got[0].msg)
		}
		if got[0].topic != e.input {
			t.Errorf("hostile event %q: %s header %q, want %q", c.name, idsync.HeaderSourceTopic, got[0].topic, e.input)
		}
		if got[0].bytes > 4<<20 {
			t.Errorf("hostile event %q: its dead letter holds %d bytes, above the 4 MiB record limit", c.name, got[0].bytes)
		}
	}
	for i, g := range seen.dlq {
		if cases[i].code == "" {
			t.Errorf("good event %q dead-lettered: %v", cases[i].name, g)
		}
	}
	if n := seen.outputs[ampDest]; len(n) > 0 || seen.ampRecords > 0 {
		t.Errorf("%s: %d records produced for the amplifying events (%d bytes); want none (dead-lettered)", ampDest, seen.ampRecords, seen.ampBytes)
	}
	goodIDs := map[string]bool{}
	for _, i := range good {
		for _, d := range dests {
			goodIDs[cases[i].mid+":"+d+":0"] = true
		}
	}
	for _, d := range dests {
		for mid := range seen.outputs[d] {
			if !goodIDs[mid] {
				t.Errorf("%s: unexpected record %q for profile %s", d, mid, segment)
			}
		}
	}
	if len(seen.unknownDLQ) > 0 {
		t.Errorf("dead letters of key %s at input offsets the test did not produce: %v", key, seen.unknownDLQ)
	}

	// The input is committed past the last event (nothing waits).
	cl := e.client(t)
	cadm := kadm.NewClient(cl)
	var committed int64 = -1
	for end := time.Now().Add(10 * time.Second); ; {
		if offs, err := cadm.FetchOffsets(ctx, "idsync"); err == nil {
			if o, ok := offs.Lookup(e.input, partition); ok {
				committed = o.At
			}
		}
		if committed > offsets[len(offsets)-1] || time.Now().After(end) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if committed <= offsets[len(offsets)-1] {
		t.Errorf("input partition %d of group idsync committed at %d (-1: never); the last event is at offset %d: the partition is stuck", partition, committed, offsets[len(offsets)-1])
	}

	// The DLQ metric agrees with the dead-letter topic, code by code:
	// a scrape before the topic is read counts no more, one after no less.
	before := scrapeSeries(t, e.ops)
	all := hxDLQCodes(t, kcat, e)
	time.Sleep(500 * time.Millisecond) // acknowledgements of what kcat saw are counted by now
	after := scrapeSeries(t, e.ops)
	mine := map[string]int{}
	for _, i := range hostile {
		mine[string(cases[i].code)]++
	}
	for _, code := range idsync.Codes {
		series := fmt.Sprintf(`idsync_dlq_records_total{code=%q}`, code)
		b, okB := before[series]
		a := after[series]
		if !okB {
			t.Errorf("/metrics has no series %s", series)
			continue
		}
		if float64(all[string(code)]) < b || float64(all[string(code)]) > a {
			t.Errorf("%s: %v before and %v after reading the dead-letter topic, which holds %d", series, b, a, all[string(code)])
		}
		if a < float64(mine[string(code)]) {
			t.Errorf("%s = %v, below the %d hostile events of that code", series, a, mine[string(code)])
		}
	}

	// Still running, healthy, and memory bounded.
	if !e.running() {
		t.Fatalf("idsync exited: %v", e.exitErr)
	}
	if resp, err := http.Get("http://" + e.ops + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/healthz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Nothing waits (a hostile event is dead-lettered, never waited on).
	if resp, err := http.Get("http://" + e.ops + "/readyz"); err != nil {
		t.Errorf("/readyz: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || bytes.Contains(b, []byte("waiting:")) {
			t.Errorf("/readyz %d after the hostile events:\n%s", resp.StatusCode, b)
		}
	}
	if v, ok := after[`idsync_partitions_waiting{reason="config_unavailable"}`]; !ok {
		t.Errorf(`idsync_partitions_waiting{reason="config_unavailable"} is not exported`)
	} else if v != 0 {
		t.Errorf(`idsync_partitions_waiting{reason="config_unavailable"} = %v after the hostile events, want 0`, v)
	}
	peak := e.watch.peak()
	t.Logf("hostile: %d events (%d hostile, %d good) on one key; %d/%d good outputs delivered, %d/%d hostile dead-lettered, in %s; peak RSS %d MiB",
		len(cases), len(hostile), len(good), delivered, len(good)*len(dests), len(seen.dlq)-hxCountGood(seen, cases), len(hostile), elapsed.Round(time.Millisecond), peak>>20)
	if e.watch.killed() {
		t.Errorf("idsync passed %d MiB RSS and was killed", hxRSSLimit>>20)
	}
}

// hxCase is one input record of the test and the dead-letter code the
// contract gives it ("" for a good event, delivered).
type hxCase struct {
	name  string
	mid   string
	value []byte
	code  idsync.Code
	dest  string // destination id of a per-destination dead letter
}

// hxCases returns: a good event, every hostile class, then 50 good events,
// all for profile segment.
func hxCases(run, segment, ampAudience, ampDest string, now time.Time) []hxCase {
	ts := now.Format(time.RFC3339Nano)
	created := now.Add(-24 * time.Hour).Format(time.RFC3339)
	id := func(typ, v string) map[string]string {
		return map[string]string{"type": typ, "id": v, "created_at": created}
	}
	mk := func(mid, space, audience string, ids []map[string]string, mod func(map[string]any)) []byte {
		ev := map[string]any{"message_id": mid, "timestamp": ts, "space_id": space, "audience_id": audience,
			"audience_key": "first_time_shopper", "action": "entered", "profile": map[string]string{"segment_id": segment},
			"external_ids": ids}
		if mod != nil {
			mod(ev)
		}
		b, err := json.Marshal(ev)
		if err != nil {
			panic(err)
		}
		return b
	}
	goodIDs := func(i int) []map[string]string {
		return []map[string]string{id("user_id", "u_"+run), id("email", fmt.Sprintf("hx.%s.%d@example.com", run, i)),
			id("phone", fmt.Sprintf("+1 (650) 253-%04d", i)), id("ios.idfa", fmt.Sprintf("AECE52E7-03EE-455A-B3C4-%012X", i))}
	}
	var cs []hxCase
	good := func(name string, i int) {
		mid := fmt.Sprintf("hx_%s_good_%03d", run, i)
		cs = append(cs, hxCase{name: name, mid: mid, value: mk(mid, "spa_demo", "aud_first_time_shopper", goodIDs(i), nil)})
	}
	bad := func(name string, code idsync.Code, dest string, value []byte) {
		cs = append(cs, hxCase{name: name, mid: "", value: value, code: code, dest: dest})
	}
	badEvent := func(name string, code idsync.Code, dest, space, audience string, ids []map[string]string, mod func(map[string]any)) {
		mid := fmt.Sprintf("hx_%s_%s", run, strings.NewReplacer(" ", "_", "/", "_").Replace(name))
		cs = append(cs, hxCase{name: name, mid: mid, value: mk(mid, space, audience, ids, mod), code: code, dest: dest})
	}

	good("good before", 0)
	// Keys the store can never hold.
	badEvent("space_id with a space", idsync.CodeInvalidKey, "", "spa demo", "aud_first_time_shopper", goodIDs(1), nil)
	badEvent("space_id with a slash", idsync.CodeInvalidKey, "", "spa/demo", "aud_first_time_shopper", goodIDs(1), nil)
	badEvent("space_id of 200 characters", idsync.CodeInvalidKey, "", "spa_"+strings.Repeat("d", 196), "aud_first_time_shopper", goodIDs(1), nil)
	badEvent("space_id not ASCII", idsync.CodeInvalidKey, "", "spa_démo", "aud_first_time_shopper", goodIDs(1), nil)
	badEvent("audience_id with a slash", idsync.CodeInvalidKey, "", "spa_demo", "aud/first_time_shopper", goodIDs(1), nil)
	badEvent("audience_id not ASCII", idsync.CodeInvalidKey, "", "spa_demo", "aud_fïrst_time_shopper", goodIDs(1), nil)
	// Bytes that are not an event.
	bad("malformed JSON", idsync.CodeMalformedJSON, "", []byte(`{"message_id":"hx_`+run+`_malformed","timestamp":"`+ts+`","space_id":`))
	valid := mk("hx_"+run+"_utf8", "spa_demo", "aud_first_time_shopper", goodIDs(1), nil)
	bad("invalid UTF-8", idsync.CodeMalformedJSON, "", bytes.Replace(valid, []byte(segment), []byte(segment+"\xff\xfe"), 1))
	rng := rand.New(rand.NewPCG(12, 12))
	garbage := make([]byte, 512)
	for i := range garbage {
		garbage[i] = byte(rng.IntN(256))
	}
	garbage[0] = 0xff // never valid JSON
	bad("random bytes", idsync.CodeMalformedJSON, "", garbage)
	// 5 MiB: above processing.max_record_bytes and above the producer's
	// 4 MiB record limit, so the dead letter cannot simply copy it.
	badEvent("record of 5 MiB", idsync.CodeTooLarge, "", "spa_demo", "aud_first_time_shopper", goodIDs(1), func(ev map[string]any) {
		ev["traits"] = map[string]string{"notes": strings.Repeat("x", 5<<20)}
	})
	// Amplifying Facebook events (every mapping `all`): 400 emails x 400
	// idfas x 1 phone = 160,000 rows (16 records of 10,000 rows under the
	// old row counting, so max_combinations alone lets it through), and
	// 330 x 330 x 330 = 36 million rows.
	var amp1, amp2 []map[string]string
	for i := range 400 {
		amp1 = append(amp1, id("email", fmt.Sprintf("amp%d.%s@example.com", i, run)), id("ios.idfa", fmt.Sprintf("BECE52E7-03EE-455A-B3C4-%012X", i)))
	}
	amp1 = append(amp1, id("phone", "+1 (650) 253-0000"))
	for i := range 330 {
		amp2 = append(amp2, id("email", fmt.Sprintf("amq%d.%s@example.com", i, run)), id("ios.idfa", fmt.Sprintf("CECE52E7-03EE-455A-B3C4-%012X", i)),
			id("phone", fmt.Sprintf("+1 (650) 253-%04d", i)))
	}
	badEvent("amplifying Facebook event, 160,000 rows", idsync.CodeFanoutLimit, ampDest, "spa_demo", ampAudience, amp1, nil)
	badEvent("amplifying Facebook event, 36 million rows", idsync.CodeFanoutLimit, ampDest, "spa_demo", ampAudience, amp2, nil)
	// Schema limits.
	badEvent("timestamp 72 h ahead", idsync.CodeInvalidTimestamp, "", "spa_demo", "aud_first_time_shopper", goodIDs(1), func(ev map[string]any) {
		ev["timestamp"] = now.Add(72 * time.Hour).Format(time.RFC3339Nano)
	})
	badEvent("sync.started_at 72 h ahead", idsync.CodeInvalidTimestamp, "", "spa_demo", "aud_first_time_shopper", goodIDs(1), func(ev map[string]any) {
		ev["sync"] = map[string]string{"id": "run_hx", "started_at": now.Add(72 * time.Hour).Format(time.RFC3339)}
	})
	var many []map[string]string
	for i := range 1001 {
		many = append(many, id("email", fmt.Sprintf("many%d@example.com", i)))
	}
	badEvent("1001 external ids", idsync.CodeSchemaViolation, "", "spa_demo", "aud_first_time_shopper", many, nil)
	for i := 1; i <= 50; i++ {
		good(fmt.Sprintf("good after %d", i), i)
	}
	return cs
}

// hxCountAfter counts the outputs of the good events that follow the first
// hostile one.
func hxCountAfter(seen hxSeen, cases []hxCase, good []int, dests []string) int {
	n := 0
	for _, i := range good {
		if i == 0 {
			continue
		}
		for _, d := range dests {
			if len(seen.outputs[d][cases[i].mid+":"+d+":0"]) > 0 {
				n++
			}
		}
	}
	return n
}

func hxCountGood(seen hxSeen, cases []hxCase) int {
	n := 0
	for i := range seen.dlq {
		if cases[i].code == "" {
			n++
		}
	}
	return n
}

// hxDeadLetter is what the test reads of one dead letter.
type hxDeadLetter struct {
	code, dest, msg, topic string
	bytes                  int
}

// hxSeen is what the destination topics and the DLQ hold for the test's key.
type hxSeen struct {
	outputs    map[string]map[string][]int64 // destination → message_id → offsets
	dlq        map[int][]hxDeadLetter        // case index → dead letters
	unknownDLQ []string
	ampRecords int
	ampBytes   int
}

// kcatJSON is kcat's -J envelope.
type kcatJSON struct {
	Topic     string          `json:"topic"`
	Partition int32           `json:"partition"`
	Offset    int64           `json:"offset"`
	Headers   []string        `json:"headers"`
	Key       json.RawMessage `json:"key"`
	Payload   json.RawMessage `json:"payload"`
}

func (k kcatJSON) str(raw json.RawMessage) string {
	var s string
	if len(raw) > 0 && raw[0] == '"' {
		_ = json.Unmarshal(raw, &s)
		return s
	}
	return string(raw)
}

func (k kcatJSON) header(name string) string {
	for i := 0; i+1 < len(k.Headers); i += 2 {
		if k.Headers[i] == name {
			return k.Headers[i+1]
		}
	}
	return ""
}

// hxRead reads the destination topics and the dead-letter topic with kcat.
func hxRead(t *testing.T, kcat string, e *hxEmbedded, key, segment string, dests []string, byOffset map[int64]int) hxSeen {
	t.Helper()
	seen := hxSeen{outputs: map[string]map[string][]int64{}, dlq: map[int][]hxDeadLetter{}}
	for _, d := range dests {
		topic := strings.Replace(e.template, "{destination_id}", d, 1)
		seen.outputs[d] = map[string][]int64{}
		if strings.HasPrefix(d, "fbca_amp") {
			// Possibly huge records: only keys and sizes.
			out, _ := hxConsumeOptional(t, kcat, e, topic, "-f", `%k\t%S\n`)
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Split(line, "\t"); len(f) == 2 && f[0] == segment {
					seen.ampRecords++
					n, _ := strconv.Atoi(f[1])
					seen.ampBytes += n
				}
			}
			continue
		}
		out, _ := hxConsumeOptional(t, kcat, e, topic, "-J")
		hxEachJSON(t, out, func(r kcatJSON) {
			if r.str(r.Key) != segment {
				return
			}
			var env struct {
				MessageID string `json:"message_id"`
			}
			if err := json.Unmarshal([]byte(r.str(r.Payload)), &env); err != nil {
				t.Errorf("%s offset %d: output is not JSON: %v", topic, r.Offset, err)
				return
			}
			seen.outputs[d][env.MessageID] = append(seen.outputs[d][env.MessageID], r.Offset)
		})
	}
	out, _ := hxConsumeOptional(t, kcat, e, e.dlq, "-J")
	hxEachJSON(t, out, func(r kcatJSON) {
		if r.str(r.Key) != key {
			return
		}
		off, err := strconv.ParseInt(r.header(idsync.HeaderSourceOffset), 10, 64)
		i, ok := byOffset[off]
		if err != nil || !ok {
			seen.unknownDLQ = append(seen.unknownDLQ, fmt.Sprintf("%s=%q %s=%q", idsync.HeaderSourceOffset, r.header(idsync.HeaderSourceOffset),
				idsync.HeaderErrorCode, r.header(idsync.HeaderErrorCode)))
			return
		}
		seen.dlq[i] = append(seen.dlq[i], hxDeadLetter{code: r.header(idsync.HeaderErrorCode), dest: r.header(idsync.HeaderDestinationID),
			msg: r.header(idsync.HeaderError), topic: r.header(idsync.HeaderSourceTopic), bytes: len(r.str(r.Payload))})
	})
	return seen
}

// hxDLQCodes counts every record of the dead-letter topic by code.
func hxDLQCodes(t *testing.T, kcat string, e *hxEmbedded) map[string]int {
	t.Helper()
	out, _ := hxConsumeOptional(t, kcat, e, e.dlq, "-f", `%h\n`)
	codes := map[string]int{}
	re := regexp.MustCompile(`(?:^|,)` + regexp.QuoteMeta(idsync.HeaderErrorCode) + `=([a-z_]+)`)
	for _, line := range strings.Split(string(out), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			codes[m[1]]++
		}
	}
	return codes
}

func hxEachJSON(t *testing.T, out []byte, f func(kcatJSON)) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r kcatJSON
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Errorf("kcat -J line is not JSON: %v: %.200s", err, sc.Bytes())
			continue
		}
		f(r)
	}
	if err := sc.Err(); err != nil {
		t.Errorf("reading kcat output: %v", err)
	}
}

// hxKcat returns the path of kcat, failing the test when it is missing.
func hxKcat(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat not found: run deploy/local/install.sh (it installs Debian's kcat)")
	}
	return p
}

// hxKcatConsume are the consumer settings: records up to 16 MiB.
var hxKcatConsume = []string{"-C", "-q", "-X", "fetch.message.max.bytes=16777216",
	"-X", "receive.message.max.bytes=134217728", "-X", "fetch.max.bytes=67108864"}

// hxConsume reads a topic from its start offsets to the end offsets it has
// when called, with kcat, partition by partition.
//
// Not `kcat -e`: against the embedded broker with the demo traffic flowing,
// librdkafka sometimes never sees the end of a busy partition (each fetch
// returns a record or two more), so -e does not exit. The offsets are taken
// with kcat too (-L for the partitions, -Q for the offsets) and each
// partition is read with -o <start> -c <count>: the logs here have no gaps
// (no transactions, no compaction).
func hxConsume(t *testing.T, kcat string, e *hxEmbedded, topic string, format ...string) []byte {
	t.Helper()
	out, ok := hxConsumeOptional(t, kcat, e, topic, format...)
	if !ok {
		t.Fatalf("topic %s does not exist", topic)
	}
	return out
}

// hxConsumeOptional is hxConsume for a topic that may not exist yet (no
// record was produced to it): empty and false then.
func hxConsumeOptional(t *testing.T, kcat string, e *hxEmbedded, topic string, format ...string) ([]byte, bool) {
	t.Helper()
	var meta struct {
		Topics []struct {
			Topic      string `json:"topic"`
			Error      string `json:"error"`
			Partitions []struct {
				Partition int32 `json:"partition"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	out, errOut, err := hxRunKcat(kcat, "-b", e.broker, "-L", "-J", "-t", topic)
	if err == nil {
		err = json.Unmarshal(out, &meta)
	}
	if err != nil {
		e.fatalIfExited(t)
		t.Fatalf("kcat -L -t %s: %v\n%s", topic, err, errOut)
	}
	var parts []int32
	for _, tm := range meta.Topics {
		if tm.Topic != topic || tm.Error != "" {
			continue
		}
		for _, p := range tm.Partitions {
			parts = append(parts, p.Partition)
		}
	}
	if len(parts) == 0 {
		return nil, false
	}
	start, end := hxOffsets(t, kcat, e, topic, parts, -2), hxOffsets(t, kcat, e, topic, parts, -1)
	outs := make([][]byte, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		n := end[p] - start[p]
		if n <= 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := append(append([]string{"-b", e.broker, "-t", topic, "-p", strconv.Itoa(int(p)),
				"-o", strconv.FormatInt(start[p], 10), "-c", strconv.FormatInt(n, 10)}, hxKcatConsume...), format...)
			o, eo, err := hxRunKcat(kcat, args...)
			if err != nil {
				err = fmt.Errorf("kcat -C -t %s -p %d -o %d -c %d: %w\n%s", topic, p, start[p], n, err, eo)
			}
			outs[i], errs[i] = o, err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			e.fatalIfExited(t)
			t.Fatal(err)
		}
	}
	return bytes.Join(outs, nil), true
}

// hxOffsets queries offsets of topic's partitions with kcat -Q at
// timestamp ts (-2: the start of each log, -1: its end).
func hxOffsets(t *testing.T, kcat string, e *hxEmbedded, topic string, parts []int32, ts int) map[int32]int64 {
	t.Helper()
	args := []string{"-b", e.broker, "-Q"}
	for _, p := range parts {
		args = append(args, "-t", fmt.Sprintf("%s:%d:%d", topic, p, ts))
	}
	out, errOut, err := hxRunKcat(kcat, args...)
	if err != nil {
		e.fatalIfExited(t)
		t.Fatalf("kcat -Q -t %s: %v\n%s", topic, err, errOut)
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(topic) + ` \[(\d+)\] offset (-?\d+)$`)
	offs := map[int32]int64{}
	for _, line := range strings.Split(string(out), "\n") {
		if m := re.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			p, _ := strconv.Atoi(m[1])
			o, _ := strconv.ParseInt(m[2], 10, 64)
			offs[int32(p)] = o
		}
	}
	if len(offs) != len(parts) {
		t.Fatalf("kcat -Q -t %s: offsets of %d of %d partitions:\n%s%s", topic, len(offs), len(parts), out, errOut)
	}
	return offs
}

// hxRunKcat runs kcat, bounded by 30 s.
func hxRunKcat(kcat string, args ...string) (out, errOut []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (timed out after 30s)", err)
	}
	return o.Bytes(), e.Bytes(), err
}

// hxEmbedded is `idsync run --embedded` and what its banner says.
type hxEmbedded struct {
	cmd                                      *exec.Cmd
	out                                      *hxBuffer
	logPath                                  string
	broker, input, dlq, template, ops, admin string
	token                                    string
	exited                                   chan struct{}
	exitErr                                  error
	watch                                    *hxRSSWatch
}

// hxRSSLimit: the process is killed above it (the test fails), so that an
// unbounded event cannot take the machine down with it.
const hxRSSLimit = 3 << 30

// hxStartEmbedded runs `idsync run --embedded` as a user would, on ports of
// its own (any free one), and reads the banner.
func hxStartEmbedded(t *testing.T) *hxEmbedded {
	t.Helper()
	dir := t.TempDir()
	e := &hxEmbedded{out: &hxBuffer{}, logPath: filepath.Join(dir, "idsync.log"), exited: make(chan struct{})}
	logf, err := os.Create(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "run", "--embedded", "--ops.listen", "127.0.0.1:0", "--admin.listen", "127.0.0.1:0")
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "IDSYNC_EMBEDDED_KAFKA_PORT=0")
	cmd.Stdout = e.out
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.cmd = cmd
	go func() {
		e.exitErr = cmd.Wait()
		logf.Close()
		close(e.exited)
	}()
	e.watch = hxWatchRSS(cmd.Process.Pid, hxRSSLimit)
	t.Cleanup(func() {
		e.watch.stop()
		select {
		case <-e.exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-e.exited:
			case <-time.After(25 * time.Second):
				_ = cmd.Process.Kill()
				<-e.exited
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(e.logPath)
			t.Logf("idsync --embedded stdout:\n%s\nlog (tail):\n%s", tail([]byte(e.out.String()), 30), tail(b, 40))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(e.out.String(), "Ctrl-C stops idsync") {
		if !e.running() {
			t.Fatalf("idsync run --embedded exited at start: %v\n%s", e.exitErr, e.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("no start banner within 60s:\n%s", e.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, line := range strings.Split(e.out.String(), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "kafka":
			e.broker = f[1]
			if m := regexp.MustCompile(`input (\S+), dead letters (\S+), outputs (\S+)`).FindStringSubmatch(line); m != nil {
				e.input, e.dlq, e.template = m[1], m[2], m[3]
			}
		case len(f) >= 2 && f[0] == "metrics":
			e.ops = strings.TrimSuffix(strings.TrimPrefix(f[1], "http://"), "/metrics")
		case len(f) >= 3 && f[0] == "admin" && f[1] == "API":
			e.admin = strings.TrimPrefix(f[2], "http://")
		}
		if m := regexp.MustCompile(`IDSYNC_ADMIN_TOKEN=(\S+)`).FindStringSubmatch(line); m != nil {
			e.token = m[1]
		}
	}
	if e.broker == "" || e.input == "" || e.dlq == "" || e.ops == "" || e.admin == "" || e.token == "" {
		t.Fatalf("banner lacks an address or the token (kafka %q input %q dlq %q ops %q admin %q token %q):\n%s",
			e.broker, e.input, e.dlq, e.ops, e.admin, e.token, e.out.String())
	}
	// Ready: partitions assigned and the demo configuration readable.
	for {
		resp, err := http.Get("http://" + e.ops + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("idsync --embedded not ready within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return e
}

// fatalIfExited fails the test when the process has ended (its embedded
// broker with it), naming how it ended and what it logged last.
func (e *hxEmbedded) fatalIfExited(t *testing.T) {
	t.Helper()
	select {
	case <-e.exited:
	case <-time.After(500 * time.Millisecond):
		return
	}
	b, _ := os.ReadFile(e.logPath)
	t.Fatalf("idsync run --embedded exited (%v) while the test ran; its last log lines:\n%s", e.exitErr, tail(b, 3))
}

func (e *hxEmbedded) running() bool {
	select {
	case <-e.exited:
		return false
	default:
		return true
	}
}

// client is a franz-go client on the embedded broker, for what kcat cannot
// do (topic configuration, committed offsets).
func (e *hxEmbedded) client(t *testing.T) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// cli runs the binary as the admin CLI the banner suggests.
func (e *hxEmbedded) cli(args ...string) (code int, stdout, stderr string) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cleanEnv(), "IDSYNC_ADMIN_ADDR=http://"+e.admin, "IDSYNC_ADMIN_TOKEN="+e.token)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		errb.WriteString(err.Error())
	}
	return code, out.String(), errb.String()
}

// hxBuffer is a bytes.Buffer safe for a writer and readers.
type hxBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *hxBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *hxBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// hxRSSWatch samples a process's resident set and kills it above a limit.
type hxRSSWatch struct {
	mu       sync.Mutex
	max      int64
	overshot bool
	done     chan struct{}
	once     sync.Once
}

func hxWatchRSS(pid int, limit int64) *hxRSSWatch {
	w := &hxRSSWatch{done: make(chan struct{})}
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-tick.C:
			}
			rss := hxRSS(pid)
			if rss < 0 {
				return
			}
			w.mu.Lock()
			w.max = max(w.max, rss)
			if rss > limit && !w.overshot {
				w.overshot = true
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *hxRSSWatch) stop() { w.once.Do(func() { close(w.done) }) }

func (w *hxRSSWatch) peak() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.max
}

func (w *hxRSSWatch) killed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.overshot
}

// hxRSS is a process's resident set in bytes (-1 once it is gone).
func hxRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return -1
}

// scrapeSeries reads /metrics of the ops listener at addr into a map from
// series (name with its labels, as exposed: `name{a="x"}`) to value.
func scrapeSeries(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Errorf("scraping %s: %v", addr, err)
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// seriesOf returns the series of metric name (any labels), sorted, from a
// scrape.
func seriesOf(m map[string]float64, name string) []string {
	var out []string
	for s := range m {
		if s == name || strings.HasPrefix(s, name+"{") {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
