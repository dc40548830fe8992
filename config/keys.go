package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// envPrefix starts every environment variable idsync reads.
const envPrefix = "IDSYNC_"

// envConfig names the config file, like the --config flag.
const envConfig = envPrefix + "CONFIG"

// Environment variables with these prefixes belong to the test harness and
// benchmarks, not to the service; Load ignores them.
var envIgnoredPrefixes = []string{envPrefix + "TEST_", envPrefix + "BENCH_",
	// The deploy/local scripts' own settings (deploy/local/common.sh): a
	// user who moves the test stack's directories with them runs the tests,
	// and so the binary, with these set.
	envPrefix + "RUN_DIR", envPrefix + "CACHE_DIR"}

// Environment variables of the idsync command line's client commands
// ("idsync config", "idsync tail"): they are not settings of the service,
// and Load ignores them, so that a shell prepared for the client can run
// "idsync run" too.
const (
	// EnvAdminAddr is the admin API address the client commands call.
	EnvAdminAddr = envPrefix + "ADMIN_ADDR"
	// EnvAdminToken is the bearer token the client commands send.
	EnvAdminToken = envPrefix + "ADMIN_TOKEN"
	// EnvAdminTokenFile names a file holding the client's bearer token.
	EnvAdminTokenFile = envPrefix + "ADMIN_TOKEN_FILE"
	// EnvAdminCAFile names PEM CAs that verify an https admin address.
	EnvAdminCAFile = envPrefix + "ADMIN_CA_FILE"
)

// clientEnv are the client commands' variables, by exact name: a variable
// that is only close to one of them (a typo) is still refused.
var clientEnv = []string{EnvAdminAddr, EnvAdminToken, EnvAdminTokenFile, EnvAdminCAFile}

var durationType = reflect.TypeFor[time.Duration]()

// leaf is one setting: its key (e.g. "kafka.sasl.mechanism") and where it
// lives in a struct.
type leaf struct {
	key   string
	index []int
	typ   reflect.Type
}

// leaves lists the settings of struct type t in field order, prefixing
// their keys with prefix. A list of structs (admin.tokens) is one leaf.
func leaves(t reflect.Type, prefix string) []leaf {
	var out []leaf
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || !f.IsExported() {
			continue
		}
		key := prefix + tag
		if f.Type.Kind() == reflect.Struct {
			for _, l := range leaves(f.Type, key+".") {
				l.index = append([]int{i}, l.index...)
				out = append(out, l)
			}
			continue
		}
		out = append(out, leaf{key: key, index: []int{i}, typ: f.Type})
	}
	return out
}

// configLeaves are the settings of Config.
var configLeaves = leaves(reflect.TypeFor[Config](), "")

// allKeys returns the key of every setting in Config order, for
// documentation and tests. A list of structs is listed as itself ("admin.tokens") and
// then per field of its elements ("admin.tokens[].name").
func allKeys() []string {
	var keys []string
	for _, l := range configLeaves {
		keys = append(keys, l.key)
		if isStructList(l.typ) {
			for _, e := range leaves(l.typ.Elem(), l.key+"[].") {
				keys = append(keys, e.key)
			}
		}
	}
	return keys
}

func isStructList(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct
}

// envVar returns the environment variable that sets key (e.g.
// "IDSYNC_KAFKA_BROKERS" for "kafka.brokers"), or "" when the setting
// cannot come from the environment (lists of structs such as admin.tokens).
func envVar(key string) string {
	for _, l := range configLeaves {
		if l.key == key {
			if isStructList(l.typ) {
				return ""
			}
			return envName(key)
		}
	}
	return ""
}

func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// envKeys maps each environment variable to its key.
var envKeys = func() map[string]leaf {
	m := make(map[string]leaf, len(configLeaves))
	for _, l := range configLeaves {
		name := envName(l.key)
		if _, dup := m[name]; dup {
			panic("config: two settings share environment variable " + name)
		}
		m[name] = l
	}
	return m
}()

// isSection reports whether key is a section holding settings (e.g. "kafka" or
// "kafka.tls").
func isSection(key string) bool {
	for _, l := range configLeaves {
		if strings.HasPrefix(l.key, key+".") {
			return true
		}
	}
	return false
}

// suggest returns ` (did you mean "x"?)` for the candidate closest to s, or
// "" when none is close.
func suggest(s string, candidates []string) string {
	best, bestD := "", 4
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// formatDefault renders a setting's value the way docs/configuration.md
// shows it: strings quoted, lists as ["a", "b"], durations shortest
// ("5m", "24h", "10ms").
func formatDefault(v reflect.Value) string {
	if v.Type() == durationType {
		return formatDuration(time.Duration(v.Int()))
	}
	switch v.Kind() {
	case reflect.String:
		return strconv.Quote(v.String())
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Slice:
		if isStructList(v.Type()) && v.Len() == 0 {
			return "[]"
		}
		parts := make([]string, v.Len())
		for i := range v.Len() {
			parts[i] = formatDefault(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// formatDuration renders d without zero units: 5m rather than 5m0s.
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	s := d.String()
	for _, z := range []string{"0s", "0m"} {
		if strings.HasSuffix(s, z) && len(s) > len(z) && !strings.HasSuffix(s, "."+z) {
			// "5m0s" -> "5m", "24h0m0s" -> "24h0m" -> "24h"; keep "10s", "0s".
			if c := s[len(s)-len(z)-1]; c >= 'a' && c <= 'z' {
				s = s[:len(s)-len(z)]
			}
		}
	}
	return s
}
