package config

import (
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/store"
)

// MinTokenLen is the shortest admin token accepted outside the embedded
// demo.
const MinTokenLen = 16

// MinEmbeddedTokenLen is the shortest admin token accepted with
// embedded.enabled (idsync run --embedded), a demo on 127.0.0.1.
const MinEmbeddedTokenLen = 8

// placeholderWords mark a token nobody chose: the values of templates such
// as deploy/kubernetes/base/secret.yaml ("REPLACE-with-…"). A token
// holding one, in any case, is refused outside the embedded demo.
var placeholderWords = []string{"replace", "change-me", "changeme", "change_me"}

// isPlaceholder reports whether token holds one of placeholderWords.
func isPlaceholder(token string) bool {
	lower := strings.ToLower(token)
	for _, w := range placeholderWords {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}

// topicRE is a legal Kafka topic name.
var topicRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)

// Validate checks every setting of c and returns an *Error naming each
// invalid one by its key (e.g. `kafka.delivery: must be at_least_once or
// exactly_once (got "twice")`), or nil. It reads no file: a *_file setting
// counts as its value being present (Load has already read them), and TLS
// files are checked by TLSConfig. Messages never hold a secret's value.
func (c *Config) Validate() error {
	var ps problems
	c.Kafka.validate(&ps)
	c.Redis.validate(&ps)
	c.Connections.validate(&ps)
	c.Processing.validate(&ps)
	if p := c.Processing.MaxInflightBytes; p < int64(c.Kafka.ProducerBatchMaxBytes) {
		ps.add("processing.max_inflight_bytes", "must be at least kafka.producer_batch_max_bytes (%d): the producer buffers at least one whole record batch, got %d", c.Kafka.ProducerBatchMaxBytes, p)
	}
	c.Resync.validate(&ps, &c.Kafka)
	c.Admin.validate(&ps, c.Embedded.Enabled)
	listen(&ps, "ops.listen", c.Ops.Listen, false)
	logLevel(&ps, "log.level", c.Log.Level)
	logLevel(&ps, "log.kafka_level", c.Log.KafkaLevel)
	switch c.Log.Format {
	case LogAuto, LogJSON, LogText:
	default:
		ps.add("log.format", "must be auto, json or text (got %q)", c.Log.Format)
	}
	positive(&ps, "shutdown_timeout", c.ShutdownTimeout)
	atLeast(&ps, "embedded.demo_rate", c.Embedded.DemoRate, 0)
	port(&ps, "embedded.kafka_port", c.Embedded.KafkaPort)
	port(&ps, "embedded.redis_port", c.Embedded.RedisPort)
	return ps.err()
}

func (k *Kafka) validate(ps *problems) {
	addrs(ps, "kafka.brokers", k.Brokers)
	nonEmpty(ps, "kafka.client_id", k.ClientID)
	topic(ps, "kafka.input_topic", k.InputTopic)
	nonEmpty(ps, "kafka.group_id", k.GroupID)
	topic(ps, "kafka.dlq_topic", k.DLQTopic)
	if k.DLQTopic != "" && k.DLQTopic == k.InputTopic {
		ps.add("kafka.dlq_topic", "must differ from kafka.input_topic")
	}
	if _, err := k.TopicTemplate(); err != nil {
		ps.add("kafka.output_topic_template", "%v", err)
	}
	switch k.Delivery {
	case AtLeastOnce:
	case ExactlyOnce:
		nonEmpty(ps, "kafka.transactional_id_prefix", k.TransactionalIDPrefix)
	default:
		ps.add("kafka.delivery", "must be %s or %s (got %q)", AtLeastOnce, ExactlyOnce, k.Delivery)
	}
	if k.TopicPartitions < 1 || k.TopicPartitions > math.MaxInt32 {
		ps.add("kafka.topic_partitions", "must be at least 1 (got %d)", k.TopicPartitions)
	}
	if r := k.TopicReplicationFactor; r != -1 && (r < 1 || r > math.MaxInt16) {
		ps.add("kafka.topic_replication_factor", "must be -1 (the broker's default) or at least 1 (got %d)", r)
	}
	positive(ps, "kafka.session_timeout", k.SessionTimeout)
	positive(ps, "kafka.rebalance_timeout", k.RebalanceTimeout)
	int32Size(ps, "kafka.fetch_max_bytes", k.FetchMaxBytes)
	if n := k.ProducerBatchMaxBytes; n < MinProducerBatchMaxBytes || n > math.MaxInt32 {
		ps.add("kafka.producer_batch_max_bytes", "must be between %d (%d bytes are kept for headers and framing, and a record needs %d) and %d (got %d)",
			MinProducerBatchMaxBytes, RecordOverheadBytes, MinProducerBatchMaxBytes-RecordOverheadBytes, math.MaxInt32, n)
	}
	if k.ProducerLinger < 0 {
		ps.add("kafka.producer_linger", "must not be negative (got %s)", formatDuration(k.ProducerLinger))
	}
	atLeast(ps, "kafka.max_poll_records", k.MaxPollRecords, 1)
	switch k.Compression {
	case CompressionNone, CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd:
	default:
		ps.add("kafka.compression", "must be %s, %s, %s, %s or %s (got %q)", CompressionNone, CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd, k.Compression)
	}
	switch k.AutoOffsetReset {
	case OffsetEarliest, OffsetLatest:
	default:
		ps.add("kafka.auto_offset_reset", "must be %s or %s (got %q)", OffsetEarliest, OffsetLatest, k.AutoOffsetReset)
	}
	// franz-go refuses a fetch wait under 10ms; the protocol carries it as
	// int32 milliseconds.
	if w := k.FetchMaxWait; w < 10*time.Millisecond || w > math.MaxInt32*time.Millisecond {
		ps.add("kafka.fetch_max_wait", "must be between 10ms and %s (got %s)", formatDuration(math.MaxInt32*time.Millisecond), formatDuration(w))
	}
	if len(k.ClientRack) > maxRackLen {
		ps.add("kafka.client_rack", "must be at most %d bytes (got %d)", maxRackLen, len(k.ClientRack))
	}
	for _, id := range []struct{ key, value string }{
		{"kafka.group_instance_id", k.GroupInstanceID},
		{"kafka.transactional_id_suffix", k.TransactionalIDSuffix},
		{"kafka.instance_id", k.InstanceID},
	} {
		if id.value != "" && !idsync.ValidEntityID(id.value) {
			ps.add(id.key, "must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$ (got %q)", id.value)
		}
	}
	if k.InstanceID != "" && k.TransactionalIDSuffix != "" && k.InstanceID != k.TransactionalIDSuffix {
		ps.add("kafka.instance_id", "is the deprecated name of kafka.transactional_id_suffix, which is set to another value: set only kafka.transactional_id_suffix")
	}
	positive(ps, "kafka.dial_timeout", k.DialTimeout)
	k.SASL.validate(ps)
	k.TLS.validate(ps, "kafka.tls")
	if k.SASL.Mechanism == SASLAWSMSKIAM && !k.TLS.Enabled {
		// MSK's IAM listeners are TLS only; without it the signed
		// credentials would travel in the clear to a listener that
		// refuses them anyway.
		ps.add("kafka.tls.enabled", "must be true with kafka.sasl.mechanism %s (Amazon MSK serves IAM authentication over TLS only)", SASLAWSMSKIAM)
	}
}

// maxRackLen is the longest client rack franz-go accepts.
const maxRackLen = 512

func (s SASL) validate(ps *problems) {
	hasPassword := s.Password != "" || s.PasswordFile != ""
	if s.Password != "" && s.PasswordFile != "" {
		ps.add("kafka.sasl.password_file", "set kafka.sasl.password or kafka.sasl.password_file, not both")
	}
	// use is a setting of one mechanism and whether it is given.
	type use struct {
		key string
		set bool
	}
	// unused reports each setting given that the mechanism does not read.
	unused := func(settings ...use) {
		for _, u := range settings {
			if u.set {
				ps.add(u.key, "is not used with kafka.sasl.mechanism %q", s.Mechanism)
			}
		}
	}
	userPass := []use{{"kafka.sasl.username", s.Username != ""}, {"kafka.sasl.password", s.Password != ""}, {"kafka.sasl.password_file", s.PasswordFile != ""}}
	oauth := []use{{"kafka.sasl.oauth.token", s.OAuth.Token != ""}, {"kafka.sasl.oauth.token_file", s.OAuth.TokenFile != ""}}
	aws := []use{{"kafka.sasl.aws.access_key_id", s.AWS.AccessKeyID != ""}, {"kafka.sasl.aws.secret_access_key", s.AWS.SecretAccessKey != ""}, {"kafka.sasl.aws.session_token", s.AWS.SessionToken != ""}}
	switch s.Mechanism {
	case "":
		if s.Username != "" || hasPassword {
			ps.add("kafka.sasl.mechanism", "must be set when kafka.sasl.username or a password is set")
		}
		unused(oauth...)
		unused(aws...)
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if s.Username == "" {
			ps.add("kafka.sasl.username", "required with kafka.sasl.mechanism %s", s.Mechanism)
		}
		if !hasPassword {
			ps.add("kafka.sasl.password", "required with kafka.sasl.mechanism %s (or kafka.sasl.password_file)", s.Mechanism)
		}
		unused(oauth...)
		unused(aws...)
	case SASLOAuthBearer:
		switch {
		case s.OAuth.Token != "" && s.OAuth.TokenFile != "":
			ps.add("kafka.sasl.oauth.token_file", "set kafka.sasl.oauth.token or kafka.sasl.oauth.token_file, not both")
		case s.OAuth.Token == "" && s.OAuth.TokenFile == "":
			ps.add("kafka.sasl.oauth.token", "required with kafka.sasl.mechanism %s (or kafka.sasl.oauth.token_file)", s.Mechanism)
		}
		unused(userPass...)
		unused(aws...)
	case SASLAWSMSKIAM:
		if s.AWS.AccessKeyID == "" {
			ps.add("kafka.sasl.aws.access_key_id", "required with kafka.sasl.mechanism %s (or the AWS_ACCESS_KEY_ID environment variable)", s.Mechanism)
		}
		if s.AWS.SecretAccessKey == "" {
			ps.add("kafka.sasl.aws.secret_access_key", "required with kafka.sasl.mechanism %s (or the AWS_SECRET_ACCESS_KEY environment variable)", s.Mechanism)
		}
		unused(userPass...)
		unused(oauth...)
	default:
		ps.add("kafka.sasl.mechanism", "must be empty, %s, %s, %s, %s or %s (got %q)", SASLPlain, SASLScramSHA256, SASLScramSHA512, SASLOAuthBearer, SASLAWSMSKIAM, s.Mechanism)
	}
}

func (t TLS) validate(ps *problems, key string) {
	if !t.Enabled {
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"ca_file", t.CAFile != ""}, {"cert_file", t.CertFile != ""}, {"key_file", t.KeyFile != ""},
			{"server_name", t.ServerName != ""}, {"insecure_skip_verify", t.InsecureSkipVerify},
		} {
			if f.set {
				ps.add(key+"."+f.name, "set but %s.enabled is false", key)
			}
		}
		return
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		if t.CertFile == "" {
			ps.add(key+".cert_file", "required with %s.key_file", key)
		} else {
			ps.add(key+".key_file", "required with %s.cert_file", key)
		}
	}
}

func (r *Redis) validate(ps *problems) {
	addrs(ps, "redis.addrs", r.Addrs)
	if r.Password != "" && r.PasswordFile != "" {
		ps.add("redis.password_file", "set redis.password or redis.password_file, not both")
	}
	if r.SentinelPassword != "" && r.MasterName == "" {
		ps.add("redis.sentinel_password", "needs redis.master_name (sentinel mode)")
	}
	if r.DB < 0 {
		ps.add("redis.db", "must not be negative (got %d)", r.DB)
	} else if r.DB != 0 && r.Mode() == RedisCluster {
		ps.add("redis.db", "must be 0 with a cluster (several redis.addrs and no redis.master_name), got %d", r.DB)
	}
	if r.KeyPrefix == "" {
		ps.add("redis.key_prefix", "required")
	} else if err := store.CheckPrefix(r.KeyPrefix); err != nil {
		// The store's own check, so that what passes here passes store.New.
		ps.add("redis.key_prefix", "%v (got %q)", err, r.KeyPrefix)
	}
	positive(ps, "redis.dial_timeout", r.DialTimeout)
	positive(ps, "redis.read_timeout", r.ReadTimeout)
	positive(ps, "redis.write_timeout", r.WriteTimeout)
	r.TLS.validate(ps, "redis.tls")
	atLeast(ps, "redis.replica_acks", r.ReplicaAcks, 0)
	positive(ps, "redis.replica_ack_timeout", r.ReplicaAckTimeout)
}

func (c *Connections) validate(ps *problems) {
	if c.ActivationDelay < 0 {
		ps.add("connections.activation_delay", "must not be negative (got %s)", formatDuration(c.ActivationDelay))
	}
	if c.RetainSuperseded < c.ActivationDelay {
		ps.add("connections.retain_superseded", "must be at least connections.activation_delay (%s), got %s", formatDuration(c.ActivationDelay), formatDuration(c.RetainSuperseded))
	}
	atLeast(ps, "connections.audit_limit", c.AuditLimit, 1)
	atLeast(ps, "connections.cache_max_entries", c.CacheMaxEntries, 1)
	positive(ps, "connections.cache_ttl", c.CacheTTL)
}

func (p *Processing) validate(ps *problems) {
	atLeast(ps, "processing.max_record_bytes", p.MaxRecordBytes, 1)
	atLeast(ps, "processing.max_external_ids", p.MaxExternalIDs, 1)
	positive(ps, "processing.max_future_skew", p.MaxFutureSkew)
	atLeast(ps, "processing.max_combinations", p.MaxCombinations, 1)
	if !idsync.ValidPhoneRegion(p.PhoneRegion) {
		ps.add("processing.phone_region", "must be a region code such as US or GB (got %q)", p.PhoneRegion)
	}
	atLeast(ps, "processing.max_inflight_records", p.MaxInflightRecords, 1)
	if p.MaxInflightBytes < int64(p.MaxRecordBytes) {
		ps.add("processing.max_inflight_bytes", "must be at least processing.max_record_bytes (%d), got %d", p.MaxRecordBytes, p.MaxInflightBytes)
	}
	atLeast(ps, "processing.max_output_bytes", p.MaxOutputBytes, 1)
	atLeast(ps, "processing.max_event_output_bytes", p.MaxEventOutputBytes, 1)
	atLeast(ps, "processing.max_facebook_rows", p.MaxFacebookRows, 1)
	positive(ps, "processing.lag_interval", p.LagInterval)
}

func (r *Resync) validate(ps *problems, k *Kafka) {
	if !r.Enabled {
		return
	}
	m := r.MembershipTopicFor(k.GroupID)
	switch {
	case r.MembershipTopic != "":
		topic(ps, "resync.membership_topic", r.MembershipTopic)
	case k.GroupID != "" && !topicRE.MatchString(m):
		ps.add("resync.membership_topic", "the default, kafka.group_id followed by .membership, is not a valid topic name: set resync.membership_topic")
	}
	if m == k.InputTopic || m == k.DLQTopic {
		ps.add("resync.membership_topic", "must differ from kafka.input_topic and kafka.dlq_topic")
	}
	atLeast(ps, "resync.rate", r.Rate, 1)
	atLeast(ps, "resync.step_members", r.StepMembers, 1)
	atLeast(ps, "resync.max_members_per_partition", r.MaxMembersPerPartition, 1)
	if r.Retention < time.Second {
		ps.add("resync.retention", "must be at least 1s (got %s)", formatDuration(r.Retention))
	}
}

// validate checks the admin settings. Outside the embedded demo a token
// must be at least MinTokenLen characters and not a placeholder;
// embedded, MinEmbeddedTokenLen is enough. Messages name the setting (the
// token_file setting and its path for a token read from a file) and never
// the token.
func (a *Admin) validate(ps *problems, embedded bool) {
	listen(ps, "admin.listen", a.Listen, true)
	switch {
	case (a.TLSCertFile == "") != (a.TLSKeyFile == ""):
		key := "admin.tls_key_file"
		if a.TLSCertFile == "" {
			key = "admin.tls_cert_file"
		}
		ps.add(key, "required with the other of admin.tls_cert_file and admin.tls_key_file")
	case a.TLSCertFile != "":
		if _, err := tls.LoadX509KeyPair(a.TLSCertFile, a.TLSKeyFile); err != nil {
			ps.add("admin.tls_cert_file", "cannot be used with admin.tls_key_file: %v", err)
		}
	}
	if a.MaxBodyBytes < 1 {
		ps.add("admin.max_body_bytes", "must be at least 1 (got %d)", a.MaxBodyBytes)
	}
	seen := map[string]int{}
	for i, t := range a.Tokens {
		at := fmt.Sprintf("admin.tokens[%d]", i)
		if t.Name == "" {
			ps.add(at+".name", "required")
		} else if j, dup := seen[t.Name]; dup {
			ps.add(at+".name", "%q is already the name of admin.tokens[%d]", t.Name, j)
		} else {
			seen[t.Name] = i
		}
		key, what := at+".token", "must"
		if t.readFrom != "" {
			key, what = at+".token_file", fmt.Sprintf("the token in %q must", t.readFrom)
		}
		minLen := MinTokenLen
		if embedded {
			minLen = MinEmbeddedTokenLen
		}
		switch {
		case t.Token != "" && t.TokenFile != "":
			ps.add(at+".token_file", "set %s.token or %s.token_file, not both", at, at)
		case t.TokenFile != "":
		case t.Token == "":
			ps.add(at+".token", "required (or %s.token_file)", at)
		case !embedded && isPlaceholder(t.Token):
			ps.add(key, "%s be a real secret, not a template's placeholder (it contains REPLACE, CHANGE-ME or changeme): generate one, e.g. openssl rand -hex 32", what)
		case len(t.Token) < minLen:
			ps.add(key, "%s be at least %d characters (generate one, e.g. openssl rand -hex 32)", what, minLen)
		case strings.IndexFunc(t.Token, func(c rune) bool { return c <= ' ' || c == 0x7f }) >= 0:
			ps.add(key, "%s not contain spaces or control characters", what)
		}
		switch t.Scope {
		case ScopeRead, ScopeWrite:
		default:
			ps.add(at+".scope", "must be %s or %s (got %q)", ScopeRead, ScopeWrite, t.Scope)
		}
	}
}

func nonEmpty(ps *problems, key, s string) {
	if s == "" {
		ps.add(key, "required")
	}
}

func topic(ps *problems, key, s string) {
	if !topicRE.MatchString(s) || s == "." || s == ".." {
		ps.add(key, "must be a Kafka topic name: 1 to 249 letters, digits, '.', '_' or '-' (got %q)", s)
	}
}

func positive[T ~int64](ps *problems, key string, d T) {
	if d <= 0 {
		ps.add(key, "must be positive (got %s)", formatDuration(time.Duration(d)))
	}
}

func atLeast(ps *problems, key string, n, least int) {
	if n < least {
		ps.add(key, "must be at least %d (got %d)", least, n)
	}
}

func int32Size(ps *problems, key string, n int) {
	if n < 1 || n > math.MaxInt32 {
		ps.add(key, "must be between 1 and %d (got %d)", math.MaxInt32, n)
	}
}

func port(ps *problems, key string, p int) {
	if p < 0 || p > 65535 {
		ps.add(key, "must be a port between 0 and 65535 (got %d)", p)
	}
}

// listen checks a host:port listen address ("" only when optional).
func listen(ps *problems, key, addr string, optional bool) {
	if addr == "" {
		if !optional {
			ps.add(key, "required")
		}
		return
	}
	if msg := hostPort(addr); msg != "" {
		ps.add(key, "%s (got %q)", msg, addr)
	}
}

// addrs checks a non-empty list of host:port addresses.
func addrs(ps *problems, key string, list []string) {
	if len(list) == 0 {
		ps.add(key, "at least one address is required")
	}
	for i, a := range list {
		if msg := hostPort(a); msg != "" {
			ps.add(fmt.Sprintf("%s[%d]", key, i), "%s (got %q)", msg, a)
		} else if h, _, _ := net.SplitHostPort(a); h == "" {
			ps.add(fmt.Sprintf("%s[%d]", key, i), "must name a host (got %q)", a)
		}
	}
}

func hostPort(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "must be host:port"
	}
	if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
		return "must have a numeric port between 0 and 65535"
	}
	return ""
}

func logLevel(ps *problems, key, level string) {
	switch level {
	case "debug", "info", "warn", "error":
	default:
		ps.add(key, "must be debug, info, warn or error (got %q)", level)
	}
}
