package chlocal

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Cluster is a local ClickHouse cluster: shards × replicas child servers on
// loopback ports, replicating through a child ZooKeeper, with remote_servers
// and macros generated so that Replicated tables and ON CLUSTER statements
// work as on a real one.
type Cluster struct {
	Name      string
	ZooKeeper *ZooKeeper
	// Shards holds each shard's replicas, in remote_servers order: the
	// order a Distributed table numbers shards in.
	Shards [][]*Server
}

// StartCluster starts ZooKeeper and shards × replicas servers under dir,
// all on 127.0.0.1, as the cluster name. Each server's macros are {shard}
// ("01", "02", ...) and {replica} ("r1", "r2", ...).
func StartCluster(ctx context.Context, dir, name string, shards, replicas int, log *slog.Logger) (*Cluster, error) {
	if shards < 1 || replicas < 1 {
		return nil, fmt.Errorf("cluster of %d shards × %d replicas: want at least one of each", shards, replicas)
	}
	zk, err := StartZooKeeper(ctx, filepath.Join(dir, "zookeeper"), log)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: name, ZooKeeper: zk}
	ports, err := freePorts(3 * shards * replicas)
	if err != nil {
		c.Stop()
		return nil, err
	}
	port := func(shard, replica, i int) int { return ports[3*(shard*replicas+replica)+i] }

	var servers strings.Builder
	fmt.Fprintf(&servers, "    <remote_servers>\n        <%s>\n", name)
	for s := range shards {
		servers.WriteString("            <shard>\n                <internal_replication>true</internal_replication>\n")
		for r := range replicas {
			fmt.Fprintf(&servers, "                <replica><host>127.0.0.1</host><port>%d</port></replica>\n", port(s, r, 0))
		}
		servers.WriteString("            </shard>\n")
	}
	fmt.Fprintf(&servers, "        </%s>\n    </remote_servers>\n", name)
	zkHost, zkPort, _ := strings.Cut(zk.Addr, ":")
	common := servers.String() + fmt.Sprintf(`    <zookeeper><node><host>%s</host><port>%s</port></node></zookeeper>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
    <interserver_http_host>127.0.0.1</interserver_http_host>
`, zkHost, zkPort)

	for s := range shards {
		c.Shards = append(c.Shards, nil)
		for r := range replicas {
			extra := common + fmt.Sprintf("    <interserver_http_port>%d</interserver_http_port>\n"+
				"    <macros><shard>%s</shard><replica>%s</replica></macros>\n", port(s, r, 2), ShardMacro(s), "r"+strconv.Itoa(r+1))
			srv, err := prepare(filepath.Join(dir, fmt.Sprintf("s%dr%d", s+1, r+1)), port(s, r, 0), port(s, r, 1), extra, "", log)
			if err != nil {
				c.Stop()
				return nil, err
			}
			c.Shards[s] = append(c.Shards[s], srv)
		}
	}
	// The servers start one by one: on 2 cores, four starting at once take
	// longer than in turn.
	for _, shard := range c.Shards {
		for _, srv := range shard {
			if err := srv.start(ctx); err != nil {
				c.Stop()
				return nil, err
			}
		}
	}
	for _, shard := range c.Shards {
		for _, srv := range shard {
			if err := srv.waitZooKeeper(ctx, 30*time.Second); err != nil {
				c.Stop()
				return nil, err
			}
		}
	}
	return c, nil
}

// waitZooKeeper waits until the server reads ZooKeeper.
func (s *Server) waitZooKeeper(ctx context.Context, limit time.Duration) error {
	q := url.Values{"query": {"SELECT count() FROM system.zookeeper WHERE path = '/'"}}
	return s.waitHTTP(ctx, "/?"+q.Encode(), "reading ZooKeeper", limit)
}

// ShardMacro is the {shard} macro of the shard at index i.
func ShardMacro(i int) string { return fmt.Sprintf("%02d", i+1) }

// Addrs returns every server's native address, shard by shard.
func (c *Cluster) Addrs() []string {
	var addrs []string
	for _, shard := range c.Shards {
		for _, srv := range shard {
			addrs = append(addrs, srv.Addr)
		}
	}
	return addrs
}

// Stop stops every server, then ZooKeeper.
func (c *Cluster) Stop() {
	for _, shard := range c.Shards {
		for _, srv := range shard {
			srv.Stop()
		}
	}
	c.ZooKeeper.Stop()
}
