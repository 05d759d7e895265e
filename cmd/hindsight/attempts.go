package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// attempt is one line of the attempt log, as the API gives it.
type attempt struct {
	At        time.Time `json:"at"`
	EventID   string    `json:"event_id"`
	Type      string    `json:"type"`
	Attempt   int       `json:"attempt"`
	Outcome   string    `json:"outcome"`
	Status    int       `json:"status"`
	LatencyMS float64   `json:"latency_ms"`
	Error     string    `json:"error"`
	Response  string    `json:"response"`
	ReplayID  string    `json:"replay_id"`
}

// runAttempts prints the attempt log of an endpoint or a replay, newest
// first, page after page through the API: a table, or one JSON object per
// line with --json.
func runAttempts(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("attempts")
	var api apiFlags
	var endpoint, replayID, outcome, eventID, from, to string
	var limit int
	var asJSON bool
	api.register(fs)
	fs.StringVar(&endpoint, "endpoint", "", "the attempts to this endpoint, whep_…")
	fs.StringVar(&replayID, "replay", "", "the attempts of this replay, rpl_…")
	fs.StringVar(&outcome, "outcome", "", "delivered, failed or retrying (default: all)")
	fs.StringVar(&eventID, "event-id", "", "only this event's attempts")
	fs.StringVar(&from, "from", "", "attempts at or after this time (RFC3339 or ms)")
	fs.StringVar(&to, "to", "", "and before this time")
	fs.IntVar(&limit, "limit", 50, "attempts to print at most; 0 prints every one")
	fs.BoolVar(&asJSON, "json", false, "one JSON object per line instead of a table")
	if err := fs.parse(args); err != nil {
		return helpOK(err)
	}
	if (endpoint == "") == (replayID == "") {
		return usagef("give one of --endpoint or --replay")
	}
	if limit < 0 {
		return usagef("--limit %d: want 0 (all) or more", limit)
	}
	c, err := api.client()
	if err != nil {
		return err
	}
	path := "/v1/endpoints/" + url.PathEscape(endpoint) + "/attempts"
	if replayID != "" {
		path = "/v1/replays/" + url.PathEscape(replayID) + "/attempts"
	}
	q := url.Values{}
	for k, v := range map[string]string{"outcome": outcome, "event_id": eventID, "from": from, "to": to} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var tw *tabwriter.Writer
	if !asJSON {
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tEVENT\tTYPE\tATTEMPT\tOUTCOME\tSTATUS\tLATENCY\tERROR")
	}
	enc := json.NewEncoder(out)
	printed := 0
	for {
		q.Set("limit", strconv.Itoa(pageSize(limit, printed)))
		var page struct {
			Data       []attempt `json:"data"`
			NextCursor *string   `json:"next_cursor"`
		}
		if err := c.do(ctx, http.MethodGet, path+"?"+q.Encode(), nil, &page); err != nil {
			return err
		}
		for _, a := range page.Data {
			if asJSON {
				if err := enc.Encode(a); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%.1f ms\t%s\n", a.At.UTC().Format(time.RFC3339Nano), a.EventID, a.Type,
					a.Attempt, a.Outcome, a.Status, a.LatencyMS, oneLine(a.Error, 80))
			}
			printed++
		}
		if page.NextCursor == nil || limit > 0 && printed >= limit {
			break
		}
		q.Set("cursor", *page.NextCursor)
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

// pageSize is how many attempts to ask for next: what is left of limit,
// at most the API's largest page.
func pageSize(limit, printed int) int {
	const most = 1000
	if limit == 0 {
		return most
	}
	return min(limit-printed, most)
}

// oneLine shortens s to n runes on one line, for a table cell.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
