package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestAppendTSV: fields are written as ClickHouse's TabSeparated reads
// them, an array's elements quoted.
func TestAppendTSV(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{"plain", "plain"},
		{"a\tb\nc\\d'e", `a\tb\nc\\d'e`},
		{[]string{}, "[]"},
		{[]string{"x@y.io", "it's\\"}, `['x@y.io','it\'s\\']`},
		{time.Date(2026, 10, 1, 2, 3, 4, 0, time.FixedZone("", 3600)), "2026-10-01 01:03:04"},
		{int64(-5), "-5"},
		{uint8(1), "1"},
		{1.5, "1.5"},
	} {
		assert.Equal(t, tc.want, string(appendTSV(nil, tc.in)), "%#v", tc.in)
	}
}
