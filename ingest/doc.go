// Package ingest moves events from a Kafka topic into ClickHouse's events
// table: it validates each record with package schema, dead-letters the bad
// ones to "<topic>.dlq" with the reason in an "error" header, keeps duplicate
// eventIds out of the table, records in event_dups the copies it could not
// keep out (so counts read them once), inserts in columnar batches and
// commits Kafka offsets only after ClickHouse acknowledged the rows they
// cover and those rows were looked at for copies.
//
// It writes to ClickHouse and Kafka and serves nothing; queries live in
// package query, re-delivery in package replay.
package ingest
