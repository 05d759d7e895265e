// Command hindsight runs Hindsight: `dev` runs everything in one process for a
// laptop; `serve`, `ingest`, `api` and `migrate` run the roles against an
// existing Kafka and ClickHouse; `produce` sends NDJSON events to Kafka.
//
// This package only wires the components together; nothing imports it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `hindsight: event analytics and replay for do.dev's webhook events

Usage:
  hindsight dev      [--data DIR] [--http ADDR] [--kafka-listen ADDR] [--clickhouse ADDR] [--load FILE]
  hindsight serve    --kafka HOSTS --clickhouse ADDR   (ingest, the HTTP API and a replay worker)
  hindsight ingest   --kafka HOSTS --clickhouse ADDR
  hindsight api      --clickhouse ADDR
  hindsight replay-worker --clickhouse ADDR            (runs replay jobs; start several to share them)
  hindsight migrate  --clickhouse ADDR [--rebuild-rollups]
  hindsight produce  [--kafka HOSTS] [--topic events] FILE|-
  hindsight replay   --endpoint whep_… --since TIME [--until TIME] [--events send.email.*] [--only-failed] [--dry-run] [--unordered --concurrency N]
  hindsight replay   --cancel rpl_…
  hindsight attempts --endpoint whep_… | --replay rpl_… [--outcome failed] [--event-id ID] [--from T] [--to T] [--limit N] [--json]
  hindsight export   [--since TIME] [--until TIME] [--events send.email.*] [--filter name=v1,v2]… [--format ndjson|csv] [--out FILE]
  hindsight keys     create --name NAME --scopes stats:read,… | list | revoke key_…   (API keys, in ClickHouse)
  hindsight broker   [--listen 127.0.0.1:9092] [--data DIR]   (the embedded Kafka-protocol broker alone)
  hindsight healthcheck [--http ADDR | --metrics ADDR]   (exit 0 if this host's process answers; the image's HEALTHCHECK)
  hindsight version

Every flag can also be set by an environment variable: --kafka is HINDSIGHT_KAFKA,
--api-key is HINDSIGHT_API_KEY, and so on. "hindsight CMD -h" lists a command's flags.
`

// usageError is a bad or missing setting: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "hindsight:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		return runDev(ctx, rest)
	case "serve":
		return runRoles(ctx, "serve", rest, true, true, true)
	case "ingest":
		return runRoles(ctx, "ingest", rest, true, false, false)
	case "api":
		return runRoles(ctx, "api", rest, false, true, false)
	case "replay-worker":
		return runRoles(ctx, "replay-worker", rest, false, false, true)
	case "migrate":
		return runMigrate(ctx, rest)
	case "produce":
		return runProduce(ctx, rest)
	case "broker":
		return runBroker(ctx, rest)
	case "replay":
		return runReplay(ctx, rest)
	case "keys":
		return runKeys(ctx, rest)
	case "attempts":
		return runAttempts(ctx, rest, os.Stdout)
	case "export":
		return runExport(ctx, rest, os.Stdout)
	case "healthcheck":
		return runHealthcheck(ctx, rest)
	case "version", "--version":
		fmt.Println("hindsight", version)
		return nil
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return usagef("unknown command %q", cmd)
}
