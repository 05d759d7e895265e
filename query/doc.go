// Package query serves the read side of Hindsight's HTTP API: stats, the
// events listing and its exports, event and message lookups, event types and
// dead letters, all read from ClickHouse. Its routes mount on the /v1 group
// of the HTTP host (internal/host), which checks keys and binds the
// ClickHouse limits every query here carries.
//
// It only reads. No user input reaches SQL except as a bound value or as a
// value chosen from a fixed allow-list.
package query
