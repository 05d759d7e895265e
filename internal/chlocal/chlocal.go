// Package chlocal runs a private ClickHouse server as a child process: a
// generated config, data under a directory of the caller's, free loopback
// ports. `hindsight dev` and the integration tests use it; it knows nothing of
// Hindsight's tables.
package chlocal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoBinary means no ClickHouse server binary is on PATH.
var ErrNoBinary = errors.New("no ClickHouse server binary found on PATH (clickhouse-server or clickhouse)")

// InstallHint tells a user how to get a ClickHouse server.
const InstallHint = `install one and try again:
  Debian/Ubuntu: sudo apt-get install -y clickhouse-server
  macOS:         brew install clickhouse
  or point at a running server with --clickhouse host:9000 (docker compose up clickhouse)`

// Server is a running child ClickHouse server.
type Server struct {
	// Addr is the native-protocol address, host:port.
	Addr string
	// HTTPAddr is the HTTP interface's address, host:port.
	HTTPAddr string
	Dir      string

	args    []string // the command line, binary first
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	exitErr error         // its exit status, once done is closed
	log     *slog.Logger
}

// FindBinary returns the command that starts a server: clickhouse-server, or
// the single clickhouse binary with its "server" argument.
func FindBinary() ([]string, error) {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return []string{p}, nil
	}
	if p, err := exec.LookPath("clickhouse"); err == nil {
		return []string{p, "server"}, nil
	}
	return nil, ErrNoBinary
}

// Start starts a server whose data lives under dir (created if missing; reused
// if it holds an earlier server's data) and waits until it answers. The
// server listens on 127.0.0.1 only. Stop it with Stop; it is also killed if
// this process dies, by the parent-death signal.
func Start(ctx context.Context, dir string, log *slog.Logger) (*Server, error) {
	return StartWithSettings(ctx, dir, nil, log)
}

// StartWithSettings is Start with settings (name → value) added to the
// default profile, which the server's own reads use too: its Kafka
// engine's, for one.
func StartWithSettings(ctx context.Context, dir string, settings map[string]string, log *slog.Logger) (*Server, error) {
	return startWith(ctx, dir, settings, "", log)
}

// StartLogged is StartWithSettings with system.query_log (every statement,
// flushed every second) and system.part_log (parts written and merged)
// kept: what profiling ClickHouse's side of a run reads. They cost the
// server a little per statement and per part, so runs that measure leave
// them off.
func StartLogged(ctx context.Context, dir string, settings map[string]string, log *slog.Logger) (*Server, error) {
	settings = maps.Clone(settings)
	if settings == nil {
		settings = map[string]string{}
	}
	settings["log_queries"] = "1"
	return startWith(ctx, dir, settings, systemLogs, log)
}

// systemLogs are the config's elements StartLogged adds.
const systemLogs = `    <query_log><database>system</database><table>query_log</table><flush_interval_milliseconds>1000</flush_interval_milliseconds></query_log>
    <part_log><database>system</database><table>part_log</table><flush_interval_milliseconds>1000</flush_interval_milliseconds></part_log>
`

func startWith(ctx context.Context, dir string, settings map[string]string, extra string, log *slog.Logger) (*Server, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	var profile strings.Builder
	for name, value := range settings {
		fmt.Fprintf(&profile, "            <%s>%s</%s>\n", name, value, name)
	}
	s, err := prepare(dir, ports[0], ports[1], extra, profile.String(), log)
	if err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// prepare writes a server's directories and config, extra being more of
// the config's elements and profile more of the default profile's.
func prepare(dir string, tcpPort, httpPort int, extra, profile string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin, err := FindBinary()
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("clickhouse data dir: %w", err)
	}
	for _, sub := range []string{"db", "tmp", "log", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("create clickhouse dir: %w", err)
		}
	}
	s := &Server{
		Addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(tcpPort)),
		HTTPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)),
		Dir:      dir,
		log:      log,
	}
	configPath := filepath.Join(dir, "config.xml")
	if err := os.WriteFile(configPath, []byte(config(dir, tcpPort, httpPort, extra)), 0o644); err != nil {
		return nil, fmt.Errorf("write clickhouse config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(strings.Replace(usersXML, "{profile}", profile, 1)), 0o644); err != nil {
		return nil, fmt.Errorf("write clickhouse users: %w", err)
	}
	s.args = append(bin, "--config-file="+configPath)
	return s, nil
}

// start runs the server on its config and waits until it answers.
func (s *Server) start(ctx context.Context) error {
	s.done = make(chan struct{})
	s.cmd = exec.Command(s.args[0], s.args[1:]...)
	s.cmd.Dir = s.Dir
	out, err := os.OpenFile(filepath.Join(s.Dir, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("clickhouse stdout log: %w", err)
	}
	defer out.Close()
	s.cmd.Stdout, s.cmd.Stderr = out, out
	// Its own process group, so a Ctrl-C at the terminal reaches only us and we
	// stop it in order; Pdeathsig so it never outlives us.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.args[0], err)
	}
	go func() { s.exitErr = s.cmd.Wait(); close(s.done) }()
	s.log.Info("clickhouse starting", "binary", s.args[0], "addr", s.Addr, "dir", s.Dir)

	if err := s.waitReady(ctx, 60*time.Second); err != nil {
		s.Stop()
		return err
	}
	return nil
}

// Restart stops the server if it runs and starts it again on the same ports
// and data: with a pause between, an outage for tests of what clients do.
func (s *Server) Restart(ctx context.Context) error {
	s.Stop()
	return s.start(ctx)
}

// StartAgain starts a stopped server on its ports and data, and waits
// until it answers.
func (s *Server) StartAgain(ctx context.Context) error {
	if s.cmd != nil {
		select {
		case <-s.done:
		default:
			return errors.New("clickhouse server is running")
		}
	}
	return s.start(ctx)
}

func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	return s.waitHTTP(ctx, "/ping", "ready", limit)
}

// waitHTTP asks the HTTP interface for path until it answers 200; what
// names the wait in its errors.
func (s *Server) waitHTTP(ctx context.Context, path, what string, limit time.Duration) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + s.HTTPAddr + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("clickhouse server exited before it was %s (%v); see %s", what, s.exitErr, filepath.Join(s.Dir, "log"))
		case <-deadline.C:
			return fmt.Errorf("clickhouse server not %s after %s; see %s", what, limit, filepath.Join(s.Dir, "log"))
		case <-ctx.Done():
			return fmt.Errorf("wait for clickhouse: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// PID is the server process's id, while it runs.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop asks the server to shut down and waits for it, killing it after 20 s.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.log.Info("clickhouse stopped", "addr", s.Addr)
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// config is a minimal server config that both ClickHouse 18.16 and current
// releases accept: <yandex> is still read as the root element by new servers.
// extra is more elements of the root.
func config(dir string, tcpPort, httpPort int, extra string) string {
	p := func(sub string) string { return filepath.Join(dir, sub) + "/" }
	r := strings.NewReplacer(
		"{log}", filepath.Join(dir, "log", "server.log"),
		"{errlog}", filepath.Join(dir, "log", "server.err.log"),
		"{tcp}", strconv.Itoa(tcpPort),
		"{http}", strconv.Itoa(httpPort),
		"{path}", p("db"),
		"{tmp}", p("tmp"),
		"{user_files}", p("user_files"),
		"{format_schemas}", p("format_schemas"),
		"{users}", filepath.Join(dir, "users.xml"),
		"{extra}", extra,
	)
	return r.Replace(`<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{log}</log>
        <errorlog>{errlog}</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp}</tcp_port>
    <http_port>{http}</http_port>
    <path>{path}</path>
    <tmp_path>{tmp}</tmp_path>
    <user_files_path>{user_files}</user_files_path>
    <format_schema_path>{format_schemas}</format_schema_path>
    <users_config>{users}</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mlock_executable>false</mlock_executable>
{extra}</yandex>
`)
}

const usersXML = `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
{profile}        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default></default>
    </quotas>
</yandex>
`
