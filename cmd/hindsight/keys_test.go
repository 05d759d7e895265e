package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/keys"
)

// lockedBuffer collects a child process's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestKeysAcrossProcesses runs two `hindsight api` processes on one
// ClickHouse database: a key made by one works on the other, a key revoked
// from the command line stops working on both within keys.MaxAge, and no
// secret reaches a log or ClickHouse.
func TestKeysAcrossProcesses(t *testing.T) {
	conn, db := chtest.MigratedDatabase(t)
	bin := binary(t)
	const bootstrap = "keys-test-bootstrap-0123456789"
	env := append(os.Environ(), "HINDSIGHT_CLICKHOUSE="+chtest.Addr(t), "HINDSIGHT_DATABASE="+db,
		"HINDSIGHT_API_KEY="+bootstrap, "HINDSIGHT_LOG_LEVEL=debug", "HINDSIGHT_LOG_FORMAT=json")

	var logs []*lockedBuffer
	api := func() string {
		out := &lockedBuffer{}
		logs = append(logs, out)
		return apiProcess(t, bin, env, out)
	}
	a, b := api(), api()
	status := func(base, method, path, secret, body string) (int, map[string]any) {
		t.Helper()
		return apiCall(t, base, method, path, secret, body)
	}
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"keys"}, args...)...)
		cmd.Env = env
		var stderr lockedBuffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "hindsight keys %v: %s", args, stderr.String())
		logs = append(logs, &stderr)
		return string(out)
	}

	// A key made on the command line works on both processes, for its scope
	// only.
	fromCLI := strings.TrimSpace(cli("create", "--name", "dashboard", "--scopes", "stats:read"))
	require.True(t, strings.HasPrefix(fromCLI, "hs_"), fromCLI)
	for _, base := range []string{a, b} {
		require.Eventually(t, func() bool {
			code, _ := status(base, "GET", "/v1/stats/send", fromCLI, "")
			return code == http.StatusOK
		}, 2*time.Second, 50*time.Millisecond)
		code, body := status(base, "GET", "/v1/events", fromCLI, "")
		assert.Equal(t, http.StatusForbidden, code)
		assert.Equal(t, "needs scope events:read", body["error"].(map[string]any)["message"])
	}

	// A key made through A works on B.
	code, made := status(a, "POST", "/v1/keys", bootstrap, `{"name":"teammate","scopes":["stats:read","events:read"]}`)
	require.Equal(t, http.StatusCreated, code, "%v", made)
	fromAPI := made["key"].(string)
	require.Eventually(t, func() bool {
		code, _ := status(b, "GET", "/v1/events", fromAPI, "")
		return code == http.StatusOK
	}, 2*time.Second, 50*time.Millisecond)

	// Revoked from the command line, the key stops working on both within
	// MaxAge, while the other key goes on.
	list := cli("list")
	id := made["id"].(string)
	require.Contains(t, list, id)
	require.Contains(t, list, made["prefix"].(string))
	assert.Contains(t, cli("revoke", id), "revoked "+id)
	revoked := time.Now()
	for _, base := range []string{a, b} {
		for {
			code, _ := status(base, "GET", "/v1/events", fromAPI, "")
			if code == http.StatusUnauthorized {
				break
			}
			require.Equal(t, http.StatusOK, code)
			require.Less(t, time.Since(revoked), keys.MaxAge+time.Second, "%s still takes the revoked key", base)
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("the revoked key was refused by both processes %s after the revocation", time.Since(revoked).Round(time.Millisecond))
	code, _ = status(b, "GET", "/v1/stats/send", fromCLI, "")
	assert.Equal(t, http.StatusOK, code)
	assert.NotContains(t, cli("list"), id)

	// No secret in clear: not in any log line, nor anywhere under the
	// ClickHouse server's directory (data, metadata, its own logs).
	secrets := []string{fromCLI, fromAPI}
	for i, l := range logs {
		for _, s := range secrets {
			assert.NotContains(t, l.String(), s, "log %d holds a secret", i)
		}
	}
	// Every table of the database, as text (the files below are compressed).
	rows, err := conn.Query(context.Background(), "SELECT name FROM system.tables WHERE database = ?", db)
	require.NoError(t, err)
	var tables []string
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		tables = append(tables, name)
	}
	rows.Close()
	require.Contains(t, tables, "api_keys")
	for _, table := range tables {
		q := url.Values{"query": {"SELECT * FROM `" + db + "`.`" + table + "` FORMAT TabSeparated"}}
		resp, err := http.Get("http://" + chtest.HTTPAddr(t) + "/?" + q.Encode())
		require.NoError(t, err)
		text, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", table, text)
		for _, s := range secrets {
			assert.NotContains(t, string(text), s, "table %s holds a secret", table)
		}
	}
	require.NoError(t, conn.Exec(context.Background(), "SYSTEM FLUSH LOGS"))
	scanned := 0
	require.NoError(t, filepath.WalkDir(chtest.Dir(t), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil // files come and go as ClickHouse merges
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		scanned++
		for _, s := range secrets {
			assert.False(t, bytes.Contains(data, []byte(s)), "%s holds a secret", path)
		}
		return nil
	}))
	t.Logf("%d tables, %d files of ClickHouse and %d logs hold no secret", len(tables), scanned, len(logs))
}

// apiProcess runs `hindsight api` (bin) with env and args on a free port of
// 127.0.0.1, its log to stderr, until the test ends, and returns its base
// URL once it is ready.
func apiProcess(t *testing.T, bin string, env []string, stderr io.Writer, args ...string) string {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(bin, append([]string{"api", "--http", addr}, args...)...)
	cmd.Env = env
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	url := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, 60*time.Second, 100*time.Millisecond, "api %s not ready: %s", addr, stderr)
	return url
}

// apiCall sends method path to the API at base with secret as the bearer
// key and body (JSON, or none), and returns the status and the decoded
// answer (nil if not JSON).
func apiCall(t *testing.T, base, method, path, secret, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}
