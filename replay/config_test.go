package replay

import (
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWorkerFlagDefaults: the flags default to what ApplyDefaults gives,
// and --deliveries-retention 0 keeps the log forever.
func TestWorkerFlagDefaults(t *testing.T) {
	parse := func(args ...string) WorkerConfig {
		c := WorkerConfig{Owner: "w"}
		fs := flag.NewFlagSet("worker", flag.ContinueOnError)
		c.RegisterFlagsAndApplyDefaults(fs)
		require.NoError(t, fs.Parse(args))
		return c
	}
	want := WorkerConfig{Owner: "w"}
	want.ApplyDefaults()
	assert.Equal(t, want, parse())
	assert.Equal(t, 30*24*time.Hour, want.DeliveriesRetention)

	got := parse("--deliveries-retention", "0", "--page-size", "9", "--lease-ttl", "5s", "--max-jobs", "3", "--poll", "250ms")
	assert.Negative(t, got.DeliveriesRetention, "kept forever")
	assert.Equal(t, 9, got.PageSize)
	assert.Equal(t, 5*time.Second, got.LeaseTTL)
	assert.Equal(t, 3, got.MaxJobs)
	assert.Equal(t, 250*time.Millisecond, got.Poll)
	assert.NoError(t, got.Validate())
	tooOften := parse("--poll", "1ms")
	assert.Error(t, tooOften.Validate(), "a look at most every 10 ms")
	assert.Equal(t, 48*time.Hour, parse("--deliveries-retention", "48h").DeliveriesRetention)
}
