# Hindsight's commands. `make run` and `make test` are the README's two.
GO      ?= go
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
BIN     := bin/hindsight
# chDB (ClickHouse 26.x, embedded) for the SQL compatibility test; test-only.
CHDB_VERSION := 26.7.3-stable.1
CHDB_LIB     := .cache/chdb/libchdb.so
# Redocly's CLI lints the OpenAPI document (query/openapi_test.go); test-only.
REDOCLY_VERSION := 2.77.0
REDOCLY         := .cache/redocly/node_modules/.bin/redocly

.PHONY: npm chromium image run test test-unit test-faults test-cluster zookeeper build vet clickhouse bench-tools bench bench-short bench-ingest bench-query bench-query-100m bench-replay bench-cluster fuzz fuzz-ci clean

## run: install ClickHouse if missing, then run everything with the sample loaded
run: clickhouse build
	./$(BIN) dev --load testdata/events.ndjson

# Images the container suite runs here, where no registry is reachable;
# elsewhere set HINDSIGHT_TEST_*_IMAGE to the upstream ones (its defaults).
TEST_IMAGES := HINDSIGHT_TEST_CLICKHOUSE_IMAGE=local/clickhouse-server:18.16 \
	HINDSIGHT_TEST_KAFKA_IMAGE=local/hindsight-broker:dev \
	HINDSIGHT_TEST_HINDSIGHT_IMAGE=local/hindsight:dev

## test: vet; unit tests; integration tests on a local ClickHouse and the
## embedded broker; the testcontainers suite (Docker is set up, and the
## dockerd it starts is stopped after); the SQL compatibility test on
## ClickHouse 18.16 and chDB 26.x; the fault suite; the cluster suite; each
## fuzz test briefly; the dashboard in headless Chromium; make bench, small
test: clickhouse chromium vet $(CHDB_LIB) $(REDOCLY)
	internal/testimages/docker.sh up
	status=0; \
	HINDSIGHT_REQUIRE_CLICKHOUSE=1 HINDSIGHT_REQUIRE_DOCKER=1 HINDSIGHT_REQUIRE_BROWSER=1 $(TEST_IMAGES) CHDB_LIB_PATH=$(abspath $(CHDB_LIB)) \
		HINDSIGHT_REDOCLY=$(abspath $(REDOCLY)) \
		$(GO) test -count=1 -tags chdb -timeout 20m ./... || status=$$?; \
	internal/testimages/docker.sh down; \
	exit $$status
	$(MAKE) test-faults
	$(MAKE) test-cluster
	$(MAKE) fuzz-ci
	$(MAKE) bench-short

## test-faults: real hindsight processes under faults (crash loop, ClickHouse
## outage, recreated topic, backfill, oversized record, rebalance storm);
## writes docs/reliability.md from the run. FAULTS_SKIP is a -skip pattern,
## to look into one fault at a time.
FAULTS_SKIP ?=
test-faults: clickhouse
	HINDSIGHT_FAULTS_REPORT=$(abspath docs/reliability.md) $(GO) test -tags faults -count=1 -timeout 25m -v \
		$(if $(FAULTS_SKIP),-skip '$(FAULTS_SKIP)') ./internal/faults/

## test-cluster: real hindsight processes on a local ClickHouse cluster (2
## shards × 2 replicas, ZooKeeper): ingest while a replica of each shard is
## down, the API against a single server's answers, a replay through it
test-cluster: clickhouse zookeeper
	$(GO) test -tags cluster -count=1 -timeout 15m -v ./internal/cluster/

# Debian's zookeeper package (with Java) for the local cluster.
zookeeper:
	@if [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null; then :; else \
		echo "zookeeper: installing zookeeper with apt"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper >/dev/null; \
	fi

## test-unit: unit tests only (no servers)
test-unit:
	$(GO) test -count=1 -short ./...

## image: the Hindsight image from the Dockerfile (GO_IMAGE and BASE_IMAGE
## override its upstream bases)
IMAGE ?= hindsight:dev
image:
	docker build -t $(IMAGE) --build-arg VERSION=$(VERSION) \
		$(if $(GO_IMAGE),--build-arg GO_IMAGE=$(GO_IMAGE)) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) .

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/hindsight

vet:
	$(GO) vet -tags chdb ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Debian's clickhouse-server (18.16 on bookworm) is enough; any newer server on
# PATH (clickhouse-server or the single clickhouse binary) is used as it is.
clickhouse:
	@if command -v clickhouse-server >/dev/null || command -v clickhouse >/dev/null; then :; else \
		echo "clickhouse: installing clickhouse-server with apt"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server >/dev/null; \
	fi

# Debian's chromium drives the dashboard in its test (internal/dashboard).
chromium:
	@command -v chromium >/dev/null || { echo "chromium: installing chromium with apt"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The npm registry ships chDB's official library (178 MB download) and
# Redocly's CLI.
npm:
	@command -v npm >/dev/null || { echo "npm: installing npm with apt"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }

$(REDOCLY): | npm
	npm install --silent --no-audit --no-fund --prefix .cache/redocly @redocly/cli@$(REDOCLY_VERSION) >/dev/null

$(CHDB_LIB): | npm
	mkdir -p $(dir $@)
	cd $(dir $@) && npm pack --silent @chdb/lib-linux-x64-gnu@$(CHDB_VERSION) >/dev/null && \
		tar -xzf chdb-lib-linux-x64-gnu-$(CHDB_VERSION).tgz --strip-components=1 package/libchdb.so && \
		rm -f chdb-lib-linux-x64-gnu-$(CHDB_VERSION).tgz

## bench: Hindsight beside what its users would run instead, in one run on
## this machine: ingest against kcat | clickhouse-client, ClickHouse's Kafka
## engine and clickhouse-client's own insert; stats through the API against
## its SQL sent directly (8 clients); replay against a bare net/http loop;
## peak RSS of each role. Prints the tables and writes docs/benchmarks.md
## (about 6 minutes here)
bench: clickhouse bench-tools build
	$(GO) run ./cmd/bench -bin $(BIN) -out docs/benchmarks.md

## bench-short: make bench, small, printing only, with ClickHouse's statements
## and parts per section: it keeps the command and -clickhouse-profile working
bench-short: clickhouse bench-tools build
	$(GO) run ./cmd/bench -bin $(BIN) -events 20000 -stats-events 100000 -replay-events 5000 -rounds 2 -clickhouse-profile

# Debian's kcat and clickhouse-client, the peers make bench runs.
bench-tools:
	@if command -v kcat >/dev/null && { command -v clickhouse-client >/dev/null || command -v clickhouse >/dev/null; }; then :; else \
		echo "bench-tools: installing kcat and clickhouse-client with apt"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat clickhouse-client >/dev/null; \
	fi

## bench-ingest: print ingest events/s from the broker to acknowledged inserts
bench-ingest: clickhouse
	HINDSIGHT_REQUIRE_CLICKHOUSE=1 $(GO) test -run '^$$' -bench BenchmarkIngest -benchtime 1x -count 3 -timeout 30m ./ingest/
	HINDSIGHT_REQUIRE_CLICKHOUSE=1 $(GO) test -run '^$$$$' -bench BenchmarkIngestMemory -benchtime 1x -timeout 30m ./cmd/hindsight/

## bench-query: GET /v1/stats/send with a day series over 10M events, against the same SQL sent directly;
## listing pages at the start, middle and end of those 10M and lookups by eventId
bench-query: clickhouse
	HINDSIGHT_REQUIRE_CLICKHOUSE=1 $(GO) test -run '^$$' -bench "BenchmarkStats10M|BenchmarkEvents10M" -benchtime 1x -timeout 30m ./query/

## bench-query-100m: the same stats request over a month of 100M events
## (a quarter of an hour of filling, 5 GB)
bench-query-100m: clickhouse
	HINDSIGHT_REQUIRE_CLICKHOUSE=1 $(GO) test -run '^$$' -bench BenchmarkStats100M -benchtime 1x -timeout 60m ./query/

## bench-replay: deliveries/s and peak heap of replays to a loopback receiver,
## and a follow's produce-to-delivery p50 and p99 at 1,000 events/s for a minute
bench-replay: clickhouse
	HINDSIGHT_REQUIRE_CLICKHOUSE=1 $(GO) test -run '^$$' -bench 'BenchmarkReplay|BenchmarkFollowLatency' -benchtime 1x -timeout 30m ./replay/

## bench-cluster: ingest events/s with one and two processes on the local
## cluster beside the single server, and the stats p50 on each
bench-cluster: clickhouse zookeeper
	$(GO) test -tags cluster -run '^$$' -bench BenchmarkCluster -benchtime 1x -count 3 -timeout 30m ./internal/cluster/

## fuzz: run each fuzz test for a while (FUZZTIME for all of them)
FUZZTIME ?=
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(or $(FUZZTIME),60s) ./schema/
	$(GO) test -run '^$$' -fuzz FuzzParseAsBefore -fuzztime $(or $(FUZZTIME),60s) ./schema/
	$(GO) test -run '^$$' -fuzz FuzzUnescape -fuzztime $(or $(FUZZTIME),30s) ./schema/
	$(GO) test -run '^$$' -fuzz FuzzPattern -fuzztime $(or $(FUZZTIME),30s) ./schema/
	$(GO) test -run '^$$' -fuzz FuzzParseTime -fuzztime $(or $(FUZZTIME),30s) ./internal/httpapi/
	$(GO) test -run '^$$' -fuzz FuzzBuckets -fuzztime $(or $(FUZZTIME),30s) ./internal/httpapi/
	$(GO) test -run '^$$' -fuzz FuzzDecodeCursor -fuzztime $(or $(FUZZTIME),30s) ./query/
	$(GO) test -run '^$$' -fuzz FuzzRetryAfter -fuzztime $(or $(FUZZTIME),30s) ./replay/webhook/
	$(GO) test -run '^$$' -fuzz FuzzCheckIP -fuzztime $(or $(FUZZTIME),30s) ./replay/webhook/

## fuzz-ci: each fuzz test for 50,000 executions (a few seconds each), so CI
## keeps them running. A count, not a duration: Go 1.26's fuzz coordinator can
## report "context deadline exceeded" when a -fuzztime duration ends
## (go.dev/issue/75804, fixed in Go 1.27); a count has no deadline to race.
fuzz-ci:
	$(MAKE) fuzz FUZZTIME=50000x

clean:
	rm -rf bin .hindsight
