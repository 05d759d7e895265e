// Package faults is the fault suite (`make test-faults`, build tag faults):
// real `hindsight` processes on the embedded broker and a private ClickHouse
// server, SIGKILLed in a loop, cut off from ClickHouse, fed a recreated
// topic, a ten-year backfill, a 1 MB invalid record and a rebalance storm.
// After each fault every unique valid eventId must be stored once, counted
// once by the API, and every invalid record must be on the dead-letter topic.
// With HINDSIGHT_FAULTS_REPORT=FILE it writes what it injected and counted
// to FILE (docs/reliability.md).
//
// It holds tests only; nothing imports it.
package faults
