package schemas_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/idsync/idsync/demo"
	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/schemas"
)

// compiled compiles the four record schemas once per test.
type compiled struct {
	event, config, stored, output *jsonschema.Schema
}

func compile(t testing.TB) compiled {
	t.Helper()
	c, err := schemas.NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) *jsonschema.Schema {
		s, err := c.Compile(schemas.BaseURL + name)
		if err != nil {
			t.Fatalf("compiling %s: %v", name, err)
		}
		return s
	}
	return compiled{get(schemas.Event), get(schemas.ConnectionConfig), get(schemas.ConnectionConfigStored), get(schemas.OutputRecord)}
}

// validate checks raw JSON against s; it returns the validation error, or
// the parse error for bytes that are not JSON.
func validate(s *jsonschema.Schema, raw []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// TestCompileEverySchema compiles every schema file, every schema of the
// OpenAPI document's components and every response schema of its
// operations: each is a valid 2020-12 schema whose references resolve to
// contract files only.
func TestCompileEverySchema(t *testing.T) {
	c, err := schemas.NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".schema.json") {
			n++
			if _, err := c.Compile(schemas.BaseURL + e.Name()); err != nil {
				t.Errorf("%s: %v", e.Name(), err)
			}
		}
	}
	if n != 4 {
		t.Errorf("%d schema files, want 4 (event, configuration as written and stored, output record)", n)
	}
	api, err := schemas.LoadAPI()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Error", "Problem", "Version", "Connection", "Edit", "ConnectionList", "AuditEntry", "History",
		"Mapping", "TypeInfo", "DestinationTypes", "PreviewRequest", "PreviewRecord", "PreviewResponse"} {
		if _, err := c.Compile(schemas.BaseURL + schemas.OpenAPI + "#/components/schemas/" + name); err != nil {
			t.Errorf("components/schemas/%s: %v", name, err)
		}
	}
	ops := api.Operations()
	if len(ops) < 7 {
		t.Fatalf("%d operations in openapi.yaml, want at least 7", len(ops))
	}
	for _, op := range ops {
		statuses := api.Statuses(op)
		if len(statuses) == 0 {
			t.Errorf("%s has no responses", op)
		}
		for _, status := range statuses {
			loc, ok := api.ResponseSchema(op, status)
			if !ok {
				t.Errorf("%s %d has no JSON schema", op, status)
				continue
			}
			if _, err := c.Compile(schemas.BaseURL + loc); err != nil {
				t.Errorf("%s %d: %v", op, status, err)
			}
		}
	}
	// Nothing outside the contract files is ever loaded.
	if _, err := c.Compile("https://json-schema.org/draft/2020-12/schema#/$defs/nope"); err == nil {
		t.Error("the compiler resolved a location outside the contract files")
	}
}

// goldenCase is the part of an idsync/testdata/golden input the schemas
// check.
type goldenCase struct {
	Now         time.Time       `json:"now"`
	Event       json.RawMessage `json:"event"`
	Connections []struct {
		Versions []struct {
			Deleted bool            `json:"deleted"`
			Config  json.RawMessage `json:"config"`
		} `json:"versions"`
	} `json:"connections"`
}

// TestGoldenFiles validates the golden files of package idsync: every
// event against event.schema.json, every configuration against
// connection-config.schema.json and, once ParseConfig applied its defaults,
// against connection-config-stored.schema.json, and every output record
// against output-record.schema.json.
func TestGoldenFiles(t *testing.T) {
	s := compile(t)
	inputs, err := filepath.Glob("../idsync/testdata/golden/*.in.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 20 {
		t.Fatalf("%d golden inputs", len(inputs))
	}
	events, configs, outputs := 0, 0, 0
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		raw, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		var gc goldenCase
		if err := json.Unmarshal(raw, &gc); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if err := validate(s.event, gc.Event); err != nil {
			t.Errorf("%s: event: %v", name, err)
		}
		events++
		for _, c := range gc.Connections {
			for _, v := range c.Versions {
				if v.Deleted {
					continue
				}
				configs++
				if err := validate(s.config, v.Config); err != nil {
					t.Errorf("%s: configuration: %v", name, err)
				}
				checkStored(t, s, name, v.Config)
			}
		}
		golden, err := os.ReadFile(strings.TrimSuffix(in, ".in.json") + ".golden.json")
		if err != nil {
			t.Fatal(err)
		}
		var gr struct {
			Outputs []struct {
				Value json.RawMessage `json:"value"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(golden, &gr); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i, o := range gr.Outputs {
			outputs++
			if err := validate(s.output, o.Value); err != nil {
				t.Errorf("%s: output %d: %v", name, i, err)
			}
		}
	}
	example, err := os.ReadFile("../idsync/testdata/decode/example.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(s.event, example); err != nil {
		t.Errorf("decode/example.json: %v", err)
	}
	if events == 0 || configs == 0 || outputs < 20 {
		t.Fatalf("checked %d events, %d configurations, %d outputs", events, configs, outputs)
	}
}

// checkStored parses raw as the store would before keeping it and checks
// the stored form against connection-config-stored.schema.json.
func checkStored(t *testing.T, s compiled, name string, raw []byte) {
	t.Helper()
	cfg, err := idsync.ParseConfig(raw)
	if err != nil {
		t.Errorf("%s: ParseConfig: %v", name, err)
		return
	}
	stored, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(s.stored, stored); err != nil {
		t.Errorf("%s: stored configuration %s: %v", name, stored, err)
	}
}

// TestDemoTraffic runs a few thousand events of the demo generator through
// Decode and Process with the demo connections, and validates every input
// and output against the schemas: the events idsync accepts are valid, the
// ones it dead-letters are not, and every record it makes is valid.
func TestDemoTraffic(t *testing.T) {
	s := compile(t)
	byAudience := map[string][]idsync.Connection{}
	for _, c := range demo.Connections() {
		if err := validate(s.config, c.Config); err != nil {
			t.Errorf("demo connection %s: %v", c.Destination, err)
		}
		checkStored(t, s, c.Destination, c.Config)
		cfg, err := idsync.ParseConfig(c.Config)
		if err != nil {
			t.Fatal(err)
		}
		byAudience[c.Audience] = append(byAudience[c.Audience], idsync.Connection{DestinationID: c.Destination,
			Versions: []idsync.Version{{Version: 1, Config: cfg}}})
	}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	gen := demo.NewGenerator(17)
	perType := map[idsync.DestinationType]int{}
	bad := 0
	for i := range 3000 {
		e := gen.Next(now.Add(time.Duration(i) * time.Millisecond))
		schemaErr := validate(s.event, e.Value)
		ev, err := idsync.Decode(e.Value, now, idsync.DefaultLimits())
		if err != nil {
			bad++
			if schemaErr == nil {
				t.Errorf("event %d: Decode refused it (%v), the schema accepts it: %s", i, err, e.Value)
			}
			continue
		}
		if schemaErr != nil {
			t.Errorf("event %d: Decode accepted it, the schema refuses it: %v\n%s", i, schemaErr, e.Value)
			continue
		}
		var audience struct {
			AudienceID string `json:"audience_id"`
		}
		_ = json.Unmarshal(e.Value, &audience)
		res := idsync.Process(ev, byAudience[audience.AudienceID], now, idsync.DefaultOptions())
		for _, o := range res.Outputs {
			perType[o.DestinationType]++
			if err := validate(s.output, o.Value); err != nil {
				t.Errorf("event %d: output %s: %v\n%s", i, o.MessageID, err, o.Value)
			}
		}
	}
	if bad == 0 {
		t.Error("no bad demo event: the generator's dead letters were not checked")
	}
	for _, dt := range idsync.DestinationTypes {
		if perType[dt] < 100 {
			t.Errorf("%d outputs of type %s, want at least 100", perType[dt], dt)
		}
	}
}
