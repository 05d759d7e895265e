// Package schema owns what an event is: the catalog of known event types, the
// validation of raw Kafka record values, the typed row an event becomes, the
// event-type patterns endpoints subscribe with, and the versioned ClickHouse
// DDL that stores it all.
//
// It is the one package every other package imports; it imports none of
// them. It talks to ClickHouse only to apply migrations.
package schema
