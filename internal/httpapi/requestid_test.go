package httpapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/httpapi"
)

// TestRequestIDs: a sane X-Request-Id is kept, anything else replaced by a
// fresh id; the answer carries it, and a 500's body and log line name it.
func TestRequestIDs(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	g := gin.New()
	g.Use(httpapi.RequestIDs)
	g.GET("/fail", func(c *gin.Context) { httpapi.Fail(c, log, errors.New("boom"), nil) })
	srv := httptest.NewServer(g)
	defer srv.Close()
	get := func(id string) (*http.Response, httpapi.Error) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/fail", nil)
		if id != "" {
			req.Header.Set("X-Request-Id", id)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var e httpapi.Error
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
		return resp, e
	}

	resp, body := get("lb-7f3a.01_x")
	assert.Equal(t, "lb-7f3a.01_x", resp.Header.Get("X-Request-Id"), "a sane id is kept")
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	assert.Contains(t, body.Error.Message, "(request lb-7f3a.01_x)")
	assert.Contains(t, logs.String(), `"request_id":"lb-7f3a.01_x"`)

	seen := map[string]bool{}
	for _, bad := range []string{"", "has space", strings.Repeat("x", 65), "quote\"", "tab\there"} {
		resp, _ := get(bad)
		id := resp.Header.Get("X-Request-Id")
		assert.Regexp(t, "^[0-9a-f]{16}$", id, "%q is replaced", bad)
		assert.False(t, seen[id], "ids are fresh")
		seen[id] = true
	}
}
