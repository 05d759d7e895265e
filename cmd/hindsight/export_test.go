package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/sample"
)

// TestExportCommand exports a day of sample events with `hindsight export`
// through a running API, filtered by pattern and dimension, as NDJSON to
// stdout and as CSV to a file: every matching event once, in order.
func TestExportCommand(t *testing.T) {
	conn, db := chtest.MigratedDatabase(t)
	ctx := context.Background()
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	events, err := sample.Events(2000, sample.Options{Seed: 7, Start: start, Span: 24 * time.Hour})
	require.NoError(t, err)
	chtest.InsertEvents(t, conn, db, events)
	var want []string // eventIds of send.email.* to gmail.com or yahoo.com, in order
	for _, ev := range events {
		if ev.CreatedAt < start.Add(24*time.Hour).UnixMilli() && strings.HasPrefix(ev.Type, "send.email.") && (ev.Dims.RecipientDomain == "gmail.com" || ev.Dims.RecipientDomain == "yahoo.com") {
			want = append(want, ev.ID)
		}
	}
	require.Greater(t, len(want), 100)

	const key = "export-key-0123456789abcdef"
	apiURL := startAPI(t, conn, db, key)
	args := []string{"--api", apiURL, "--api-key", key, "--since", start.Format(time.RFC3339), "--until", start.Add(24 * time.Hour).Format(time.RFC3339),
		"--events", "send.email.*", "--filter", "recipient_domain=gmail.com,yahoo.com"}

	var out bytes.Buffer
	require.NoError(t, runExport(ctx, args, &out))
	var got []string
	dec := json.NewDecoder(&out)
	for dec.More() {
		var ev struct{ EventID string }
		require.NoError(t, dec.Decode(&ev))
		got = append(got, ev.EventID)
	}
	require.Equal(t, len(want), len(got), "each once")
	assert.ElementsMatch(t, want, got)

	file := filepath.Join(t.TempDir(), "out.csv")
	require.NoError(t, runExport(ctx, append(args, "--format", "csv", "--out", file), &out))
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Len(t, records, len(want)+1)
	for i, rec := range records[1:] {
		assert.Equal(t, got[i], rec[0], "the same order as NDJSON")
	}

	for _, bad := range [][]string{{"--format", "xml"}, {"--filter", "recipient_domain"}, {"--filter", "format=csv"}} {
		err := runExport(ctx, append(append([]string{}, args...), bad...), &out)
		var ue *usageError
		assert.ErrorAs(t, err, &ue, "%v", bad)
	}
	err = runExport(ctx, append(append([]string{}, args...), "--events", "send.e*"), &out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "400 invalid_parameter: types", "the API's 400, naming the parameter")
}
