// Package cluster is the cluster suite (`make test-cluster`, build tag
// cluster): real `hindsight` processes against a local ClickHouse cluster of
// 2 shards × 2 replicas with ZooKeeper (internal/chlocal), beside a single
// server fed the same stream. It checks what running on a cluster promises:
// every valid eventId stored once, on the shard its hash picks, on every
// replica of that shard, while one replica of each shard is stopped and
// started again; the API's answers equal the single server's; a replay
// through the cluster delivers each matching event once.
package cluster
