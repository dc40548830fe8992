package app

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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
			cfg := testConfig(t)
			cfg.Kafka.SASL = config.SASL{Mechanism: name, Username: user, Password: pass}
			flowsThrough(t, kc, cfg, kgo.SASL(mech))
		})
	}
}

// flowsThrough runs the service configured by cfg on kc, with a Redis of
// its own, and checks that records flow end to end: events of an audience
// produced to the input topic come out on its destination's topic. auth are
// the SASL options of the test's own clients.
func flowsThrough(t *testing.T, kc *kfake.Cluster, cfg *config.Config, auth ...kgo.Opt) {
	t.Helper()
	mr := miniredis.RunT(t)
	cfg.Kafka.Brokers = kc.ListenAddrs()
	cfg.Redis.Addrs = []string{mr.Addr()}

	ctx := context.Background()
	cl, err := kgo.NewClient(append(slices.Clone(auth), kgo.SeedBrokers(kc.ListenAddrs()...), kgo.DefaultProduceTopic(cfg.Kafka.InputTopic))...)
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
	consumer, err := kgo.NewClient(append(slices.Clone(auth), kgo.SeedBrokers(kc.ListenAddrs()...),
		kgo.ConsumeTopics(tmpl.Topic(c.Destination)), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
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
		t.Fatalf("%d output records over SASL %s, want at least %d", got, cfg.Kafka.SASL.Mechanism, len(recs))
	}
}

// TestKafkaOAuthBearer runs the service with SASL OAUTHBEARER and a token
// file against a broker that answers the SASL requests itself (kfake has no
// OAUTHBEARER; control functions play the broker's part) and gives each
// session a 2s lifetime: records flow, every authentication carries the
// file's token, and after the file is renewed in place the brokers'
// re-authentications carry the new token.
func TestKafkaOAuthBearer(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	var (
		mu     sync.Mutex
		tokens []string // the token of each authentication, in order
		bad    []string // what was refused, and why
	)
	kc.ControlKey(int16(kmsg.SASLHandshake), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		r := req.(*kmsg.SASLHandshakeRequest)
		resp := r.ResponseKind().(*kmsg.SASLHandshakeResponse)
		resp.SupportedMechanisms = []string{"OAUTHBEARER"}
		if r.Mechanism != "OAUTHBEARER" {
			resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
			mu.Lock()
			bad = append(bad, "mechanism "+r.Mechanism)
			mu.Unlock()
		}
		return resp, nil, true
	})
	kc.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		r := req.(*kmsg.SASLAuthenticateRequest)
		resp := r.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		// RFC 7628: "n,,\x01auth=Bearer <token>\x01\x01".
		msg := string(r.SASLAuthBytes)
		_, rest, ok := strings.Cut(msg, "\x01auth=Bearer ")
		tok, _, ok2 := strings.Cut(rest, "\x01")
		mu.Lock()
		defer mu.Unlock()
		if !ok || !ok2 || !strings.HasPrefix(msg, "n,,") {
			resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
			bad = append(bad, "message "+msg)
			return resp, nil, true
		}
		tokens = append(tokens, tok)
		resp.SessionLifetimeMillis = 2000
		return resp, nil, true
	})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("eyJ.first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Kafka.SASL = config.SASL{Mechanism: config.SASLOAuthBearer, OAuth: config.OAuth{TokenFile: tokenFile}}
	flowsThrough(t, kc, cfg)

	seen := func(tok string) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(tokens, tok)
	}
	if !seen("eyJ.first-token") {
		t.Fatalf("no authentication with the file's token; tokens %q", tokens)
	}
	// Renewed in place, as a token agent does (write and rename).
	tmp := tokenFile + ".tmp"
	if err := os.WriteFile(tmp, []byte("eyJ.renewed-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, tokenFile); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !seen("eyJ.renewed-token") {
		if time.Now().After(deadline) {
			t.Fatalf("no re-authentication with the renewed token within 30s; tokens %q", tokens)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("refused: %q", bad)
	}
	for _, tok := range tokens {
		if tok != "eyJ.first-token" && tok != "eyJ.renewed-token" {
			t.Errorf("authentication with %q, not the file's token", tok)
		}
	}
}
