package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// runExport streams every matching event from the API to stdout (or
// --out), as NDJSON or CSV, with a progress line on stderr when it is a
// terminal.
func runExport(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("export")
	var api apiFlags
	var since, until, events, livemode, format, out string
	var filters []string
	api.register(fs)
	fs.StringVar(&since, "since", "", "events created at or after this time (RFC3339 or ms; default: 7 days before --until)")
	fs.StringVar(&until, "until", "", "and before this time (default: now)")
	fs.StringVar(&events, "events", "", "comma-separated patterns: *, send.*, send.email.* or a type (default: all)")
	fs.StringVar(&livemode, "livemode", "all", "true, false or all")
	fs.StringVar(&format, "format", "ndjson", "ndjson (the original event per line) or csv (typed columns, then the event)")
	fs.StringVar(&out, "out", "", "write to this file instead of stdout")
	fs.Func("filter", "a dimension filter, name=value or name=v1,v2 (recipient_domain, sender_domain, message_id, bounce_type, npa, voice, format); repeat for more", func(v string) error {
		if name, value, ok := strings.Cut(v, "="); !ok || name == "" || value == "" {
			return fmt.Errorf("%q: want name=value", v)
		}
		filters = append(filters, v)
		return nil
	})
	if err := fs.parse(args); err != nil {
		return helpOK(err)
	}
	if format != "ndjson" && format != "csv" {
		return usagef("--format %q: want ndjson or csv", format)
	}
	c, err := api.client()
	if err != nil {
		return err
	}
	// The answer's format goes by Accept: format= in the query is talk's
	// audio format filter.
	q := url.Values{"livemode": {livemode}}
	for k, v := range map[string]string{"from": since, "to": until, "types": events} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for _, f := range filters {
		name, value, _ := strings.Cut(f, "=")
		if name == "format" && (value == "json" || value == "csv" || value == "ndjson") {
			return usagef("--filter format=%s: the API reads that as the answer's format, not an audio format", value)
		}
		q.Add(name, value)
	}

	w := stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	resp, err := c.stream(ctx, "/v1/events?"+q.Encode(), map[string]string{"csv": "text/csv", "ndjson": "application/x-ndjson"}[format])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	total, _ := strconv.ParseInt(resp.Header.Get("X-Total-Count"), 10, 64)
	p := &exportProgress{w: w, total: total, start: time.Now(), header: format == "csv", show: isTerminal(os.Stderr)}
	_, err = io.Copy(p, resp.Body)
	p.line(true)
	if err != nil {
		return fmt.Errorf("export cut short after %d events: %w", p.events(), err)
	}
	if out != "" {
		if err := w.(*os.File).Close(); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "exported %d events (%s) in %s\n", p.events(), mb(p.bytes), time.Since(p.start).Round(time.Millisecond))
	return nil
}

// exportProgress passes an export through, counting its lines, and redraws
// a progress line about ten times a second when show is set.
type exportProgress struct {
	w            io.Writer
	total        int64 // X-Total-Count
	lines, bytes int64
	header, show bool // header: the first line is CSV's header
	start, drawn time.Time
}

func (p *exportProgress) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.lines += int64(bytes.Count(b[:n], []byte{'\n'}))
	p.bytes += int64(n)
	if p.show && time.Since(p.drawn) > 100*time.Millisecond {
		p.line(false)
	}
	return n, err
}

func (p *exportProgress) events() int64 {
	if p.header && p.lines > 0 {
		return p.lines - 1
	}
	return p.lines
}

// line draws "[=====>    ]  52% 520000/1000000 events, 110.2 MB, 95000/s".
func (p *exportProgress) line(last bool) {
	if !p.show {
		return
	}
	p.drawn = time.Now()
	const width = 30
	frac := 1.0
	if p.total > 0 {
		frac = min(float64(p.events())/float64(p.total), 1)
	}
	done := int(frac * width)
	bar := strings.Repeat("=", done) + strings.Repeat(" ", width-done)
	if done < width {
		bar = bar[:done] + ">" + bar[done+1:]
	}
	rate := float64(p.events()) / max(time.Since(p.start).Seconds(), 1e-3)
	fmt.Fprintf(os.Stderr, "\r[%s] %3.0f%% %d/%d events, %s, %.0f/s ", bar, frac*100, p.events(), p.total, mb(p.bytes), rate)
	if last {
		fmt.Fprintln(os.Stderr)
	}
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// stream GETs path with the given Accept and no time limit but ctx's, and
// returns the response when it is a 200.
func (c apiClient) stream(ctx context.Context, path, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", accept)
	client := *c.http
	client.Timeout = 0
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, apiError(http.MethodGet, path, resp)
	}
	return resp, nil
}
