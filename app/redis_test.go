package app

import (
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestNewRedisClient: the client of each mode is the one go-redis's
// NewUniversalClient builds, and a cluster client refreshes its slot map
// every clusterStateReloadInterval rather than every minute.
func TestNewRedisClient(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opt     redis.UniversalOptions
		cluster bool
	}{
		{"standalone", redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}}, false},
		{"sentinel", redis.UniversalOptions{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, MasterName: "m"}, false},
		{"cluster", redis.UniversalOptions{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}, true},
		{"cluster from one seed", redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}, IsClusterMode: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRedisClient(&tc.opt)
			defer c.Close()
			cc, ok := c.(*redis.ClusterClient)
			if ok != tc.cluster {
				t.Fatalf("client %T, want a cluster client: %v", c, tc.cluster)
			}
			if !ok {
				if _, ok := c.(*redis.Client); !ok {
					t.Fatalf("client %T, want *redis.Client", c)
				}
				return
			}
			if got := cc.Options().ClusterStateReloadInterval; got != clusterStateReloadInterval {
				t.Errorf("ClusterStateReloadInterval = %s, want %s", got, clusterStateReloadInterval)
			}
		})
	}
}
