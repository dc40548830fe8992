package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// DefaultFile is the config file Load reads when none is named and it exists
// in the working directory.
const DefaultFile = "idsync.yaml"

// LoadOptions says where Load finds settings. Load never reads the process
// environment or command line itself: the caller passes them.
type LoadOptions struct {
	// File is the path of the config file (YAML; JSON is YAML too). It is
	// overridden by IDSYNC_CONFIG, which the --config flag overrides. When
	// all three are empty, Load reads ./idsync.yaml if it exists and no file
	// otherwise. A named file that cannot be read is an error.
	File string
	// Env is the environment as "KEY=value" strings (os.Environ()). Only
	// variables starting with IDSYNC_ are looked at; one that matches no
	// setting is an error, except IDSYNC_TEST_*, IDSYNC_BENCH_*, the
	// deploy/local scripts' IDSYNC_RUN_DIR and IDSYNC_CACHE_DIR, and the
	// client commands' EnvAdminAddr, EnvAdminToken and EnvAdminTokenFile.
	// With kafka.sasl.mechanism AWS_MSK_IAM, AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN fill the
	// kafka.sasl.aws.* settings left empty. nil means no environment.
	Env []string
	// Flags are the parsed command-line flags registered by BindFlags (nil
	// for none). Only flags the user set count; their defaults do not.
	Flags *pflag.FlagSet
	// KafkaOnly is for a client of Kafka alone ("idsync tail"): the same
	// layers with the same checks of unknown keys, variables and values,
	// but only the kafka section's secret (kafka.sasl.password_file) is
	// read and only the kafka section validated (its TLS files loaded); the
	// other sections of the result are as merged, unchecked. So a client
	// can use the service's own file without being able to read the
	// service's other secrets (admin tokens, the Redis password).
	KafkaOnly bool
}

// Load returns the configuration made of Default, the config file, the
// environment and the flags, each overriding the one before, with secrets
// read from their *_file settings and every setting validated (including
// that TLS files load). On failure the error is an *Error naming every
// invalid setting by its key (or environment variable), or an error naming
// the config file that could not be read or parsed. Load blocks only on
// reading files; it is safe for concurrent use (viper is used through a
// private instance, never its global one).
func Load(opt LoadOptions) (*Config, error) {
	var ps problems
	env, envFile := environment(opt.Env, &ps)
	flagValues, flagFile := flagSettings(opt.Flags)

	path, explicit := opt.File, opt.File != ""
	if envFile != "" {
		path, explicit = envFile, true
	}
	if flagFile != "" {
		path, explicit = flagFile, true
	}
	if !explicit {
		if _, err := os.Stat(DefaultFile); err == nil {
			path = DefaultFile
		}
	}

	v := viper.New()
	v.SetConfigType("yaml")
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading config file: %w", err)
		}
		if err := v.ReadConfig(bytes.NewReader(raw)); err != nil {
			return nil, fmt.Errorf("parsing config file %s: %w", path, unwrapViper(err))
		}
		checkFileKeys(v, &ps)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}

	// Viper's override register takes the environment, then the flags, so
	// a flag wins over a variable and both win over the file.
	for _, kv := range env {
		v.Set(kv.key, kv.value)
	}
	for _, kv := range flagValues {
		v.Set(kv.key, kv.value)
	}

	c := Default()
	root := reflect.ValueOf(&c).Elem()
	for _, l := range configLeaves {
		if !v.IsSet(l.key) {
			continue
		}
		dst := root.FieldByIndex(l.index)
		dst.Set(reflect.Zero(dst.Type()))
		decode(l.key, v.Get(l.key), dst, &ps)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}

	c.Kafka.SASL.AWS.fromEnv(c.Kafka.SASL.Mechanism, opt.Env)
	if opt.KafkaOnly {
		return c.kafkaOnly()
	}
	c.readSecrets(&ps)
	if err := ps.err(); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Kafka.TransactionalIDSuffix == "" {
		// The deprecated name still works; Deprecated reports it.
		c.Kafka.TransactionalIDSuffix = c.Kafka.InstanceID
	}
	if _, err := c.Kafka.TLSConfig(); err != nil {
		return nil, err
	}
	if _, err := c.Redis.TLSConfig(); err != nil {
		return nil, err
	}
	return &c, nil
}

// unwrapViper drops viper's wrapper so the parser's message (with its line
// number) shows.
func unwrapViper(err error) error {
	var pe viper.ConfigParseError
	if errors.As(err, &pe) {
		if u := pe.Unwrap(); u != nil {
			return u
		}
	}
	return err
}

// checkFileKeys reports every key of the file that is not a setting.
func checkFileKeys(v *viper.Viper, ps *problems) {
	known := make(map[string]bool, len(configLeaves))
	names := make([]string, 0, len(configLeaves))
	for _, l := range configLeaves {
		known[l.key] = true
		names = append(names, l.key)
	}
	keys := v.AllKeys()
	slices.Sort(keys)
	reported := map[string]bool{}
	for _, k := range keys {
		switch {
		case known[k]:
		case isSection(k):
			if v.Get(k) != nil {
				ps.add(k, "must be a section of settings, not a value")
			}
		default:
			if list := structListOf(k); list != "" {
				if !reported[list] {
					reported[list] = true
					ps.add(list, "must be a list of maps")
				}
				continue
			}
			ps.add(k, "unknown setting%s", suggest(k, names))
		}
	}
}

// structListOf returns the list-of-structs setting key is inside (written as
// a map, e.g. "admin.tokens" for "admin.tokens.name"), or "".
func structListOf(key string) string {
	for _, l := range configLeaves {
		if isStructList(l.typ) && strings.HasPrefix(key, l.key+".") {
			return l.key
		}
	}
	return ""
}

// setting is a key and the raw value a layer gives it.
type setting struct {
	key   string
	value any
}

// environment returns the settings given by IDSYNC_* variables in env (the
// last of duplicates wins) and the config file named by IDSYNC_CONFIG, and
// reports variables that match no setting.
func environment(env []string, ps *problems) ([]setting, string) {
	var out []setting
	var file string
	var names []string
	for name := range envKeys {
		names = append(names, name)
	}
	names = append(names, clientEnv...)
	at := map[string]int{}
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || ignoredEnv(name) {
			continue
		}
		if name == envConfig {
			file = value
			continue
		}
		l, ok := envKeys[name]
		switch {
		case !ok:
			ps.add(name, "unknown environment variable%s", suggest(name, names))
			continue
		case isStructList(l.typ):
			ps.add(name, "%s cannot be set from the environment: set it in the config file (secrets can come from files)", l.key)
			continue
		}
		if i, dup := at[l.key]; dup {
			out[i].value = value
			continue
		}
		at[l.key] = len(out)
		out = append(out, setting{key: l.key, value: value})
	}
	return out, file
}

func ignoredEnv(name string) bool {
	if slices.Contains(clientEnv, name) {
		return true
	}
	for _, p := range envIgnoredPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// decode stores raw, the value of setting key from any layer, in dst,
// reporting a value of the wrong kind. Messages quote the value only for
// settings that are not secrets.
func decode(key string, raw any, dst reflect.Value, ps *problems) {
	t := dst.Type()
	if t == durationType {
		d, err := toDuration(raw)
		if err != nil {
			ps.add(key, "%v", err)
			return
		}
		dst.SetInt(int64(d))
		return
	}
	switch t.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			ps.add(key, "must be a string (quote the value), not %s", kindOf(raw))
			return
		}
		dst.SetString(s)
	case reflect.Bool:
		switch b := raw.(type) {
		case bool:
			dst.SetBool(b)
		case string:
			v, err := strconv.ParseBool(strings.TrimSpace(b))
			if err != nil {
				ps.add(key, "must be true or false (got %q)", b)
				return
			}
			dst.SetBool(v)
		default:
			ps.add(key, "must be true or false, not %s", kindOf(raw))
		}
	case reflect.Int, reflect.Int64:
		n, err := toInt(raw)
		if err == nil && dst.OverflowInt(n) {
			err = fmt.Errorf("is out of range")
		}
		if err != nil {
			ps.add(key, "must be an integer: %v", err)
			return
		}
		dst.SetInt(n)
	case reflect.Slice:
		if isStructList(t) {
			decodeStructList(key, raw, dst, ps)
			return
		}
		list, err := toStrings(raw)
		if err != nil {
			ps.add(key, "%v", err)
			return
		}
		dst.Set(reflect.ValueOf(list))
	default:
		panic("config: no decoder for " + t.String())
	}
}

func kindOf(raw any) string {
	switch raw.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64, int32, uint32, float32:
		return "a number"
	case string:
		return "a string"
	case []any, []string:
		return "a list"
	case map[string]any:
		return "a map"
	}
	return fmt.Sprintf("a %T", raw)
}

// toDuration accepts "45s"-style strings and durations; a bare number is
// refused (45 would silently be 45ns) unless it is 0.
func toDuration(raw any) (time.Duration, error) {
	switch d := raw.(type) {
	case time.Duration:
		return d, nil
	case string:
		v, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return 0, fmt.Errorf("must be a duration such as 500ms, 45s or 5m (got %q)", d)
		}
		return v, nil
	case int, int64, uint64, float64:
		if reflect.ValueOf(d).IsZero() {
			return 0, nil
		}
		return 0, fmt.Errorf("must be a duration with a unit, such as 45s (got the number %v)", d)
	}
	return 0, fmt.Errorf("must be a duration such as 45s, not %s", kindOf(raw))
}

func toInt(raw any) (int64, error) {
	switch n := raw.(type) {
	case int:
		return int64(n), nil
	case int64:
		return n, nil
	case uint64:
		if n > math.MaxInt64 {
			return 0, fmt.Errorf("%d is out of range", n)
		}
		return int64(n), nil
	case float64:
		if n != math.Trunc(n) || math.Abs(n) > 1<<53 {
			return 0, fmt.Errorf("%v is not a whole number", n)
		}
		return int64(n), nil
	case string:
		v, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a whole number", n)
		}
		return v, nil
	}
	return 0, fmt.Errorf("got %s", kindOf(raw))
}

// toStrings accepts a list of strings, or one string of comma-separated
// items (environment variables and flags); items are trimmed and empty
// ones dropped, so "" is the empty list.
func toStrings(raw any) ([]string, error) {
	switch l := raw.(type) {
	case string:
		out := []string{}
		for item := range strings.SplitSeq(l, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
		return out, nil
	case []string:
		return slices.Clone(l), nil
	case []any:
		out := make([]string, 0, len(l))
		for i, item := range l {
			s, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("item %d must be a string, not %s", i, kindOf(item))
			}
			out = append(out, strings.TrimSpace(s))
		}
		return out, nil
	}
	return nil, fmt.Errorf("must be a list of strings, not %s", kindOf(raw))
}

// decodeStructList decodes a list of maps (admin.tokens) into dst, a slice
// of structs, reporting unknown keys as key[i].name.
func decodeStructList(key string, raw any, dst reflect.Value, ps *problems) {
	items, ok := raw.([]any)
	if !ok {
		ps.add(key, "must be a list of maps, not %s", kindOf(raw))
		return
	}
	elem := dst.Type().Elem()
	fields := leaves(elem, "")
	var names []string
	for _, f := range fields {
		names = append(names, f.key)
	}
	out := reflect.MakeSlice(dst.Type(), len(items), len(items))
	for i, item := range items {
		at := fmt.Sprintf("%s[%d]", key, i)
		m, ok := item.(map[string]any)
		if !ok {
			ps.add(at, "must be a map, not %s", kindOf(item))
			continue
		}
		ks := make([]string, 0, len(m))
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
	keys:
		for _, k := range ks {
			for _, f := range fields {
				if strings.EqualFold(f.key, k) {
					if m[k] != nil {
						decode(at+"."+f.key, m[k], out.Index(i).FieldByIndex(f.index), ps)
					}
					continue keys
				}
			}
			ps.add(at+"."+k, "unknown setting%s", suggest(k, names))
		}
	}
	dst.Set(out)
}

// kafkaOnly finishes a LoadOptions.KafkaOnly load: the kafka section's
// secret, validation and TLS files.
func (c *Config) kafkaOnly() (*Config, error) {
	var ps problems
	secret(&ps, "kafka.sasl.password", &c.Kafka.SASL.Password, &c.Kafka.SASL.PasswordFile)
	if c.Kafka.SASL.Mechanism == SASLOAuthBearer && c.Kafka.SASL.OAuth.Token == "" {
		c.Kafka.SASL.OAuth.readTokenFile(&ps)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	c.Kafka.validate(&ps)
	if err := ps.err(); err != nil {
		return nil, err
	}
	if _, err := c.Kafka.TLSConfig(); err != nil {
		return nil, err
	}
	return c, nil
}

// readSecrets replaces every *_file setting by the file's content (trailing
// newlines trimmed). A value and its file both set, an unreadable file or an
// empty one is a problem naming the *_file setting and the path.
func (c *Config) readSecrets(ps *problems) {
	secret(ps, "kafka.sasl.password", &c.Kafka.SASL.Password, &c.Kafka.SASL.PasswordFile)
	secret(ps, "redis.password", &c.Redis.Password, &c.Redis.PasswordFile)
	if c.Kafka.SASL.Mechanism == SASLOAuthBearer && c.Kafka.SASL.OAuth.Token == "" {
		c.Kafka.SASL.OAuth.readTokenFile(ps)
	}
	for i := range c.Admin.Tokens {
		t := &c.Admin.Tokens[i]
		file := t.TokenFile
		secret(ps, fmt.Sprintf("admin.tokens[%d].token", i), &t.Token, &t.TokenFile)
		if t.TokenFile == "" && file != "" {
			t.readFrom = file
		}
	}
}

// fromEnv fills each empty credential from the standard AWS environment
// variable in env when mechanism is AWS_MSK_IAM, as the AWS SDKs and CLI
// read them. The settings win over the variables.
func (a *AWS) fromEnv(mechanism string, env []string) {
	if mechanism != SASLAWSMSKIAM {
		return
	}
	vars := map[string]*string{
		"AWS_ACCESS_KEY_ID":     &a.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY": &a.SecretAccessKey,
		"AWS_SESSION_TOKEN":     &a.SessionToken,
	}
	given := map[*string]bool{}
	for _, v := range vars {
		given[v] = *v != ""
	}
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		if dst, ok := vars[name]; ok && !given[dst] {
			*dst = value // the last of duplicates wins, as for IDSYNC_*
		}
	}
}

// readTokenFile checks that the OAUTHBEARER token file can be read and is
// not empty, naming the setting and the path. It does not keep the token:
// the mechanism reads the file at every authentication.
func (o OAuth) readTokenFile(ps *problems) {
	if o.TokenFile == "" {
		return
	}
	raw, err := os.ReadFile(o.TokenFile)
	switch {
	case err != nil:
		ps.add("kafka.sasl.oauth.token_file", "reading %q: %v", o.TokenFile, pathErr(err))
	case strings.TrimSpace(string(raw)) == "":
		ps.add("kafka.sasl.oauth.token_file", "%q is empty", o.TokenFile)
	}
}

func secret(ps *problems, key string, value, file *string) {
	if *file == "" {
		return
	}
	fileKey := key + "_file"
	if *value != "" {
		ps.add(fileKey, "set %s or %s, not both", key, fileKey)
		return
	}
	raw, err := os.ReadFile(*file)
	if err != nil {
		ps.add(fileKey, "reading %q: %v", *file, pathErr(err))
		return
	}
	s := strings.TrimRight(string(raw), "\r\n")
	if s == "" {
		ps.add(fileKey, "%q is empty", *file)
		return
	}
	*value, *file = s, ""
}
