package host

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/httpapi"
)

func serve(t *testing.T, cfg ServerConfig) string {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "ok")
	})
	srv, ln, err := Listen("127.0.0.1:0", h, cfg)
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestSlowClientsHoldUpNoOne keeps 500 connections open that send half a
// request and stop: a normal request still answers within a second.
func TestSlowClientsHoldUpNoOne(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 500 connections")
	}
	addr := serve(t, ServerConfig{})
	var slow []net.Conn
	t.Cleanup(func() {
		for _, c := range slow {
			c.Close()
		}
	})
	for i := range 500 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		slow = append(slow, c)
		if i%2 == 0 {
			_, err = fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		} else {
			_, err = fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
		}
		require.NoError(t, err)
	}
	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	resp, err := client.Get("http://" + addr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Less(t, time.Since(start), time.Second)
}

// TestServerDropsStalledRequestsAndIdleConnections: a request that declares
// a body and never sends it, and a keep-alive connection left idle, are
// closed by the server.
func TestServerDropsStalledRequestsAndIdleConnections(t *testing.T) {
	addr := serve(t, ServerConfig{ReadTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	stalled, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer stalled.Close()
	_, err = fmt.Fprint(stalled, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, stalled.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadAll(stalled) // the server answers or closes; either ends the read
	assert.NoError(t, err, "closed by the server, not by our deadline")

	idle, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer idle.Close()
	_, err = fmt.Fprint(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	rd := bufio.NewReader(idle)
	resp, err := http.ReadResponse(rd, nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, "ok", strings.TrimSpace(string(body)))
	require.NoError(t, idle.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = rd.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the idle keep-alive connection was closed")
}

// TestMaxConnsQueues: past MaxConns, new connections wait for a free place.
func TestMaxConnsQueues(t *testing.T) {
	addr := serve(t, ServerConfig{MaxConns: 2, ReadHeaderTimeout: 500 * time.Millisecond})
	for range 2 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		_, _ = fmt.Fprint(c, "GET / HTTP/1.1\r\n")
	}
	start := time.Now()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond, "served once a slow connection timed out")
}

// TestFlagDefaults: the flags default to what ApplyDefaults gives, and
// each sets its field.
func TestFlagDefaults(t *testing.T) {
	parse := func(args ...string) Config {
		var c Config
		fs := flag.NewFlagSet("api", flag.ContinueOnError)
		c.RegisterFlagsAndApplyDefaults(fs)
		require.NoError(t, fs.Parse(args))
		return c
	}
	var want Config
	want.ApplyDefaults()
	assert.Equal(t, want, parse())
	assert.Equal(t, "127.0.0.1:8080", want.Addr)

	got := parse("--http", "127.0.0.1:9", "--api-key", "k", "--max-concurrent", "4", "--query-timeout", "5s", "--max-result-rows", "10")
	assert.Equal(t, Config{Addr: "127.0.0.1:9", Database: want.Database, APIKey: "k", MaxConcurrent: 4,
		Limits: httpapi.Limits{MaxExecutionTime: 5 * time.Second, MaxResultRows: 10}, Server: want.Server}, got)
}
