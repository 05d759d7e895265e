// Package e2e is the testcontainers-go suite: it starts ClickHouse and a
// Kafka broker as containers, runs the hindsight binary against them, and
// proves the product through its public surfaces only (Kafka in, HTTP out).
// It has no code outside its tests.
//
// Images come from HINDSIGHT_TEST_CLICKHOUSE_IMAGE (default
// clickhouse/clickhouse-server:25.8) and HINDSIGHT_TEST_KAFKA_IMAGE (default
// apache/kafka:4.1.0). Where no registry is reachable, `make test` builds
// local/clickhouse-server:18.16 and local/hindsight-broker:dev with
// internal/testimages/docker.sh and points the suite at them.
//
// Without Docker the suite skips with one line saying why, unless
// HINDSIGHT_REQUIRE_DOCKER=1 (CI), where it fails.
package e2e
