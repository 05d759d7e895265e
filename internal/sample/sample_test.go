package sample

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTestdataIsGenerated keeps testdata/events.ndjson what gensample writes,
// so the sample can be regenerated and reviewed as code.
func TestTestdataIsGenerated(t *testing.T) {
	want, err := os.ReadFile("../../testdata/events.ndjson")
	require.NoError(t, err)
	var got bytes.Buffer
	for _, ev := range Generate(5000, TestdataOptions(1)) {
		got.Write(ev)
		got.WriteByte('\n')
	}
	assert.True(t, bytes.Equal(want, got.Bytes()), "regenerate: go run ./internal/sample/gensample > testdata/events.ndjson")
}

func TestGenerateIsDeterministic(t *testing.T) {
	a := Generate(300, TestdataOptions(3))
	b := Generate(300, TestdataOptions(3))
	c := Generate(300, TestdataOptions(4))
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, c)
	assert.GreaterOrEqual(t, len(a), 300)
}
