// Package query serves Hindsight's HTTP API with Gin: health and readiness,
// bearer-key auth, and aggregates read from ClickHouse's events table.
//
// It only reads. No user input reaches SQL except as a bound value or as a
// value chosen from a fixed allow-list; every query carries ClickHouse limits.
// It does not import package ingest: readiness of other components comes in
// as a function.
package query
