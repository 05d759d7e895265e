package apiclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/apiclient"
	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/proctest"
	"github.com/dodev/hindsight/internal/webhooktest"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

// TestGeneratedIsCurrent regenerates the client from internal/host/openapi.json and
// requires the committed one to be it: a change to the document that
// breaks generation, or is not regenerated, fails here.
func TestGeneratedIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds oapi-codegen")
	}
	// The committed config, writing elsewhere (its output wins over -o).
	dir := t.TempDir()
	cfg, err := os.ReadFile("oapi-codegen.yaml")
	require.NoError(t, err)
	out := filepath.Join(dir, "client.gen.go")
	cfg = bytes.Replace(cfg, []byte("output: client.gen.go"), []byte("output: "+out), 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "oapi-codegen.yaml"), cfg, 0o644))
	cmd := exec.Command("go", "tool", "oapi-codegen", "-config", filepath.Join(dir, "oapi-codegen.yaml"), "../../internal/host/openapi.json")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	want, err := os.ReadFile(out)
	require.NoError(t, err)
	got, err := os.ReadFile("client.gen.go")
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got), "client.gen.go is not what oapi-codegen makes of openapi.json: run go generate ./internal/apiclient")
}

const apiKey = "apiclient-key-0123456789abcdef"

// TestClientAgainstDevStack runs `hindsight dev` with the sample loaded and
// uses the generated client as a user's program would: it decodes a stats
// answer, a page of the listing and a replay, and every count it decodes
// equals the same answer decoded as plain JSON.
func TestClientAgainstDevStack(t *testing.T) {
	addr := chtest.Addr(t)
	bin, err := proctest.Build(t.TempDir())
	require.NoError(t, err)
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		return ln.Addr().String()
	}
	httpAddr, kafka := free(), free()
	dev := proctest.Start(t, bin, filepath.Join(t.TempDir(), "dev.log"),
		[]string{"HINDSIGHT_DATABASE=" + fmt.Sprintf("apiclient_%d", os.Getpid()), "HINDSIGHT_LOG_LEVEL=warn"},
		"dev", "--clickhouse", addr, "--data", t.TempDir(), "--http", httpAddr, "--kafka-listen", kafka,
		"--api-key", apiKey, "--load", "../../testdata/events.ndjson")
	t.Cleanup(func() { _ = dev.Process.Signal(os.Interrupt); _ = dev.Wait() })

	ctx := context.Background()
	client, err := apiclient.NewClientWithResponses("http://"+httpAddr, apiclient.WithRequestEditorFn(
		func(_ context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+apiKey)
			return nil
		}))
	require.NoError(t, err)
	from, to := "2026-10-01T00:00:00Z", "2026-11-02T00:00:00Z"
	day := apiclient.GetStatsParamsGranularity("day")
	params := &apiclient.GetStatsParams{From: &from, To: &to, Granularity: &day}

	// The sample is loaded once the counts stop growing.
	var stats *apiclient.GetStatsResponse
	last := int64(-1)
	require.Eventually(t, func() bool {
		stats, err = client.GetStatsWithResponse(ctx, "send", params)
		if err != nil || stats.JSON200 == nil || stats.JSON200.Totals.Events == 0 {
			return false
		}
		n := stats.JSON200.Totals.Events
		done := n == last
		last = n
		return done
	}, 2*time.Minute, time.Second, "the sample loads")

	t.Run("stats", func(t *testing.T) {
		var raw struct {
			Totals struct {
				Events int64
				Rates  map[string]struct{ Numerator, Denominator int64 }
			}
			Series []json.RawMessage
		}
		require.NoError(t, json.Unmarshal(stats.Body, &raw))
		got := stats.JSON200
		assert.Equal(t, raw.Totals.Events, got.Totals.Events)
		require.NotEmpty(t, got.Totals.Rates)
		for name, r := range raw.Totals.Rates {
			assert.Equal(t, r.Numerator, got.Totals.Rates[name].Numerator, name)
			assert.Equal(t, r.Denominator, got.Totals.Rates[name].Denominator, name)
		}
		require.NotNil(t, got.Series)
		assert.Len(t, *got.Series, len(raw.Series), "a day series")
	})

	t.Run("listing", func(t *testing.T) {
		limit := int32(25)
		page, err := client.ListEventsWithResponse(ctx, &apiclient.ListEventsParams{From: &from, To: &to, Limit: &limit})
		require.NoError(t, err)
		require.NotNil(t, page.JSON200, "%s", page.Body)
		var raw struct{ Data []struct{ EventID string } }
		require.NoError(t, json.Unmarshal(page.Body, &raw))
		require.Len(t, page.JSON200.Data, 25)
		for i, ev := range page.JSON200.Data {
			assert.Equal(t, raw.Data[i].EventID, ev.EventId)
		}
		assert.NotNil(t, page.JSON200.NextCursor)
	})

	t.Run("replay", func(t *testing.T) {
		recv := webhooktest.New(t)
		events := []string{"send.email.bounced"}
		url := recv.URL + "/hook"
		ep, err := client.CreateEndpointWithResponse(ctx, apiclient.CreateEndpointJSONRequestBody{Url: &url, EnabledEvents: &events})
		require.NoError(t, err)
		require.NotNil(t, ep.JSON201, "%s", ep.Body)
		recv.SetSecret(*ep.JSON201.Secret)
		var since, until apiclient.ReplayInput_Since
		require.NoError(t, since.FromReplayInputSince0(from))
		require.NoError(t, until.FromReplayInputSince0(to))
		u := apiclient.ReplayInput_Until(until)
		job, err := client.CreateReplayWithResponse(ctx, apiclient.CreateReplayJSONRequestBody{EndpointId: ep.JSON201.Id, Since: since, Until: &u})
		require.NoError(t, err)
		require.NotNil(t, job.JSON202, "%s", job.Body)
		var got *apiclient.GetReplayResponse
		require.Eventually(t, func() bool {
			got, err = client.GetReplayWithResponse(ctx, job.JSON202.Id)
			return err == nil && got.JSON200 != nil && got.JSON200.Status == "completed"
		}, time.Minute, 200*time.Millisecond)
		var raw struct{ Matched, Delivered int64 }
		require.NoError(t, json.Unmarshal(got.Body, &raw))
		assert.Equal(t, raw.Matched, got.JSON200.Matched)
		assert.Equal(t, raw.Delivered, got.JSON200.Delivered)
		assert.Positive(t, got.JSON200.Delivered)
		assert.Len(t, recv.Counts(), int(got.JSON200.Delivered), "every bounce delivered")
		assert.Zero(t, recv.Bad())
	})
}
