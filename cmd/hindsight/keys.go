package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/dodev/hindsight/internal/keys"
	"github.com/dodev/hindsight/schema"
)

const keysUsage = `Usage:
  hindsight keys create --name NAME --scopes stats:read,events:read   (prints the key, once)
  hindsight keys list
  hindsight keys revoke key_…
Each talks to ClickHouse directly (--clickhouse, --database), for first set-up
and for recovery; the API's /v1/keys does the same over HTTP.`

// runKeys creates, lists and revokes API keys in ClickHouse.
func runKeys(ctx context.Context, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(os.Stderr, keysUsage)
		return usagef("keys: want create, list or revoke")
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("keys " + sub)
	var c common
	c.register(fs, "")
	var name, scopes string
	if sub == "create" {
		fs.StringVar(&name, "name", "", "what the key is for, shown in lists (required)")
		fs.StringVar(&scopes, "scopes", "", "comma-separated scopes: "+keys.Join(keys.All, ","))
	}
	if err := fs.parse(rest); err != nil {
		return helpOK(err)
	}
	log, err := c.check(false)
	if err != nil {
		return err
	}
	var id string
	switch sub {
	case "create":
		if err := keys.ValidateName(name); err != nil {
			return usagef("--name: %v", err)
		}
		if _, err := keys.ParseScopes(splitList(scopes)); err != nil {
			return usagef("--scopes: %v", err)
		}
	case "list":
	case "revoke":
		if fs.NArg() != 1 {
			return usagef("keys revoke: want one key id (key_…)")
		}
		id = fs.Arg(0)
	default:
		fmt.Fprintln(os.Stderr, keysUsage)
		return usagef("keys: unknown subcommand %q", sub)
	}
	if sub != "revoke" && fs.NArg() > 0 {
		return usagef("keys %s: unexpected argument %q", sub, fs.Arg(0))
	}

	conn, err := openClickHouse(ctx, c, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := schema.MigrateCluster(ctx, conn, c.database, c.cluster); err != nil {
		return err
	}
	store := keys.NewStore(conn, c.database)
	switch sub {
	case "create":
		sc, _ := keys.ParseScopes(splitList(scopes))
		k, secret, err := store.Create(ctx, name, sc)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "created %s (%s) with %s; the key is shown once:\n", k.ID, k.Name, keys.Join(k.Scopes, ","))
		fmt.Println(secret)
	case "list":
		ks, err := store.List(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tNAME\tPREFIX\tSCOPES\tCREATED\tLAST USED")
		for _, k := range ks {
			used := "never"
			if !k.LastUsed.IsZero() {
				used = k.LastUsed.Format("2006-01-02 15:04:05Z")
			}
			fmt.Fprintf(w, "%s\t%s\t%s…\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, keys.Join(k.Scopes, ","),
				k.CreatedAt.Format("2006-01-02 15:04:05Z"), used)
		}
		return w.Flush()
	case "revoke":
		if err := store.Revoke(ctx, id); err != nil {
			return err
		}
		fmt.Printf("revoked %s; every API process refuses it within %s\n", id, keys.MaxAge)
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
