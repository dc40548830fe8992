package app

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/idsync/idsync/config"
	"github.com/idsync/idsync/demo"
	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/store"
)

// TestKafkaSASL runs the service against a broker that requires SASL, with
// each mechanism the configuration offers: records flow end to end.
func TestKafkaSASL(t *testing.T) {
	const user, pass = "idsync", "s3cret-passw0rd"
	mechs := map[string]sasl.Mechanism{
		config.SASLPlain:       plain.Auth{User: user, Pass: pass}.AsMechanism(),
		config.SASLScramSHA256: scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(),
		config.SASLScramSHA512: scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(),
	}
	for name, mech := range mechs {
		t.Run(name, func(t *testing.T) {
			kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(name, user, pass))
			if err != nil {
				t.Fatal(err)
			}
			defer kc.Close()
			mr := miniredis.RunT(t)
			cfg := testConfig(t)
			cfg.Kafka.Brokers = kc.ListenAddrs()
			cfg.Kafka.SASL = config.SASL{Mechanism: name, Username: user, Password: pass}
			cfg.Redis.Addrs = []string{mr.Addr()}

			ctx := context.Background()
			cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.SASL(mech), kgo.DefaultProduceTopic(cfg.Kafka.InputTopic))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, cfg.Kafka.InputTopic); err != nil {
				t.Fatal(err)
			}
			rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
			defer rdb.Close()
			st, err := store.New(rdb, store.Options{Prefix: cfg.Redis.KeyPrefix})
			if err != nil {
				t.Fatal(err)
			}
			c := demo.Connections()[2] // iterable, default setup
			conf, _ := idsync.ParseConfig(c.Config)
			if _, err := st.Put(ctx, store.Key{Space: demo.Space, Audience: c.Audience, Destination: c.Destination}, conf, "t", 0); err != nil {
				t.Fatal(err)
			}
			gen := demo.NewGenerator(3)
			gen.BadEvery = 0
			var recs []*kgo.Record
			for len(recs) < 20 {
				ev := gen.Next(time.Now())
				if decoded, err := idsync.Decode(ev.Value, time.Now(), idsync.DefaultLimits()); err == nil && decoded.AudienceID == c.Audience {
					recs = append(recs, &kgo.Record{Key: []byte(ev.Key), Value: ev.Value})
				}
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}

			startApp(t, cfg)
			tmpl, _ := cfg.Kafka.TopicTemplate()
			consumer, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.SASL(mech),
				kgo.ConsumeTopics(tmpl.Topic(c.Destination)), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer consumer.Close()
			got := 0
			deadline := time.Now().Add(30 * time.Second)
			for got < len(recs) && time.Now().Before(deadline) {
				pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				got += consumer.PollFetches(pctx).NumRecords()
				cancel()
			}
			// Every event of the audience gives at least one Iterable record.
			if got < len(recs) {
				t.Fatalf("%d output records over SASL %s, want at least %d", got, name, len(recs))
			}
		})
	}
}
