package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

const docsPath = "../docs/configuration.md"

// docRow is one row of a reference table of docs/configuration.md.
type docRow struct {
	line                     int
	key, env, flag, def, doc string
}

// docRows returns the reference rows: "| `key` | env | flag | default | meaning |".
func docRows(t *testing.T) []docRow {
	t.Helper()
	raw, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	var rows []docRow
	for i, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 5 {
			t.Errorf("%s:%d: want 5 cells, got %d: %s", docsPath, i+1, len(cells), line)
			continue
		}
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		rows = append(rows, docRow{line: i + 1, key: strings.Trim(cells[0], "`"), env: cells[1], flag: cells[2], def: cells[3], doc: cells[4]})
	}
	return rows
}

func code(s string) string { return "`" + s + "`" }

// TestDocsMatchDefault checks docs/configuration.md documents every setting
// of Config, and nothing else, with Default's value, its environment
// variable and its flag.
func TestDocsMatchDefault(t *testing.T) {
	rows := docRows(t)
	documented := map[string]docRow{}
	for _, r := range rows {
		if _, dup := documented[r.key]; dup {
			t.Errorf("%s:%d: %s documented twice", docsPath, r.line, r.key)
		}
		documented[r.key] = r
		if r.doc == "" {
			t.Errorf("%s:%d: %s has no meaning", docsPath, r.line, r.key)
		}
	}
	keys := map[string]bool{}
	for _, k := range allKeys() {
		keys[k] = true
		if _, ok := documented[k]; !ok {
			t.Errorf("setting %s is not documented in %s", k, docsPath)
		}
	}
	for k, r := range documented {
		if !keys[k] {
			t.Errorf("%s:%d: %s is not a setting", docsPath, r.line, k)
		}
	}

	d := reflect.ValueOf(Default())
	for _, k := range allKeys() {
		r, ok := documented[k]
		if !ok {
			continue
		}
		wantEnv, wantFlag, wantDef := "—", "—", "—"
		if e := envVar(k); e != "" {
			wantEnv = code(e)
		}
		if f := flagName(k); f != "" {
			wantFlag = code("--" + f)
		}
		if r.env != wantEnv {
			t.Errorf("%s:%d: %s env var %s, want %s", docsPath, r.line, k, r.env, wantEnv)
		}
		if r.flag != wantFlag {
			t.Errorf("%s:%d: %s flag %s, want %s", docsPath, r.line, k, r.flag, wantFlag)
		}
		var l *leaf
		for i := range configLeaves {
			if configLeaves[i].key == k {
				l = &configLeaves[i]
			}
		}
		if l == nil { // a field of a list element: no default
			if r.def != wantDef {
				t.Errorf("%s:%d: %s default %s, want %s", docsPath, r.line, k, r.def, wantDef)
			}
			continue
		}
		v := d.FieldByIndex(l.index)
		if l.typ == durationType {
			got, err := time.ParseDuration(strings.Trim(r.def, "`"))
			if err != nil || got != time.Duration(v.Int()) {
				t.Errorf("%s:%d: %s default %s, want %s", docsPath, r.line, k, r.def, formatDuration(time.Duration(v.Int())))
			}
			continue
		}
		if wantDef = code(formatDefault(v)); r.def != wantDef {
			t.Errorf("%s:%d: %s default %s, want %s", docsPath, r.line, k, r.def, wantDef)
		}
	}
}

// TestDocsExampleLoads loads the example idsync.yaml of the docs, with its
// secret files in place.
func TestDocsExampleLoads(t *testing.T) {
	raw, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(string(raw))
	if m == nil {
		t.Fatal("no yaml example in " + docsPath)
	}
	secrets := map[string]string{}
	for _, name := range regexp.MustCompile(`/run/secrets/([a-z-]+)`).FindAllStringSubmatch(m[1], -1) {
		secrets[name[1]] = name[1] + "-value-0123456789\n"
	}
	c := mustLoad(t, src{file: strings.ReplaceAll(m[1], "/run/secrets/", "{dir}/"), files: secrets})
	if c.Kafka.Delivery != ExactlyOnce || c.Redis.Mode() != RedisCluster || len(c.Admin.Tokens) != 2 ||
		c.Admin.Tokens[0].Token != "admin-ui-token-value-0123456789" || c.Kafka.SASL.Password != "kafka-password-value-0123456789" {
		t.Errorf("example loaded as %+v", c)
	}
}
