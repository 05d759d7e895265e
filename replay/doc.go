// Package replay re-delivers historical ranges of the events table to
// webhook endpoints by event-type pattern: it owns endpoints (URL, patterns,
// signing secrets), replay jobs (leased by workers, resumable from a
// persisted cursor), the delivery of each event (its attempts, with
// package webhook, and the retries they call for) and the record of every
// attempt.
//
// It reads events and keeps its own tables in ClickHouse, with DDL from
// package schema. It must not import package ingest or query.
package replay
