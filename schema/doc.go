// Package schema owns what an event is: the catalog of known event types, the
// validation of raw Kafka record values, the typed row an event becomes, the
// event-type patterns endpoints subscribe with, the versioned ClickHouse DDL
// that stores it all, and how the API reads the events table: counts that
// read each stored event once (Counted), from the stats rollup where it
// counts exactly (Rollup), distinct counts from links where current (Links)
// or else from engagements (EngagedBy),
// reads narrowed to a messageId's or a recipient's sort keys (MessagesAt,
// RecipientsAt), pages a window at a time (FirstPageWindow).
//
// It is the one package every other package imports; it imports none of
// them. It talks to ClickHouse to apply migrations, to look up recorded
// duplicates, to build and check the rollup and to build links.
package schema
