// Package keys owns the API's keys: who may call which /v1 route.
//
// A key is "hs_" followed by 32 base64url characters (192 random bits). It is
// shown once, when it is created; ClickHouse keeps its SHA-256 beside a short
// display prefix, never the key. Each key holds scopes (stats:read,
// events:read, endpoints:write, replays:write, keys:admin) and every route
// requires one; the bootstrap key (HINDSIGHT_API_KEY) is not stored and holds
// every scope.
//
// Each API process keeps the live keys in memory (Checker). It reloads them
// from ClickHouse at most once a second, in the background while requests go
// on, and trusts a copy for at most MaxAge (5 s): a revoked key stops working
// on every process within MaxAge, and a key check costs no ClickHouse query in
// the steady state. When each key was last used is kept in memory and written
// on those reloads.
package keys
