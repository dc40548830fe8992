package config

import (
	"reflect"
	"time"

	"github.com/spf13/pflag"
)

// flagConfig names the config file.
const flagConfig = "config"

// flagKeys are the settings "idsync run" takes as flags. A flag's name is
// its key with "_" written "-" (kafka.input_topic is --kafka.input-topic),
// except --embedded, which sets embedded.enabled.
var flagKeys = []struct{ flag, key, usage string }{
	{"kafka.brokers", "kafka.brokers", "Kafka seed brokers, host:port, comma-separated"},
	{"kafka.input-topic", "kafka.input_topic", "topic of audience-membership events"},
	{"kafka.group-id", "kafka.group_id", "consumer group"},
	{"kafka.delivery", "kafka.delivery", "delivery guarantee: at_least_once or exactly_once"},
	{"kafka.output-topic-template", "kafka.output_topic_template", "output topic names, holding {destination_id}"},
	{"kafka.dlq-topic", "kafka.dlq_topic", "dead-letter topic"},
	{"redis.addrs", "redis.addrs", "Redis addresses, host:port, comma-separated (several = cluster, or sentinels with --redis.master-name)"},
	{"redis.master-name", "redis.master_name", "sentinel master name (sentinel mode)"},
	{"redis.key-prefix", "redis.key_prefix", "prefix of every Redis key"},
	{"admin.listen", "admin.listen", `admin API listen address, host:port ("" disables)`},
	{"ops.listen", "ops.listen", "metrics and health listen address, host:port"},
	{"log.level", "log.level", "log level: debug, info, warn or error"},
	{"log.format", "log.format", "log format: auto (text at a terminal, else json), json or text"},
	{"log.kafka-level", "log.kafka_level", "least level of the Kafka client's own messages: debug, info, warn or error"},
	{"shutdown-timeout", "shutdown_timeout", "bound of a graceful shutdown"},
	{"embedded", "embedded.enabled", "run on an in-process Kafka and Redis with a demo stream"},
	{"embedded.demo-rate", "embedded.demo_rate", "events per second of the embedded demo stream (0 = none)"},
}

// BindFlags registers on fs the flags "idsync run" accepts: --config (the
// config file), --embedded (embedded.enabled), and --kafka.brokers,
// --kafka.input-topic, --kafka.group-id, --kafka.delivery,
// --kafka.output-topic-template, --kafka.dlq-topic, --redis.addrs,
// --redis.master-name, --redis.key-prefix, --admin.listen, --ops.listen,
// --log.level, --log.format, --log.kafka-level, --shutdown-timeout and
// --embedded.demo-rate,
// each setting the key of the same name with "-" read "_". Their help shows
// Default's values. Pass the parsed fs to Load as LoadOptions.Flags: only
// flags the user set override the file and the environment. BindFlags panics
// if fs already defines one of these names.
func BindFlags(fs *pflag.FlagSet) {
	bind(fs, flagKeys)
}

// kafkaClientFlagKeys are the settings the command line's Kafka clients
// ("idsync tail") take as flags: how to reach and authenticate to the
// brokers, under short names. The password has no flag (a flag shows in
// ps): it comes from --sasl-password-file, the environment or the file.
var kafkaClientFlagKeys = []struct{ flag, key, usage string }{
	{"brokers", "kafka.brokers", "Kafka seed brokers, host:port, comma-separated"},
	{"tls", "kafka.tls.enabled", "connect to the brokers with TLS"},
	{"tls-ca-file", "kafka.tls.ca_file", "PEM CAs that verify the brokers (default: the system pool)"},
	{"tls-cert-file", "kafka.tls.cert_file", "PEM client certificate (with --tls-key-file)"},
	{"tls-key-file", "kafka.tls.key_file", "PEM client key (with --tls-cert-file)"},
	{"tls-server-name", "kafka.tls.server_name", "name verified in the brokers' certificates"},
	{"tls-insecure-skip-verify", "kafka.tls.insecure_skip_verify", "do not verify the brokers' certificates (tests only)"},
	{"sasl-mechanism", "kafka.sasl.mechanism", "SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM (their other settings from --config or IDSYNC_KAFKA_SASL_*)"},
	{"sasl-username", "kafka.sasl.username", "SASL user name"},
	{"sasl-password-file", "kafka.sasl.password_file", "file holding the SASL password (or set IDSYNC_KAFKA_SASL_PASSWORD)"},
}

// BindKafkaClientFlags registers on fs the flags of the command line's
// Kafka clients: --config (the config file), --brokers (kafka.brokers),
// --tls (kafka.tls.enabled), --tls-ca-file, --tls-cert-file,
// --tls-key-file, --tls-server-name, --tls-insecure-skip-verify
// (kafka.tls.*), --sasl-mechanism, --sasl-username and
// --sasl-password-file (kafka.sasl.*). Their help shows Default's values.
// Pass the parsed fs to Load as LoadOptions.Flags, and take the Kafka
// section of its result: a client reaches the brokers exactly as "idsync
// run" would with the same file, environment and flags. BindKafkaClientFlags
// panics if fs already defines one of these names.
func BindKafkaClientFlags(fs *pflag.FlagSet) {
	bind(fs, kafkaClientFlagKeys)
}

func bind(fs *pflag.FlagSet, keys []struct{ flag, key, usage string }) {
	d := reflect.ValueOf(Default())
	fs.String(flagConfig, "", "config file (default ./"+DefaultFile+" when present; env "+envConfig+")")
	for _, f := range keys {
		l := leafOf(f.key)
		v := d.FieldByIndex(l.index)
		switch {
		case l.typ == durationType:
			fs.Duration(f.flag, time.Duration(v.Int()), f.usage)
		case l.typ.Kind() == reflect.Slice:
			fs.StringSlice(f.flag, v.Interface().([]string), f.usage)
		case l.typ.Kind() == reflect.Bool:
			fs.Bool(f.flag, v.Bool(), f.usage)
		case l.typ.Kind() == reflect.Int:
			fs.Int(f.flag, int(v.Int()), f.usage)
		default:
			fs.String(f.flag, v.String(), f.usage)
		}
	}
}

// flagSettings returns the settings given by flags the user set on fs, and
// the --config value.
func flagSettings(fs *pflag.FlagSet) ([]setting, string) {
	if fs == nil {
		return nil, ""
	}
	var file string
	if f := fs.Lookup(flagConfig); f != nil && f.Changed {
		file = f.Value.String()
	}
	var out []setting
	for _, fk := range append(flagKeys[:len(flagKeys):len(flagKeys)], kafkaClientFlagKeys...) {
		f := fs.Lookup(fk.flag)
		if f == nil || !f.Changed {
			continue
		}
		var value any = f.Value.String()
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			value = sv.GetSlice()
		}
		out = append(out, setting{key: fk.key, value: value})
	}
	return out, file
}

func leafOf(key string) leaf {
	for _, l := range configLeaves {
		if l.key == key {
			return l
		}
	}
	panic("config: no setting " + key)
}

// flagName returns the flag of key, or "".
func flagName(key string) string {
	for _, f := range flagKeys {
		if f.key == key {
			return f.flag
		}
	}
	return ""
}
