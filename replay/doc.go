// Package replay will re-deliver historical ranges of the events table to
// webhook endpoints by event-type pattern, signed per the Standard Webhooks
// spec. It reads ClickHouse through package schema's definitions and must
// not import package ingest or query.
//
// Nothing is built here yet: see the replay issue.
package replay
