package chlocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoZooKeeper means Java or ZooKeeper's jar is missing.
var ErrNoZooKeeper = errors.New("no ZooKeeper: want java on PATH and " + zooKeeperJar + " (Debian/Ubuntu: apt-get install -y zookeeper)")

// zooKeeperJar is where Debian's zookeeper package puts the server; its
// manifest names the libraries it needs.
const zooKeeperJar = "/usr/share/java/zookeeper.jar"

// ZooKeeper is a running child ZooKeeper server, standalone, for a local
// ClickHouse cluster's replication and ON CLUSTER statements.
type ZooKeeper struct {
	Addr string // host:port of its client port
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *slog.Logger
}

// StartZooKeeper starts a standalone ZooKeeper whose data lives under dir
// and waits until it answers. Debian's zkServer.sh ignores a custom config
// directory, so the server's main class is run directly.
func StartZooKeeper(ctx context.Context, dir string, log *slog.Logger) (*ZooKeeper, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, ErrNoZooKeeper
	}
	if _, err := os.Stat(zooKeeperJar); err != nil {
		return nil, ErrNoZooKeeper
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("zookeeper dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("create zookeeper dir: %w", err)
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"+
		"admin.enableServer=false\n4lw.commands.whitelist=srvr\nmaxClientCnxns=0\n", filepath.Join(dir, "data"), ports[0])
	cfgPath := filepath.Join(dir, "zoo.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("write zookeeper config: %w", err)
	}
	out, err := os.Create(filepath.Join(dir, "zookeeper.log"))
	if err != nil {
		return nil, fmt.Errorf("zookeeper log: %w", err)
	}
	defer out.Close()
	z := &ZooKeeper{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), dir: dir, done: make(chan struct{}), log: log}
	z.cmd = exec.Command(java, "-Xmx256m", "-cp", dir+":"+zooKeeperJar, "org.apache.zookeeper.server.ZooKeeperServerMain", cfgPath)
	z.cmd.Stdout, z.cmd.Stderr = out, out
	z.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := z.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start zookeeper: %w", err)
	}
	go func() { _ = z.cmd.Wait(); close(z.done) }()
	log.Info("zookeeper starting", "addr", z.Addr, "dir", dir)
	if err := z.waitReady(ctx, 60*time.Second); err != nil {
		z.Stop()
		return nil, err
	}
	return z, nil
}

// waitReady asks "srvr" until the server says it serves: "ruok" answers
// "imok" earlier, while sessions are still refused, and a ClickHouse 18.16
// server that cannot open its session at start crashes on its first ON
// CLUSTER statement.
func (z *ZooKeeper) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.After(limit)
	for {
		if c, err := net.DialTimeout("tcp", z.Addr, time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Write([]byte("srvr"))
			b, _ := io.ReadAll(c)
			c.Close()
			if strings.Contains(string(b), "Mode: standalone") {
				return nil
			}
		}
		select {
		case <-z.done:
			return fmt.Errorf("zookeeper exited before it was ready; see %s", filepath.Join(z.dir, "zookeeper.log"))
		case <-deadline:
			return fmt.Errorf("zookeeper not ready after %s; see %s", limit, filepath.Join(z.dir, "zookeeper.log"))
		case <-ctx.Done():
			return fmt.Errorf("wait for zookeeper: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop ends the server and waits for it.
func (z *ZooKeeper) Stop() {
	if z == nil || z.cmd == nil || z.cmd.Process == nil {
		return
	}
	_ = z.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-z.done:
	case <-time.After(10 * time.Second):
		_ = z.cmd.Process.Kill()
		<-z.done
	}
}
