package config

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Deprecated returns one Problem per deprecated setting c uses: its key,
// and a message naming its environment variable and what replaces it, for
// a warning at start. The setting still works.
func (c *Config) Deprecated() []Problem {
	var ps problems
	if c.Kafka.InstanceID != "" {
		ps.add("kafka.instance_id", "deprecated (%s): it names the transactional id, so it is now kafka.transactional_id_suffix (%s); "+
			"Kafka's group.instance.id (static group membership) is kafka.group_instance_id",
			envName("kafka.instance_id"), envName("kafka.transactional_id_suffix"))
	}
	return ps
}

// SASLMechanism returns the SASL mechanism kafka.sasl.* configure, or nil
// when kafka.sasl.mechanism is "". After Validate it is complete. With
// OAUTHBEARER and a token file the mechanism reads the file at every
// authentication (each new connection, and each re-authentication the
// brokers ask for when a session's lifetime ends), so a token renewed in
// place is used from the next one; a file that cannot be read then fails
// that authentication with an error naming the setting and the path.
func (k Kafka) SASLMechanism() sasl.Mechanism {
	s := k.SASL
	switch s.Mechanism {
	case SASLPlain:
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism()
	case SASLScramSHA256:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism()
	case SASLScramSHA512:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism()
	case SASLOAuthBearer:
		if s.OAuth.Token != "" {
			return oauth.Auth{Token: s.OAuth.Token}.AsMechanism()
		}
		path := s.OAuth.TokenFile
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			tok, err := readToken(path)
			if err != nil {
				return oauth.Auth{}, err
			}
			return oauth.Auth{Token: tok}, nil
		})
	case SASLAWSMSKIAM:
		return aws.Auth{
			AccessKey:    s.AWS.AccessKeyID,
			SecretKey:    s.AWS.SecretAccessKey,
			SessionToken: s.AWS.SessionToken,
		}.AsManagedStreamingIAMMechanism()
	}
	return nil
}

// readToken reads an OAUTHBEARER token file, trimming surrounding space.
func readToken(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("kafka.sasl.oauth.token_file: reading %q: %w", path, pathErr(err))
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" {
		return "", fmt.Errorf("kafka.sasl.oauth.token_file: %q is empty", path)
	}
	return tok, nil
}
