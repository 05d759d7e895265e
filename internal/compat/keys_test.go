//go:build chdb

package compat

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/keys"
	"github.com/dodev/hindsight/schema"
)

// TestKeysSQLCompatibility sends every statement package keys issues to
// both engines: keys created, revoked, listed with their last use, and
// checked by a Checker.
func TestKeysSQLCompatibility(t *testing.T) {
	ctx := context.Background()
	old, db := chtest.Database(t)
	cur := &chdbConn{s: session(t), version: newVersion}
	type view struct {
		Name   string
		Scopes []keys.Scope
		Used   bool
	}
	run := func(name string, conn schema.Conn) (listed []view, checks []error) {
		_, err := schema.Migrate(ctx, conn, db)
		require.NoError(t, err, "migrate on %s", name)
		store := keys.NewStore(conn, db)
		kept, keptSecret, err := store.Create(ctx, "kept", []keys.Scope{keys.StatsRead, keys.EventsRead})
		require.NoError(t, err, name)
		gone, goneSecret, err := store.Create(ctx, "gone", []keys.Scope{keys.KeysAdmin})
		require.NoError(t, err, name)
		require.NoError(t, store.Revoke(ctx, gone.ID), name)
		assert.ErrorIs(t, store.Revoke(ctx, gone.ID), keys.ErrNotFound, name)
		require.NoError(t, store.RecordUses(ctx, map[string]int64{kept.ID: time.Now().UnixMilli()}), name)
		ks, err := store.List(ctx)
		require.NoError(t, err, name)
		for _, k := range ks {
			listed = append(listed, view{k.Name, k.Scopes, !k.LastUsed.IsZero()})
		}
		checker := keys.NewChecker(store, "bootstrap-0123456789abcdef", nil)
		for _, s := range []string{keptSecret, goneSecret, "hs_nope"} {
			_, err := checker.Check(ctx, s)
			checks = append(checks, err)
		}
		return listed, checks
	}
	listedOld, checksOld := run("18.16", old)
	listedCur, checksCur := run("chDB 26.7", cur)
	assert.Equal(t, []view{{"kept", []keys.Scope{keys.StatsRead, keys.EventsRead}, true}}, listedOld)
	assert.Equal(t, listedOld, listedCur)
	assert.Equal(t, []error{nil, keys.ErrUnknown, keys.ErrUnknown}, checksOld)
	assert.Equal(t, checksOld, checksCur)
}
