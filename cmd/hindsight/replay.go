package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dodev/hindsight/internal/host"
)

// apiClient talks to the HTTP API for the commands that use it (replay,
// attempts).
type apiClient struct {
	base, key string
	http      *http.Client
}

// apiFlags are the flags of the commands that talk to the API.
type apiFlags struct{ url, key string }

func (f *apiFlags) register(fs *flagSet) {
	fs.StringVar(&f.url, "api", "http://"+host.DefaultAddr, "Hindsight API base URL")
	fs.StringVar(&f.key, "api-key", "", "API key (default: HINDSIGHT_API_KEY, or .hindsight/api-key left by dev)")
}

// client is a client of the API at the flags' URL with their key, or with
// the key `hindsight dev` left in .hindsight/api-key when none is given.
func (f apiFlags) client() (apiClient, error) {
	base, key := f.url, f.key
	if key == "" {
		if b, err := os.ReadFile(".hindsight/api-key"); err == nil {
			key = strings.TrimSpace(string(b))
		}
	}
	if key == "" {
		return apiClient{}, usagef("--api-key (HINDSIGHT_API_KEY) is required")
	}
	return apiClient{base: strings.TrimSuffix(base, "/"), key: key, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

func (c apiClient) do(ctx context.Context, method, path string, body, into any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return apiError(method, path, resp)
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if into != nil {
		return json.Unmarshal(raw, into)
	}
	return nil
}

// apiError reads an error answer: the API's code and message when it gave
// them.
func apiError(method, path string, resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e struct {
		Error struct{ Code, Message string }
	}
	if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
		return fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, e.Error.Code, e.Error.Message)
	}
	return fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
}

type replayStatus struct {
	ID         string   `json:"id"`
	Status     string   `json:"status"`
	Matched    uint64   `json:"matched"`
	Delivered  uint64   `json:"delivered"`
	Failed     uint64   `json:"failed"`
	Progress   float64  `json:"progress"`
	Rate       float64  `json:"rate"`
	ETASeconds *float64 `json:"eta_seconds"`
	LagSeconds *float64 `json:"lag_seconds"` // a follow's
	LastError  *string  `json:"last_error"`
}

func (s replayStatus) done() bool {
	return s.Status == "completed" || s.Status == "failed" || s.Status == "cancelled"
}

func runReplay(ctx context.Context, args []string) error {
	fs := newFlags("replay")
	var api apiFlags
	var endpoint, since, until, events, livemode, cancelID string
	var dryRun, unordered, onlyFailed, followNew bool
	var concurrency int
	var rateLimit float64
	api.register(fs)
	fs.StringVar(&endpoint, "endpoint", "", "endpoint to replay to, whep_…")
	fs.StringVar(&since, "since", "", "replay events created at or after this time (RFC3339 or ms)")
	fs.StringVar(&until, "until", "", "and before this time (default: no end)")
	fs.StringVar(&events, "events", "", "comma-separated patterns (default: the endpoint's)")
	fs.StringVar(&livemode, "livemode", "all", "true, false or all")
	fs.BoolVar(&dryRun, "dry-run", false, "count what would be sent, send nothing")
	fs.BoolVar(&unordered, "unordered", false, "deliver with several in flight instead of in order")
	fs.BoolVar(&onlyFailed, "only-failed", false, "only the events whose latest attempt to the endpoint was not delivered")
	fs.IntVar(&concurrency, "concurrency", 0, "deliveries in flight for --unordered (default 8, at most 256)")
	fs.Float64Var(&rateLimit, "rate-limit", 0, "deliveries per second at most")
	fs.BoolVar(&followNew, "follow", false, "after the range, go on delivering each matching event as it arrives, until cancelled (no --until)")
	fs.StringVar(&cancelID, "cancel", "", "cancel this replay, rpl_…, instead of starting one")
	if err := fs.parse(args); err != nil {
		return helpOK(err)
	}
	c, err := api.client()
	if err != nil {
		return err
	}
	if cancelID != "" {
		var st replayStatus
		if err := c.do(ctx, http.MethodPost, "/v1/replays/"+cancelID+"/cancel", nil, &st); err != nil {
			return err
		}
		fmt.Printf("%s: %s\n", st.ID, st.Status)
		return nil
	}
	if endpoint == "" {
		return usagef("--endpoint is required")
	}
	if since == "" {
		return usagef("--since is required")
	}
	if concurrency != 0 && !unordered {
		return usagef("--concurrency goes with --unordered")
	}
	if followNew && until != "" {
		return usagef("--follow has no end: give --until or --follow, not both")
	}
	body := map[string]any{"endpoint_id": endpoint, "since": since, "livemode": livemode, "ordered": !unordered, "dry_run": dryRun,
		"only_failed": onlyFailed, "follow": followNew}
	if until != "" {
		body["until"] = until
	}
	if events != "" {
		body["enabled_events"] = strings.Split(events, ",")
	}
	if concurrency != 0 {
		body["concurrency"] = concurrency
	}
	if rateLimit != 0 {
		body["rate_limit"] = rateLimit
	}
	if dryRun {
		var d map[string]any
		if err := c.do(ctx, http.MethodPost, "/v1/replays", body, &d); err != nil {
			return err
		}
		out, _ := json.MarshalIndent(d, "", "  ")
		fmt.Println(string(out))
		return nil
	}
	var st replayStatus
	if err := c.do(ctx, http.MethodPost, "/v1/replays", body, &st); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "replay %s started; Ctrl-C stops following, not the replay\n", st.ID)
	return follow(ctx, c, st.ID, isTerminal(os.Stderr))
}

// follow shows a replay's progress until it ends or ctx does (Ctrl-C,
// which detaches: the job goes on in the workers).
func follow(ctx context.Context, c apiClient, id string, bar bool) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var st replayStatus
	last := ""
	for {
		// A fresh context per poll: ctx ending means "detach", not "fail".
		pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.do(pctx, http.MethodGet, "/v1/replays/"+id, nil, &st)
		cancel()
		if err != nil {
			return err
		}
		line := replayLine(st)
		if bar {
			fmt.Fprint(os.Stderr, "\r"+line)
		} else if line != last {
			fmt.Fprintln(os.Stderr, line)
		}
		last = line
		if st.done() {
			if bar {
				fmt.Fprintln(os.Stderr)
			}
			fmt.Printf("%s %s: %d delivered, %d failed of %d\n", st.ID, st.Status, st.Delivered, st.Failed, st.Matched)
			if st.Status != "completed" {
				msg := st.Status
				if st.LastError != nil {
					msg += ": " + *st.LastError
				}
				return errors.New(msg)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if bar {
				fmt.Fprintln(os.Stderr)
			}
			fmt.Printf("detached; %s goes on. Follow it with GET /v1/replays/%s, stop it with: hindsight replay --cancel %s\n", id, id, id)
			return nil
		case <-t.C:
		}
	}
}

// replayLine is "[=====>    ]  52% 2600/5000 delivered, 3 failed, 1234/s, ETA 12s",
// or for a follow past its range "following: 5210 delivered, 3 failed, 41/s, lag 0.2s".
func replayLine(st replayStatus) string {
	if st.Status == "following" {
		lag := "-"
		if st.LagSeconds != nil {
			lag = fmt.Sprintf("%.1fs", *st.LagSeconds)
		}
		return fmt.Sprintf("following: %d delivered, %d failed, %.0f/s, lag %s ", st.Delivered, st.Failed, st.Rate, lag)
	}
	const width = 30
	done := int(st.Progress * width)
	bar := strings.Repeat("=", done) + strings.Repeat(" ", width-done)
	if done < width {
		bar = bar[:done] + ">" + bar[done+1:]
	}
	eta := "-"
	if st.ETASeconds != nil {
		eta = (time.Duration(*st.ETASeconds) * time.Second).String()
	}
	return fmt.Sprintf("[%s] %3.0f%% %d/%d delivered, %d failed, %.0f/s, ETA %s, %s ",
		bar, st.Progress*100, st.Delivered, st.Matched, st.Failed, st.Rate, eta, st.Status)
}
