// Package apitest is the tests' client of Hindsight's HTTP API: a request
// with a bearer key whose JSON answer is decoded, the one piece every suite
// (query, dashboard, cmd, e2e, cluster) needs.
package apitest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// Do sends method url with the bearer key and body as JSON (nil: no body),
// decodes the JSON answer into into (nil: the answer is not read as JSON)
// and returns the status. A transport error or an answer that is not JSON
// fails the test.
func Do(t testing.TB, method, url, key string, body, into any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if into != nil {
		require.NoError(t, json.Unmarshal(raw, into), "%s %s: %s", method, url, raw)
	}
	return resp.StatusCode
}

// Get is Do of a GET.
func Get(t testing.TB, url, key string, into any) int {
	t.Helper()
	return Do(t, http.MethodGet, url, key, nil, into)
}
