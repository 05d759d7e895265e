package query_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDeadLetters counts the dead-letter log by kind over a range and
// lists the latest, newest first.
func TestDeadLetters(t *testing.T) {
	srv, conn, db := newAPI(t)
	t0 := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	kinds := []string{"invalid", "invalid", "too_large", "refused", "invalid"}
	for i, k := range kinds {
		require.NoError(t, conn.Exec(context.Background(), "INSERT INTO "+db+".dead_letter_log (at, kind, reason, source) SELECT ?, ?, ?, ?",
			t0.Add(time.Duration(i)*time.Hour).UnixMilli(), k, fmt.Sprintf("reason %d", i), fmt.Sprintf("events/0/%d", i)))
	}
	// Outside the range asked.
	require.NoError(t, conn.Exec(context.Background(), "INSERT INTO "+db+".dead_letter_log (at, kind, reason, source) SELECT ?, 'refused', 'old', 'events/0/99'",
		t0.Add(-time.Hour).UnixMilli()))

	code, body := get(t, srv, "/v1/dead-letters?from=2026-10-05T00:00:00Z&to=2026-10-06T00:00:00Z&limit=2", key)
	require.Equal(t, http.StatusOK, code, body)
	assert.EqualValues(t, 5, body["total"])
	assert.Equal(t, map[string]any{"invalid": 3.0, "too_large": 1.0, "refused": 1.0}, body["by_kind"])
	latest := body["latest"].([]any)
	require.Len(t, latest, 2)
	assert.Equal(t, map[string]any{"at": "2026-10-05T04:00:00.000Z", "kind": "invalid", "reason": "reason 4", "source": "events/0/4"}, latest[0])
	assert.Equal(t, "reason 3", latest[1].(map[string]any)["reason"])

	code, body = get(t, srv, "/v1/dead-letters?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z", key)
	require.Equal(t, http.StatusOK, code)
	assert.EqualValues(t, 0, body["total"])
	assert.Equal(t, []any{}, body["latest"])
	code, _ = get(t, srv, "/v1/dead-letters?limit=0", key)
	assert.Equal(t, http.StatusBadRequest, code)
}
