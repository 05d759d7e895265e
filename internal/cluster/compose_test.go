package cluster

import (
	"encoding/xml"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/dodev/hindsight/internal/chlocal"
	"github.com/dodev/hindsight/schema"
)

// composeFile is the part of compose.cluster.yaml the checks read.
type composeFile struct {
	Services map[string]struct {
		Build       string
		Image       string
		Hostname    string
		Environment map[string]string
		Ports       []string
		Configs     []struct{ Source, Target string }
	}
	Configs map[string]struct{ Content string }
}

// clusterXML is the servers' cluster config: what the code expects a
// user's cluster definition to hold.
type clusterXML struct {
	Shards []struct {
		InternalReplication bool `xml:"internal_replication"`
		Replicas            []struct {
			Host     string `xml:"host"`
			Port     int    `xml:"port"`
			User     string `xml:"user"`
			Password string `xml:"password"`
		} `xml:"replica"`
	} `xml:"remote_servers>hindsight>shard"`
	ZooKeeper []struct {
		Host string `xml:"host"`
		Port int    `xml:"port"`
	} `xml:"zookeeper>node"`
	DDLPath string `xml:"distributed_ddl>path"`
	Macros  struct {
		Shard struct {
			FromEnv string `xml:"from_env,attr"`
		} `xml:"shard"`
		Replica struct {
			FromEnv string `xml:"from_env,attr"`
		} `xml:"replica"`
	} `xml:"macros"`
}

// TestComposeCluster checks compose.cluster.yaml, which cannot run here,
// against what the code expects: the cluster the hindsight services name is
// defined on every server, 2 shards × 2 replicas of its ClickHouse
// services with internal replication, macros that place each server in the
// shard remote_servers puts it in, a reachable Keeper, the same ClickHouse
// user everywhere.
func TestComposeCluster(t *testing.T) {
	raw, err := os.ReadFile("../../compose.cluster.yaml")
	require.NoError(t, err)
	var f composeFile
	require.NoError(t, yaml.Unmarshal(raw, &f))

	var cfg clusterXML
	require.NoError(t, xml.Unmarshal([]byte(f.Configs["cluster"].Content), &cfg), "the cluster config is XML")
	require.Len(t, cfg.Shards, 2, "two shards")
	assert.NotEmpty(t, cfg.DDLPath, "ON CLUSTER needs distributed_ddl")
	require.Equal(t, "HINDSIGHT_SHARD", cfg.Macros.Shard.FromEnv)
	require.Equal(t, "HINDSIGHT_REPLICA", cfg.Macros.Replica.FromEnv)

	var servers []string
	for i, shard := range cfg.Shards {
		assert.True(t, shard.InternalReplication, "shard %d: ingest writes one replica, replication the rest", i+1)
		require.Len(t, shard.Replicas, 2, "shard %d: two replicas", i+1)
		var replicas []string
		for _, r := range shard.Replicas {
			svc, ok := f.Services[r.Host]
			require.True(t, ok, "replica %s is a service", r.Host)
			servers = append(servers, r.Host)
			assert.Equal(t, r.Host, svc.Hostname, "%s: interserver replication reaches it by its service name", r.Host)
			assert.Equal(t, 9000, r.Port, r.Host)
			assert.Equal(t, svc.Environment["CLICKHOUSE_USER"], r.User, "%s: the user Distributed queries log in as", r.Host)
			assert.Equal(t, svc.Environment["CLICKHOUSE_PASSWORD"], r.Password, r.Host)
			assert.Equal(t, chlocal.ShardMacro(i), svc.Environment["HINDSIGHT_SHARD"], "%s: {shard} of shard %d", r.Host, i+1)
			replicas = append(replicas, svc.Environment["HINDSIGHT_REPLICA"])
			assert.Contains(t, svc.Configs, struct{ Source, Target string }{"cluster", "/etc/clickhouse-server/config.d/cluster.xml"}, r.Host)
		}
		assert.Len(t, slices.Compact(slices.Sorted(slices.Values(replicas))), 2, "shard %d: {replica} differs between its replicas", i+1)
	}

	require.Len(t, cfg.ZooKeeper, 1)
	keeper, ok := f.Services[cfg.ZooKeeper[0].Host]
	require.True(t, ok, "the ZooKeeper node %s is a service", cfg.ZooKeeper[0].Host)
	assert.Contains(t, keeper.Configs, struct{ Source, Target string }{"keeper", "/etc/clickhouse-keeper/keeper_config.xml"})
	assert.Contains(t, f.Configs["keeper"].Content, fmt.Sprintf("<tcp_port>%d</tcp_port>", cfg.ZooKeeper[0].Port), "Keeper listens where the servers look")

	var hindsights int
	for name, svc := range f.Services {
		if !strings.HasPrefix(name, "hindsight") {
			continue
		}
		hindsights++
		env := svc.Environment
		require.NoError(t, schema.ValidateCluster(env["HINDSIGHT_CLUSTER"]), name)
		assert.Equal(t, "hindsight", env["HINDSIGHT_CLUSTER"], "%s names the cluster remote_servers defines", name)
		for _, addr := range strings.Split(env["HINDSIGHT_CLICKHOUSE"], ",") {
			host, port, _ := strings.Cut(addr, ":")
			assert.Contains(t, servers, host, "%s: %s is a server of the cluster", name, addr)
			assert.Equal(t, "9000", port, name)
		}
		assert.Equal(t, cfg.Shards[0].Replicas[0].User, env["HINDSIGHT_USER"], name)
		assert.Equal(t, cfg.Shards[0].Replicas[0].Password, env["HINDSIGHT_PASSWORD"], name)
	}
	assert.Equal(t, 2, hindsights, "two hindsight serve")
}

// TestComposeRunsTheImage: both compose files build Hindsight from the
// repository's Dockerfile (no go run in a Go image) and publish every port
// on loopback only.
func TestComposeRunsTheImage(t *testing.T) {
	for _, file := range []string{"../../compose.yaml", "../../compose.cluster.yaml"} {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		var f composeFile
		require.NoError(t, yaml.Unmarshal(raw, &f), file)
		n := 0
		for name, svc := range f.Services {
			for _, p := range svc.Ports {
				assert.True(t, strings.HasPrefix(p, "127.0.0.1:"), "%s: %s publishes %s on loopback only", file, name, p)
			}
			if strings.HasPrefix(name, "hindsight") {
				n++
				assert.Equal(t, ".", svc.Build, "%s: %s is built from the Dockerfile", file, name)
				assert.Equal(t, "hindsight:dev", svc.Image, "%s: %s", file, name)
			}
		}
		assert.NotZero(t, n, "%s runs Hindsight", file)
	}
}
