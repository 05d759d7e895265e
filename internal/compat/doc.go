// Package compat proves that every statement Hindsight sends works, with the
// same results, on ClickHouse 18.16 (Debian's server) and on a current
// ClickHouse (chDB 26.x, embedded). Its only code is tests, built with the
// "chdb" tag, so chDB never reaches the production binary.
//
// Run it with `make test` (which fetches libchdb.so) or:
//
//	CHDB_LIB_PATH=.cache/chdb/libchdb.so go test -tags chdb ./internal/compat/
package compat
