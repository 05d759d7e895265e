package ingest

import (
	"flag"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFlagDefaults: the flags default to what ApplyDefaults gives, so each
// default is written once, and each flag sets its field.
func TestFlagDefaults(t *testing.T) {
	parse := func(args ...string) Config {
		var c Config
		fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
		c.RegisterFlagsAndApplyDefaults(fs)
		require.NoError(t, fs.Parse(args))
		c.ApplyDefaults()
		return c
	}
	var want Config
	want.ApplyDefaults()
	assert.Equal(t, want, parse())

	got := parse("--batch-size", "7", "--instance-id", "pod-1", "--events-retention", "48h", "--topic", "t")
	assert.Equal(t, 7, got.BatchSize)
	assert.Equal(t, "classic", got.GroupProtocol, "static members default to classic groups")
	assert.Equal(t, "48h0m0s", got.EventsRetention.String())
	assert.Equal(t, "t", got.Topic)
	assert.Equal(t, "consumer", parse("--instance-id", "").GroupProtocol)
}
