package idsync

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files of idsync/testdata/golden from the current output")

// goldenCase is one input file of testdata/golden: an event, the
// connections of its audience and the processor's clock.
type goldenCase struct {
	Doc         string          `json:"doc"`
	Now         time.Time       `json:"now"`
	Options     *goldenOptions  `json:"options"`
	Event       json.RawMessage `json:"event"`
	Connections []goldenConn    `json:"connections"`
}

type goldenOptions struct {
	MaxCombinations int `json:"max_combinations"`
	FacebookMaxRows int `json:"facebook_max_rows"`
}

// goldenConn is a connection whose versions hold raw configurations, parsed
// with ParseConfig as the store would before keeping them.
type goldenConn struct {
	DestinationID string `json:"destination_id"`
	Versions      []struct {
		Version     int64           `json:"version"`
		UpdatedAt   time.Time       `json:"updated_at"`
		EffectiveAt time.Time       `json:"effective_at"`
		Deleted     bool            `json:"deleted"`
		Config      json.RawMessage `json:"config"`
	} `json:"versions"`
}

// goldenResult is Result as written to the .golden.json files.
type goldenResult struct {
	Outputs       []goldenOutput          `json:"outputs"`
	NoConnections bool                    `json:"no_connections"`
	Unmatched     []DestinationType       `json:"unmatched"`
	Invalid       map[DestinationType]int `json:"invalid"`
	DeadLetters   []DeadLetter            `json:"dead_letters"`
}

type goldenOutput struct {
	DestinationID   string          `json:"destination_id"`
	DestinationType DestinationType `json:"destination_type"`
	Key             string          `json:"key"`
	MessageID       string          `json:"message_id"`
	ConfigVersion   int64           `json:"config_version"`
	Value           json.RawMessage `json:"value"`
}

func loadGolden(t testing.TB, path string) (*Event, []Connection, time.Time, Options) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var gc goldenCase
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&gc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	opt := DefaultOptions()
	if gc.Options != nil {
		if gc.Options.MaxCombinations > 0 {
			opt.MaxCombinations = gc.Options.MaxCombinations
		}
		if gc.Options.FacebookMaxRows > 0 {
			opt.FacebookMaxRows = gc.Options.FacebookMaxRows
		}
	}
	ev, err := Decode(gc.Event, gc.Now, DefaultLimits())
	if err != nil {
		t.Fatalf("%s: decoding event: %v", path, err)
	}
	var conns []Connection
	for _, c := range gc.Connections {
		conn := Connection{DestinationID: c.DestinationID}
		for _, v := range c.Versions {
			ver := Version{Version: v.Version, UpdatedAt: v.UpdatedAt, EffectiveAt: v.EffectiveAt, Deleted: v.Deleted}
			if !v.Deleted {
				cfg, err := ParseConfig(v.Config)
				if err != nil {
					t.Fatalf("%s: %s v%d: %v", path, c.DestinationID, v.Version, err)
				}
				ver.Config = cfg
			}
			conn.Versions = append(conn.Versions, ver)
		}
		conns = append(conns, conn)
	}
	return ev, conns, gc.Now, opt
}

func renderResult(t *testing.T, res Result) []byte {
	t.Helper()
	gr := goldenResult{NoConnections: res.NoConnections, Unmatched: res.Unmatched, Invalid: res.Invalid, DeadLetters: res.DeadLetters}
	for _, o := range res.Outputs {
		if !json.Valid(o.Value) {
			t.Fatalf("output %s is not valid JSON: %s", o.MessageID, o.Value)
		}
		gr.Outputs = append(gr.Outputs, goldenOutput{o.DestinationID, o.DestinationType, o.Key, o.MessageID, o.ConfigVersion, o.Value})
	}
	out, err := json.MarshalIndent(gr, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// TestGolden runs Process on every testdata/golden/*.in.json and compares
// the result with the .golden.json beside it, byte for byte after
// indentation (so key order is part of the contract). Run with -update to
// rewrite the golden files, then review the diff.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/golden/*.in.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 20 {
		t.Fatalf("found %d golden cases, want at least 20", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		t.Run(name, func(t *testing.T) {
			ev, conns, now, opt := loadGolden(t, in)
			got := renderResult(t, Process(ev, conns, now, opt))
			// Determinism: the same input gives the same bytes.
			if again := renderResult(t, Process(ev, conns, now, opt)); !bytes.Equal(got, again) {
				t.Fatal("Process is not deterministic")
			}
			goldenPath := strings.TrimSuffix(in, ".in.json") + ".golden.json"
			if *update {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("reading golden file (run go test ./idsync -run TestGolden -update): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the output:\n--- got\n%s", goldenPath, got)
			}
		})
	}
}
