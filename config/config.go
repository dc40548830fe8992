// Package config loads idsync's service configuration: it is the one place
// that reads viper. Load merges defaults, an idsync.yaml file, IDSYNC_*
// environment variables and command-line flags (in increasing order of
// precedence), reads secrets from files, validates every setting and returns
// a typed Config. Other packages take the plain values or the helpers
// (Limits, Options, Activation, TopicTemplate, TLSConfig, SASLMechanism,
// UniversalOptions, Deprecated); none of them reads viper, the environment
// or a config file.
//
// Non-goals: reloading at run time (a changed setting needs a restart),
// connection configurations (those are data, kept in Redis and edited
// through the admin API), and building clients (the wiring does that).
//
// docs/configuration.md is the reference of every setting; a test keeps it
// in step with Default.
package config

import (
	"time"

	"github.com/idsync/idsync/idsync"
)

// Config is the whole idsync configuration. Durations are time.Duration and
// sizes are bytes. The zero value is not useful: start from Default or Load.
type Config struct {
	// Kafka is the Kafka client, topics and delivery guarantee.
	Kafka Kafka `mapstructure:"kafka"`
	// Redis is where connection configurations are stored.
	Redis Redis `mapstructure:"redis"`
	// Connections tunes activation and the in-process configuration cache.
	Connections Connections `mapstructure:"connections"`
	// Processing bounds what one input record may cost.
	Processing Processing `mapstructure:"processing"`
	// Resync keeps the membership and runs resyncs (docs/resync.md).
	Resync Resync `mapstructure:"resync"`
	// Admin is the admin HTTP API.
	Admin Admin `mapstructure:"admin"`
	// Ops is the metrics and health listener.
	Ops Ops `mapstructure:"ops"`
	// Log is the process log.
	Log Log `mapstructure:"log"`
	// ShutdownTimeout bounds a graceful shutdown after SIGTERM.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// Embedded runs idsync on an in-process Kafka and Redis with a demo stream.
	Embedded Embedded `mapstructure:"embedded"`
}

// Delivery is the delivery guarantee of DESIGN.md §8.
type Delivery string

// The delivery guarantees.
const (
	// AtLeastOnce commits input offsets only after every record produced
	// from them is acknowledged: a crash may repeat records, never lose them.
	AtLeastOnce Delivery = "at_least_once"
	// ExactlyOnce uses Kafka transactions: a crash neither loses nor repeats
	// records (for consumers reading read_committed).
	ExactlyOnce Delivery = "exactly_once"
)

// The SASL mechanisms Kafka.SASL.Mechanism accepts ("" disables SASL).
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
	// SASLOAuthBearer authenticates with an OAuth 2 bearer token (KIP-255),
	// static or read from a file at every authentication.
	SASLOAuthBearer = "OAUTHBEARER"
	// SASLAWSMSKIAM authenticates to Amazon MSK with AWS IAM credentials.
	SASLAWSMSKIAM = "AWS_MSK_IAM"
)

// The codecs Kafka.Compression accepts.
const (
	CompressionNone   = "none"
	CompressionGzip   = "gzip"
	CompressionSnappy = "snappy"
	CompressionLZ4    = "lz4"
	CompressionZstd   = "zstd"
)

// The values of Kafka.AutoOffsetReset.
const (
	// OffsetEarliest starts a partition without a committed offset at its
	// first record.
	OffsetEarliest = "earliest"
	// OffsetLatest starts a partition without a committed offset at its
	// end: only records produced after the group first reads it.
	OffsetLatest = "latest"
)

// Kafka configures the Kafka client, the topics idsync reads and writes and
// the delivery guarantee.
type Kafka struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string `mapstructure:"brokers"`
	// ClientID is the Kafka client id.
	ClientID string `mapstructure:"client_id"`
	// InputTopic holds the audience-membership events.
	InputTopic string `mapstructure:"input_topic"`
	// GroupID is the consumer group every instance joins.
	GroupID string `mapstructure:"group_id"`
	// DLQTopic receives records idsync cannot process.
	DLQTopic string `mapstructure:"dlq_topic"`
	// OutputTopicTemplate names the per-destination output topics; it holds
	// {destination_id} exactly once.
	OutputTopicTemplate string `mapstructure:"output_topic_template"`
	// Delivery is at_least_once or exactly_once.
	Delivery Delivery `mapstructure:"delivery"`
	// TransactionalIDPrefix prefixes the transactional ids used with
	// exactly_once.
	TransactionalIDPrefix string `mapstructure:"transactional_id_prefix"`
	// CreateTopics creates missing output and dead-letter topics.
	CreateTopics bool `mapstructure:"create_topics"`
	// TopicPartitions is the partition count of topics idsync creates.
	TopicPartitions int `mapstructure:"topic_partitions"`
	// TopicReplicationFactor is the replication factor of topics idsync
	// creates; -1 takes the broker's default.
	TopicReplicationFactor int `mapstructure:"topic_replication_factor"`
	// SessionTimeout is the consumer group session timeout.
	SessionTimeout time.Duration `mapstructure:"session_timeout"`
	// RebalanceTimeout bounds how long a member may take to rejoin a rebalance.
	RebalanceTimeout time.Duration `mapstructure:"rebalance_timeout"`
	// FetchMaxBytes bounds one fetch response (fits in an int32).
	FetchMaxBytes int `mapstructure:"fetch_max_bytes"`
	// ProducerBatchMaxBytes bounds one produced record batch, and so one
	// record (fits in an int32, at least MinProducerBatchMaxBytes); topics
	// idsync creates get it as their max.message.bytes. An output record's
	// key and value are kept RecordOverheadBytes below it (Config.ProcessOptions).
	ProducerBatchMaxBytes int `mapstructure:"producer_batch_max_bytes"`
	// ProducerLinger is how long the producer waits to fill a batch.
	ProducerLinger time.Duration `mapstructure:"producer_linger"`
	// MaxPollRecords bounds the input records processed as one batch.
	MaxPollRecords int `mapstructure:"max_poll_records"`
	// Compression is the codec of produced batches (Kafka's
	// compression.type): none, gzip, snappy, lz4 or zstd.
	Compression string `mapstructure:"compression"`
	// AutoOffsetReset is where a partition without a committed offset (or
	// with one out of range) starts: earliest or latest (Kafka's
	// auto.offset.reset).
	AutoOffsetReset string `mapstructure:"auto_offset_reset"`
	// FetchMaxWait is how long a broker may hold a fetch that has no
	// record to return yet (Kafka's fetch.max.wait.ms; a fetch returns as
	// soon as one record is there).
	FetchMaxWait time.Duration `mapstructure:"fetch_max_wait"`
	// ClientRack is the rack (availability zone) of this instance (Kafka's
	// client.rack): with brokers that have a rack-aware replica selector,
	// partitions are fetched from a replica in the same rack (KIP-392).
	ClientRack string `mapstructure:"client_rack"`
	// GroupInstanceID makes this instance a static member of the consumer
	// group (Kafka's group.instance.id, KIP-345); "" is a dynamic member.
	GroupInstanceID string `mapstructure:"group_instance_id"`
	// TransactionalIDSuffix names this instance in its transactional id,
	// <transactional_id_prefix>-<transactional_id_suffix>, used with
	// exactly_once. Empty means the host name. It must stay the same
	// across restarts of an instance and differ between instances.
	TransactionalIDSuffix string `mapstructure:"transactional_id_suffix"`
	// InstanceID is the deprecated name of TransactionalIDSuffix: Load
	// copies it there when TransactionalIDSuffix is unset (and refuses the
	// two set to different values); Deprecated reports it.
	InstanceID string `mapstructure:"instance_id"`
	// DialTimeout bounds opening a connection to a broker.
	DialTimeout time.Duration `mapstructure:"dial_timeout"`
	// SASL authenticates to the brokers.
	SASL SASL `mapstructure:"sasl"`
	// TLS encrypts connections to the brokers.
	TLS TLS `mapstructure:"tls"`
}

// SASL configures SASL authentication to Kafka.
type SASL struct {
	// Mechanism is "", PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or
	// AWS_MSK_IAM; "" disables SASL.
	Mechanism string `mapstructure:"mechanism"`
	// Username is required with PLAIN and SCRAM.
	Username string `mapstructure:"username"`
	// Password is required with PLAIN and SCRAM (directly or from
	// PasswordFile).
	Password string `mapstructure:"password"`
	// PasswordFile is a file holding the password. Load reads it into
	// Password (trailing newline trimmed) and clears PasswordFile.
	PasswordFile string `mapstructure:"password_file"`
	// OAuth is the bearer token of OAUTHBEARER.
	OAuth OAuth `mapstructure:"oauth"`
	// AWS are the IAM credentials of AWS_MSK_IAM.
	AWS AWS `mapstructure:"aws"`
}

// OAuth is the token of SASL OAUTHBEARER: exactly one of Token and
// TokenFile.
type OAuth struct {
	// Token is a static bearer token.
	Token string `mapstructure:"token"`
	// TokenFile is a file holding the token. Unlike the *_file secrets it
	// is read again at every authentication (Load only checks it can be
	// read), so a token renewed in place by another process is picked up
	// when the brokers ask the client to re-authenticate or a connection
	// is opened.
	TokenFile string `mapstructure:"token_file"`
}

// AWS are the IAM credentials of SASL AWS_MSK_IAM. Load fills each empty
// one from the standard AWS environment variable (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) when the mechanism is
// AWS_MSK_IAM.
type AWS struct {
	// AccessKeyID is the access key id.
	AccessKeyID string `mapstructure:"access_key_id"`
	// SecretAccessKey is the secret access key.
	SecretAccessKey string `mapstructure:"secret_access_key"`
	// SessionToken is the session token of temporary credentials.
	SessionToken string `mapstructure:"session_token"`
}

// TLS configures a TLS client. The files are PEM.
type TLS struct {
	// Enabled turns TLS on; the other settings need it.
	Enabled bool `mapstructure:"enabled"`
	// CAFile holds the CAs that verify the server; "" uses the system pool.
	CAFile string `mapstructure:"ca_file"`
	// CertFile is the client certificate (set with KeyFile).
	CertFile string `mapstructure:"cert_file"`
	// KeyFile is the client certificate's private key (set with CertFile).
	KeyFile string `mapstructure:"key_file"`
	// ServerName overrides the name verified in the server's certificate.
	ServerName string `mapstructure:"server_name"`
	// InsecureSkipVerify disables server certificate verification (tests only).
	InsecureSkipVerify bool `mapstructure:"insecure_skip_verify"`
}

// Redis configures the Redis client. One address is a standalone server,
// several are a cluster, unless MasterName is set: then they are sentinels.
type Redis struct {
	// Addrs are host:port addresses of the server, cluster nodes or sentinels.
	Addrs []string `mapstructure:"addrs"`
	// MasterName selects sentinel mode: the name of the monitored master.
	MasterName string `mapstructure:"master_name"`
	// Username is the ACL user ("" = default user).
	Username string `mapstructure:"username"`
	// Password authenticates to Redis.
	Password string `mapstructure:"password"`
	// PasswordFile is a file holding the password. Load reads it into
	// Password (trailing newline trimmed) and clears PasswordFile.
	PasswordFile string `mapstructure:"password_file"`
	// SentinelPassword authenticates to the sentinels (sentinel mode only).
	SentinelPassword string `mapstructure:"sentinel_password"`
	// DB is the database number (0 in cluster mode).
	DB int `mapstructure:"db"`
	// KeyPrefix prefixes every key idsync writes.
	KeyPrefix string `mapstructure:"key_prefix"`
	// DialTimeout bounds opening a connection.
	DialTimeout time.Duration `mapstructure:"dial_timeout"`
	// ReadTimeout bounds reading one reply.
	ReadTimeout time.Duration `mapstructure:"read_timeout"`
	// WriteTimeout bounds writing one command.
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// TLS encrypts connections to Redis.
	TLS TLS `mapstructure:"tls"`
	// ReplicaAcks is how many replicas must acknowledge an edit (WAIT)
	// before the admin API reports success; 0 waits for none.
	ReplicaAcks int `mapstructure:"replica_acks"`
	// ReplicaAckTimeout bounds that wait.
	ReplicaAckTimeout time.Duration `mapstructure:"replica_ack_timeout"`
}

// Resync configures the membership topic and resyncs (docs/resync.md).
type Resync struct {
	// Enabled keeps the membership topic and runs resyncs.
	Enabled bool `mapstructure:"enabled"`
	// MembershipTopic is the compacted topic of the membership idsync has
	// seen, with the input topic's partition count; "" is
	// "<kafka.group_id>.membership" (see MembershipTopicFor).
	MembershipTopic string `mapstructure:"membership_topic"`
	// Rate bounds the members per second one instance's resyncs pass.
	Rate int `mapstructure:"rate"`
	// StepMembers bounds the members of one resync step (one transaction
	// in exactly_once).
	StepMembers int `mapstructure:"step_members"`
	// MaxMembersPerPartition bounds the members of one audience in one
	// input partition a resync holds in memory (about 48 bytes each).
	MaxMembersPerPartition int `mapstructure:"max_members_per_partition"`
	// Retention is how long a resync and its progress are kept in Redis.
	Retention time.Duration `mapstructure:"retention"`
}

// MembershipTopicFor returns the membership topic of a deployment whose
// consumer group is groupID: r.MembershipTopic, or by default
// "<group_id>.membership" (one per deployment: two groups on one input keep
// their own).
func (r *Resync) MembershipTopicFor(groupID string) string {
	if r.MembershipTopic != "" {
		return r.MembershipTopic
	}
	return groupID + ".membership"
}

// Connections tunes the activation of configuration versions (DESIGN.md §3)
// and the in-process cache of connection configurations.
type Connections struct {
	// ActivationDelay is how long after an edit the new version applies.
	ActivationDelay time.Duration `mapstructure:"activation_delay"`
	// RetainSuperseded is how long a superseded version is kept.
	RetainSuperseded time.Duration `mapstructure:"retain_superseded"`
	// AuditLimit is how many audit entries are kept per connection.
	AuditLimit int `mapstructure:"audit_limit"`
	// CacheMaxEntries bounds the entries held in the cache.
	CacheMaxEntries int `mapstructure:"cache_max_entries"`
	// CacheTTL is how long a cached entry is used before Redis is read again.
	CacheTTL time.Duration `mapstructure:"cache_ttl"`
}

// Processing bounds the work of one input record and of the records in flight.
type Processing struct {
	// MaxRecordBytes is the largest input record accepted.
	MaxRecordBytes int `mapstructure:"max_record_bytes"`
	// MaxExternalIDs is the most external_ids one event may hold.
	MaxExternalIDs int `mapstructure:"max_external_ids"`
	// MaxFutureSkew is how far ahead of the clock a timestamp may be.
	MaxFutureSkew time.Duration `mapstructure:"max_future_skew"`
	// MaxCombinations bounds the records one event produces for one destination.
	MaxCombinations int `mapstructure:"max_combinations"`
	// PhoneRegion is the region of phone numbers without a country code.
	PhoneRegion string `mapstructure:"phone_region"`
	// MaxInflightRecords bounds the input records fetched but not yet committed.
	MaxInflightRecords int `mapstructure:"max_inflight_records"`
	// MaxInflightBytes bounds the bytes of those records; at least
	// kafka.producer_batch_max_bytes.
	MaxInflightBytes int64 `mapstructure:"max_inflight_bytes"`
	// MaxOutputBytes bounds the output of one event for one destination
	// (the sum of its records' values); above it the destination gets
	// nothing and the event is dead-lettered as fanout_limit.
	MaxOutputBytes int `mapstructure:"max_output_bytes"`
	// MaxEventOutputBytes bounds the output of one event over all its
	// destinations.
	MaxEventOutputBytes int `mapstructure:"max_event_output_bytes"`
	// MaxFacebookRows bounds the Facebook rows one event may produce for
	// one destination.
	MaxFacebookRows int `mapstructure:"max_facebook_rows"`
	// LagInterval is how often the consumer-lag gauge is refreshed from
	// committed and end offsets.
	LagInterval time.Duration `mapstructure:"lag_interval"`
}

// Scope is what an admin token may do.
type Scope string

// The admin token scopes.
const (
	// ScopeRead may read connections, history, the catalog and preview.
	ScopeRead Scope = "read"
	// ScopeWrite may also create, edit and delete connections.
	ScopeWrite Scope = "write"
)

// Admin configures the admin HTTP API (DESIGN.md §9).
type Admin struct {
	// Listen is host:port; "" disables the admin API.
	Listen string `mapstructure:"listen"`
	// Tokens are the accepted bearer tokens.
	Tokens []Token `mapstructure:"tokens"`
	// MaxBodyBytes bounds a request body (larger gets 413).
	MaxBodyBytes int64 `mapstructure:"max_body_bytes"`
	// Console serves the web console under /ui/ on the admin listener.
	Console bool `mapstructure:"console"`
	// TLSCertFile and TLSKeyFile (PEM) make the admin listener serve HTTPS
	// (set both or neither). The files are read again when they change, so
	// a renewed certificate is served without a restart.
	TLSCertFile string `mapstructure:"tls_cert_file"`
	TLSKeyFile  string `mapstructure:"tls_key_file"`
}

// Token is one admin bearer token.
type Token struct {
	// Name identifies the token in logs and the audit log (never the token itself).
	Name string `mapstructure:"name"`
	// Token is the secret.
	Token string `mapstructure:"token"`
	// TokenFile is a file holding the secret. Load reads it into Token
	// (trailing newline trimmed) and clears TokenFile.
	TokenFile string `mapstructure:"token_file"`
	// Scope is read or write.
	Scope Scope `mapstructure:"scope"`

	// readFrom is the file Load read Token from, so that Validate names
	// the token_file setting and the path rather than the token setting.
	readFrom string
}

// Ops configures the operations listener (/metrics, /healthz, /readyz).
type Ops struct {
	// Listen is host:port.
	Listen string `mapstructure:"listen"`
	// Pprof serves net/http/pprof under /debug/pprof/ on the ops listener.
	Pprof bool `mapstructure:"pprof"`
}

// The log formats Log.Format accepts.
const (
	// LogAuto is LogText when the log goes to a terminal, LogJSON otherwise.
	LogAuto = "auto"
	// LogJSON is one JSON object per line (slog's JSON handler).
	LogJSON = "json"
	// LogText is key=value text for a person (slog's text handler).
	LogText = "text"
)

// Log configures the process log.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `mapstructure:"level"`
	// Format is auto, json or text: auto is text when the log goes to a
	// terminal and json otherwise (Text decides).
	Format string `mapstructure:"format"`
	// KafkaLevel is the least level of the Kafka client's own messages
	// that are logged (debug, info, warn or error); Level applies too, so
	// the higher of the two wins.
	KafkaLevel string `mapstructure:"kafka_level"`
}

// Embedded configures "idsync run --embedded": an in-process Kafka (kfake)
// and Redis (miniredis) with a synthetic event stream, for demos.
type Embedded struct {
	// Enabled runs on the embedded Kafka and Redis instead of kafka.brokers
	// and redis.addrs.
	Enabled bool `mapstructure:"enabled"`
	// DemoRate is the events per second of the synthetic stream (0 = none).
	DemoRate int `mapstructure:"demo_rate"`
	// KafkaPort is the embedded Kafka's port on 127.0.0.1 (0 = any free port).
	KafkaPort int `mapstructure:"kafka_port"`
	// RedisPort is the embedded Redis's port on 127.0.0.1 (0 = any free port).
	RedisPort int `mapstructure:"redis_port"`
}

// Default returns every default setting. It is the single place defaults
// live (those the domain package owns are taken from it); Load starts from
// it. The result is valid and a new value each call.
func Default() Config {
	lim, opt, act := idsync.DefaultLimits(), idsync.DefaultOptions(), idsync.DefaultActivation()
	return Config{
		Kafka: Kafka{
			Brokers:                []string{"127.0.0.1:9092"},
			ClientID:               "idsync",
			InputTopic:             "idsync.audience-membership",
			GroupID:                "idsync",
			DLQTopic:               "idsync.dlq",
			OutputTopicTemplate:    "idsync.dest.{destination_id}",
			Delivery:               AtLeastOnce,
			TransactionalIDPrefix:  "idsync",
			CreateTopics:           true,
			TopicPartitions:        6,
			TopicReplicationFactor: -1,
			SessionTimeout:         45 * time.Second,
			RebalanceTimeout:       60 * time.Second,
			FetchMaxBytes:          50 << 20,
			ProducerBatchMaxBytes:  4 << 20,
			ProducerLinger:         10 * time.Millisecond,
			MaxPollRecords:         2000,
			Compression:            CompressionSnappy,
			AutoOffsetReset:        OffsetEarliest,
			FetchMaxWait:           500 * time.Millisecond,
			DialTimeout:            10 * time.Second,
		},
		Redis: Redis{
			Addrs:        []string{"127.0.0.1:6379"},
			KeyPrefix:    "idsync:",
			DialTimeout:  5 * time.Second,
			ReadTimeout:  3 * time.Second,
			WriteTimeout: 3 * time.Second,
			// store.DefaultReplicaAckTimeout
			ReplicaAckTimeout: time.Second,
		},
		Connections: Connections{
			ActivationDelay:  act.Delay,
			RetainSuperseded: act.RetainSuperseded,
			AuditLimit:       100,
			CacheMaxEntries:  100000,
			CacheTTL:         60 * time.Second,
		},
		Processing: Processing{
			MaxRecordBytes:      lim.MaxRecordBytes,
			MaxExternalIDs:      lim.MaxExternalIDs,
			MaxFutureSkew:       lim.MaxFutureSkew,
			MaxCombinations:     opt.MaxCombinations,
			PhoneRegion:         opt.PhoneRegion,
			MaxInflightRecords:  10000,
			MaxInflightBytes:    64 << 20,
			MaxOutputBytes:      opt.MaxOutputBytes,
			MaxEventOutputBytes: opt.MaxEventOutputBytes,
			MaxFacebookRows:     opt.MaxFacebookRows,
			LagInterval:         10 * time.Second,
		},
		Resync: Resync{
			Enabled:                true,
			Rate:                   2000,
			StepMembers:            500,
			MaxMembersPerPartition: 5_000_000,
			Retention:              30 * 24 * time.Hour,
		},
		Admin: Admin{
			Listen:       "127.0.0.1:8088",
			MaxBodyBytes: 1 << 20,
			Console:      true,
		},
		Ops:             Ops{Listen: "127.0.0.1:9464"},
		Log:             Log{Level: "info", Format: LogAuto, KafkaLevel: "warn"},
		ShutdownTimeout: 20 * time.Second,
		Embedded:        Embedded{DemoRate: 50, KafkaPort: 9092},
	}
}
