package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/dodev/hindsight/schema"
)

// flagSet is a command's flags; each flag also reads HINDSIGHT_<NAME>.
type flagSet struct {
	*flag.FlagSet
}

func newFlags(cmd string) *flagSet {
	fs := flag.NewFlagSet("hindsight "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &flagSet{fs}
}

// envName maps a flag to its environment variable: kafka-listen is
// HINDSIGHT_KAFKA_LISTEN.
func envName(flag string) string {
	return "HINDSIGHT_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// parse reads the command line, then fills flags not given there from the
// environment. A bad value from either is a usage error naming it.
func (fs *flagSet) parse(args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fmt.Printf("Usage of %s:\n", fs.Name())
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = usagef("%s=%q: %v", envName(f.Name), v, serr)
			}
		}
	})
	return err
}

// common are the settings shared by the commands that talk to ClickHouse.
type common struct {
	clickhouse, database, user, password string
	cluster                              string
	logLevel, logFormat                  string
}

func (c *common) register(fs *flagSet, chDefault string) {
	fs.StringVar(&c.clickhouse, "clickhouse", chDefault, "ClickHouse native-protocol address, host:port; several, comma-separated, are tried in order (the servers of a cluster)")
	fs.StringVar(&c.database, "database", schema.DefaultDatabase, "ClickHouse database")
	fs.StringVar(&c.cluster, "cluster", "", "ClickHouse cluster (remote_servers) holding the tables: events sharded and replicated, the rest replicated; empty: one server")
	fs.StringVar(&c.user, "user", "default", "ClickHouse user")
	fs.StringVar(&c.password, "password", "", "ClickHouse password")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "auto", "log format: json, text, or auto (text on a terminal, JSON otherwise)")
}

// check validates the shared settings and returns the logger they ask for.
// An empty --clickhouse is allowed only where optional (dev starts its own).
func (c *common) check(clickhouseOptional bool) (*slog.Logger, error) {
	if c.clickhouse != "" || !clickhouseOptional {
		if _, err := checkAddrs("clickhouse", c.clickhouse); err != nil {
			return nil, err
		}
	}
	if err := schema.ValidateDatabase(c.database); err != nil {
		return nil, usagef("--database: %v", err)
	}
	if c.cluster != "" {
		if err := schema.ValidateCluster(c.cluster); err != nil {
			return nil, usagef("--cluster: %v", err)
		}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch c.logFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "auto":
		// People read a terminal; log collectors read everything else.
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, usagef("--log-format %q: want auto, json or text", c.logFormat)
}

// checkAddr is a usage error unless addr is host:port.
func checkAddr(flagName, addr string) error {
	if addr == "" {
		return usagef("--%s (%s) is required", flagName, envName(flagName))
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return usagef("--%s %q: want host:port", flagName, addr)
	}
	return nil
}

// checkAddrs checks a comma-separated list of host:port.
func checkAddrs(flagName, list string) ([]string, error) {
	if list == "" {
		return nil, usagef("--%s (%s) is required", flagName, envName(flagName))
	}
	var out []string
	for a := range strings.SplitSeq(list, ",") {
		a = strings.TrimSpace(a)
		if err := checkAddr(flagName, a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// helpOK turns -h, which printed the flags, into a clean exit.
func helpOK(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}
