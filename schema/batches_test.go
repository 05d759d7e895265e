package schema

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestCheckBatches: a check's quarter hours split where a statement would
// hold more events than allowed; a quarter hour over the bound goes alone.
func TestCheckBatches(t *testing.T) {
	const q = RollupStep
	steps := []int64{0, q, 2 * q, 5 * q, 7 * q, 8 * q, 20 * q}
	ones := []uint64{1, 1, 1, 1, 1, 1, 1}
	assert.Equal(t, [][]int64{steps}, checkBatches(steps, ones, 100))
	assert.Equal(t, [][]int64{{0, q, 2 * q}, {5 * q, 7 * q, 8 * q}, {20 * q}}, checkBatches(steps, ones, 3), "three events each")
	assert.Equal(t, [][]int64{{0}, {q}, {2 * q, 5 * q}}, checkBatches(steps[:4], []uint64{5, 9, 1, 1}, 4), "one over the bound alone")
	assert.Empty(t, checkBatches(nil, nil, 4))
}
