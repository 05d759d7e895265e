package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHealthcheck(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/metrics" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer up.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer down.Close()
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	ctx := context.Background()

	assert.NoError(t, run(ctx, []string{"healthcheck", "--http", addr(up)}))
	assert.NoError(t, run(ctx, []string{"healthcheck", "--metrics", addr(up)}))
	assert.ErrorContains(t, run(ctx, []string{"healthcheck", "--http", addr(down)}), "503")
	closed := addr(down)
	down.Close()
	assert.Error(t, run(ctx, []string{"healthcheck", "--http", closed}), "nothing listens")
}

func TestLoopback(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:8080":   "127.0.0.1:8080",
		":8080":          "127.0.0.1:8080",
		"[::]:9100":      "127.0.0.1:9100",
		"10.0.0.5:8080":  "10.0.0.5:8080",
		"127.0.0.1:8081": "127.0.0.1:8081",
	} {
		assert.Equal(t, want, loopback(in), in)
	}
}
