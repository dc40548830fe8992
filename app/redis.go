package app

import (
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterStateReloadInterval is how old go-redis lets its copy of the Redis
// Cluster's slot map get before it asks a node again (CLUSTER SLOTS, in the
// background, on the next command). go-redis's default is a minute, and a
// node that stops answering does not make it ask sooner: after a master was
// killed and its replica promoted within seconds, every command for that
// master's slots kept failing for up to a minute more (measured by
// e2e.TestRedisClusterFailover: 52 s). Two seconds bound that to the
// failover plus two seconds, for one CLUSTER SLOTS every two seconds.
const clusterStateReloadInterval = 2 * time.Second

// newRedisClient returns the client redis.NewUniversalClient would build
// from o (standalone, Sentinel or Cluster), a cluster client refreshing its
// slot map every clusterStateReloadInterval.
func newRedisClient(o *redis.UniversalOptions) redis.UniversalClient {
	if o.MasterName == "" && (len(o.Addrs) > 1 || o.IsClusterMode) {
		co := o.Cluster()
		co.ClusterStateReloadInterval = clusterStateReloadInterval
		return redis.NewClusterClient(co)
	}
	return redis.NewUniversalClient(o)
}
