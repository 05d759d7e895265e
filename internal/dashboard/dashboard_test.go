package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/apitest"
	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/dashboard"
	"github.com/dodev/hindsight/internal/host"
	"github.com/dodev/hindsight/internal/sample"
	"github.com/dodev/hindsight/query"
	"github.com/dodev/hindsight/replay"
	"github.com/dodev/hindsight/replay/webhook"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

const key = "dashboard-key-0123456789abcdef"

// browser starts headless Chromium, or skips the test without it (make test
// installs it and sets HINDSIGHT_REQUIRE_BROWSER).
func browser(t *testing.T) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("HINDSIGHT_REQUIRE_BROWSER") != "" {
			t.Fatalf("chromium required (HINDSIGHT_REQUIRE_BROWSER is set): %v", err)
		}
		t.Skip("no chromium on PATH")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancel3)
	return ctx
}

// stack serves the API and the dashboard over a week of sample events.
func stack(t *testing.T) (*httptest.Server, time.Time) {
	t.Helper()
	srv, start, _ := stackWith(t, false, nil)
	return srv, start
}

// stackWith is stack, with replays when asked: their routes and a worker
// that may deliver to loopback. A non-nil wrap stands in front of the
// server's handler. It returns the events' database too.
func stackWith(t *testing.T, replays bool, wrap func(http.Handler) http.Handler) (*httptest.Server, time.Time, string) {
	t.Helper()
	conn, db := chtest.MigratedDatabase(t)
	start := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	events, err := sample.Events(3000, sample.Options{Seed: 9, Start: start, Span: 7 * 24 * time.Hour})
	require.NoError(t, err)
	chtest.InsertEvents(t, conn, db, events)
	h, err := host.New(host.Config{Database: db, APIKey: key}, conn, nil)
	require.NoError(t, err)
	q, err := query.New(query.Config{Database: db, CursorKey: key}, conn, nil)
	require.NoError(t, err)
	q.Register(h.V1())
	dashboard.Register(h.Root())
	if replays {
		sender := webhook.NewSender(webhook.Policy{AllowPrivate: true}, "test")
		replay.NewAPI(db, conn, sender, key, nil).Register(h.V1())
		w, err := replay.NewWorker(replay.WorkerConfig{Database: db, Poll: 50 * time.Millisecond}, conn, sender, nil)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = w.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	handler := h.Handler()
	if wrap != nil {
		handler = wrap(handler)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv, start, db
}

// call sends an authenticated request with a JSON body and decodes the
// answer, which must have the status want.
func call(t *testing.T, method, url string, body any, want int) map[string]any {
	t.Helper()
	var out map[string]any
	require.Equal(t, want, apitest.Do(t, method, url, key, body, &out), "%s %s: %v", method, url, out)
	return out
}

func statsOf(t *testing.T, url string) map[string]any {
	t.Helper()
	var body map[string]any
	require.Equal(t, http.StatusOK, apitest.Get(t, url, key, &body), url)
	return body
}

// signIn opens the page at 1280×800 and signs in with the key.
func signIn(url string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(url+"/"),
		chromedp.WaitVisible(chromedp.CSS("#key")),
		chromedp.SendKeys(chromedp.CSS("#key"), key+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS("#analytics")),
	)
}

// eval runs a JavaScript expression in the page and returns its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, expr)
	return v
}

// TestDashboardInBrowser drives the page in headless Chromium as a user
// would, with the keyboard: a wrong key is refused, the right one shows a
// week of send stats that match the API's answer (totals, every rate with
// its formula, a point per bucket), and the group table sorts by a column.
// The page fits 1280×800 and a phone's 390×844 without scrolling sideways.
func TestDashboardInBrowser(t *testing.T) {
	ctx := browser(t)
	srv, start := stack(t)
	from, to := start.Format("2006-01-02"), start.AddDate(0, 0, 6).Format("2006-01-02")
	want := statsOf(t, srv.URL+"/v1/stats/send?from="+from+"T00:00:00Z&to="+start.AddDate(0, 0, 7).Format("2006-01-02")+
		"T00:00:00Z&granularity=day&tz=America/New_York&livemode=true&group_by=recipient_domain")
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx, steps...))
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }

	do(chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(css("#key")),
		chromedp.SendKeys(css("#key"), "wrong-key-0123456789"+kb.Enter),
		chromedp.Poll[chromedp.Void](`document.querySelector('#signin-error').textContent.length > 0`))
	assert.Contains(t, eval[string](t, ctx, `document.querySelector('#signin-error').textContent`), "not accepted")

	do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#key').value = ''`),
		chromedp.SendKeys(css("#key"), key+kb.Enter),
		chromedp.WaitVisible(css("#analytics")),
		chromedp.SetValue(css("#from"), from),
		chromedp.SetValue(css("#to"), to),
		chromedp.SetValue(css("#tz"), "America/New_York"),
		chromedp.SetValue(css("#group_by"), "recipient_domain"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#status').textContent = ''`),
		// Submit from the keyboard: Enter in the zone field.
		chromedp.Focus(css("#tz")),
		chromedp.KeyEvent(kb.Enter),
		// The answer to this request, not the sign-in's last 7 days.
		chromedp.Poll[chromedp.Void](`document.querySelector('#status').textContent.startsWith('send, `+from+`')`))
	totals := want["totals"].(map[string]any)
	total := eval[string](t, ctx, `document.querySelector('#events-total').textContent`)
	assert.Equal(t, fmt.Sprintf("%v", totals["events"]), strings.ReplaceAll(total, ",", ""), "the events total is the API's")
	rates := eval[[]map[string]string](t, ctx, `[...document.querySelectorAll('#rates li')].map(li => ({name: li.dataset.rate, formula: li.querySelector('.formula').textContent}))`)
	wantRates := totals["rates"].(map[string]any)
	require.Len(t, rates, len(wantRates))
	for _, r := range rates {
		wr := wantRates[r["name"]].(map[string]any)
		assert.True(t, strings.HasPrefix(r["formula"], wr["formula"].(string)+" = "), "%s shows its formula: %s", r["name"], r["formula"])
	}
	points := eval[int](t, ctx, `document.querySelector('#events-chart polyline').getAttribute('points').trim().split(' ').length`)
	assert.Equal(t, len(want["series"].([]any)), points, "a point per bucket")
	assert.Contains(t, eval[string](t, ctx, `document.querySelector('#groups thead').textContent`), "recipient domain")

	// Sort the groups by events, ascending then descending, from the keyboard.
	groupEvents := func() []float64 {
		cells := eval[[]string](t, ctx, `[...document.querySelectorAll('#groups tbody tr td:nth-child(2)')].map(td => td.textContent)`)
		var out []float64
		for _, c := range cells {
			var v float64
			_, err := fmt.Sscan(strings.ReplaceAll(c, ",", ""), &v)
			require.NoError(t, err)
			out = append(out, v)
		}
		return out
	}
	require.Len(t, groupEvents(), len(want["groups"].([]any)))
	assert.True(t, sort.IsSorted(sort.Reverse(sort.Float64Slice(groupEvents()))), "largest first")
	do(chromedp.Focus(css(`#groups th button[data-col="events"]`)), chromedp.KeyEvent(kb.Enter))
	assert.True(t, sort.Float64sAreSorted(groupEvents()), "ascending after Enter on the header")

	for _, size := range [][2]int64{{1280, 800}, {390, 844}} {
		var opts []chromedp.EmulateViewportOption
		if size[0] < 500 {
			opts = append(opts, chromedp.EmulateMobile)
		}
		do(chromedp.EmulateViewport(size[0], size[1], opts...), chromedp.Sleep(100*time.Millisecond))
		assert.True(t, eval[bool](t, ctx, `document.documentElement.scrollWidth <= window.innerWidth`), "no sideways scrolling at %d×%d", size[0], size[1])
	}

	if dir := os.Getenv("HINDSIGHT_DASHBOARD_SHOTS"); dir != "" {
		for _, size := range [][2]int64{{1280, 800}, {390, 844}} {
			do(chromedp.EmulateViewport(size[0], size[1]), chromedp.Sleep(200*time.Millisecond))
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(fmt.Sprintf("%s/dashboard-%d.png", dir, size[0]), png, 0o644))
		}
	}

	// Signing out forgets the key.
	do(chromedp.Click(css("#signout")), chromedp.WaitVisible(css("#key")))
	assert.Nil(t, eval[any](t, ctx, `sessionStorage.getItem('hindsight-api-key')`))
}

// TestDashboardShowsTheLatestAnswer: signing in loads the last 7 days. A
// user who asks for another range before that answer arrives must see the
// answer to their own request, not the earlier one arriving after it. The
// server holds the sign-in's request (the only one without a group_by)
// until the user's answer is shown.
func TestDashboardShowsTheLatestAnswer(t *testing.T) {
	ctx := browser(t)
	release := make(chan struct{})
	var once sync.Once
	srv, start, _ := stackWith(t, false, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v1/stats/") && r.URL.Query().Get("group_by") == "" {
				<-release
			}
			next.ServeHTTP(w, r)
		})
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	from, to := start.Format("2006-01-02"), start.AddDate(0, 0, 6).Format("2006-01-02")
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	require.NoError(t, chromedp.Do(ctx, signIn(srv.URL),
		chromedp.SetValue(css("#from"), from),
		chromedp.SetValue(css("#to"), to),
		chromedp.SetValue(css("#group_by"), "recipient_domain"),
		chromedp.Click(css(`#query button[type="submit"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('#status').textContent.startsWith('send, `+from+`')`),
	))
	mine := eval[string](t, ctx, `document.querySelector('#status').textContent`)

	// Let the sign-in's answer through, and wait until the page has it.
	once.Do(func() { close(release) })
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Poll[chromedp.Void](`performance.getEntriesByType('resource').some(e => e.name.includes('/v1/stats/send') && !e.name.includes('group_by'))`),
		chromedp.Evaluate[chromedp.Void](`new Promise(r => setTimeout(r, 200))`, chromedp.EvalAwaitPromise),
	))
	assert.Equal(t, mine, eval[string](t, ctx, `document.querySelector('#status').textContent`), "the status is the user's request's")
	assert.Contains(t, eval[string](t, ctx, `document.querySelector('#groups thead').textContent`), "recipient domain")
}

// TestDashboardEvents pages through the listing in the browser and opens
// one event: the same events as the API's pages, and the event's JSON with
// its delivery attempts.
func TestDashboardEvents(t *testing.T) {
	ctx := browser(t)
	srv, start := stack(t)
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	require.NoError(t, chromedp.Do(ctx, signIn(srv.URL),
		chromedp.Click(css(`#nav [data-go="events"]`)),
		chromedp.WaitVisible(css("#events")),
		// Opening the view lists its default range: wait for that answer.
		chromedp.Poll[chromedp.Void](`!['', 'Loading…'].includes(document.querySelector('#ev-status').textContent)`),
		chromedp.SetValue(css("#ev-types"), "send.email.*, voip.*"),
		chromedp.SetValue(css("#ev-from"), start.Format("2006-01-02")),
		chromedp.SetValue(css("#ev-to"), start.AddDate(0, 0, 2).Format("2006-01-02")),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#ev-status').textContent = ''`),
		chromedp.Click(css(`#events-query button[type="submit"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('#ev-status').textContent.includes('events')`),
	))
	u := srv.URL + "/v1/events?livemode=all&limit=50&types=send.email.*,voip.*&from=" + start.Format("2006-01-02") + "T00:00:00Z&to=" +
		start.AddDate(0, 0, 3).Format("2006-01-02") + "T00:00:00Z"
	page := statsOf(t, u)
	ids := func(page map[string]any) []string {
		var out []string
		for _, ev := range page["data"].([]any) {
			out = append(out, ev.(map[string]any)["eventId"].(string))
		}
		return out
	}
	shown := func() []string {
		return eval[[]string](t, ctx, `[...document.querySelectorAll('#ev-table tbody button.link')].map(b => b.textContent)`)
	}
	require.Len(t, ids(page), 50)
	assert.Equal(t, ids(page), shown(), "the first page")

	next := statsOf(t, u+"&cursor="+page["next_cursor"].(string))
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#ev-status').textContent = ''`),
		chromedp.Focus(css("#ev-next")), chromedp.KeyEvent(kb.Enter),
		chromedp.Poll[chromedp.Void](`document.querySelector('#ev-status').textContent.includes('events')`),
	))
	assert.Equal(t, ids(next), shown(), "the second page")

	first := ids(next)[0]
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(css("#ev-table tbody button.link")),
		chromedp.WaitVisible(css("#ev-detail")),
	))
	var detail map[string]any
	require.NoError(t, json.Unmarshal([]byte(eval[string](t, ctx, `document.querySelector('#ev-detail').textContent`)), &detail))
	assert.Equal(t, first, detail["eventId"])
	assert.Contains(t, detail, "deliveries")
}

// TestDashboardDelivery: the Delivery view lists an endpoint and its
// health, dry-runs a replay and then starts it, shows its progress until
// it completes with the API's numbers, and cancels a slow one.
func TestDashboardDelivery(t *testing.T) {
	ctx := browser(t)
	srv, start, _ := stackWith(t, true, nil)
	var received atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(sink.Close)
	ep := call(t, http.MethodPost, srv.URL+"/v1/endpoints", map[string]any{"url": sink.URL + "/hook", "enabled_events": []string{"send.*"}}, http.StatusCreated)
	epID := ep["id"].(string)
	since, until := start.Format("2006-01-02"), start.AddDate(0, 0, 1).Format("2006-01-02")
	dry := call(t, http.MethodPost, srv.URL+"/v1/replays", map[string]any{"endpoint_id": epID, "since": since + "T00:00:00Z",
		"until": start.AddDate(0, 0, 2).Format("2006-01-02") + "T00:00:00Z", "enabled_events": []string{"send.email.*"}, "dry_run": true}, http.StatusOK)
	matched := int64(dry["matched"].(float64))
	require.Positive(t, matched)

	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	require.NoError(t, chromedp.Do(ctx, signIn(srv.URL),
		chromedp.Click(css(`#nav [data-go="delivery"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('#dl-endpoints tbody tr').length === 1`),
		chromedp.Click(css("#dl-endpoints tbody button.link")),
		chromedp.WaitVisible(css("#dl-health")),
	))
	assert.Contains(t, eval[string](t, ctx, `document.querySelector('#dl-endpoints tbody').textContent`), epID)
	assert.Contains(t, eval[string](t, ctx, `document.querySelector('#dl-health').textContent`), "last_day")
	assert.True(t, eval[bool](t, ctx, `document.querySelector('#dl-start').disabled`), "no replay before a dry run")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(css("#dl-since"), since),
		chromedp.SetValue(css("#dl-until"), until),
		chromedp.SendKeys(css("#dl-types"), "send.email.*"),
		chromedp.Click(css("#dl-dry")),
		chromedp.Poll[chromedp.Void](`document.querySelector('#dl-dry-result').textContent.startsWith('Dry run')`),
	))
	assert.Contains(t, eval[string](t, ctx, `document.querySelector('#dl-dry-result').textContent`), fmt.Sprintf("Dry run: %s events", withCommas(matched)))
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(css("#dl-start")),
		chromedp.Poll[chromedp.Void](`[...document.querySelectorAll('#dl-replays tbody tr')].some(tr => tr.children[2].textContent === 'completed')`,
			chromedp.WithPollingTimeout(60*time.Second)),
	))
	row := eval[[]string](t, ctx, `[...document.querySelector('#dl-replays tbody tr').children].map(td => td.textContent)`)
	assert.Equal(t, []string{epID, "completed", "100%", withCommas(matched), "0", withCommas(matched)}, row[1:7])
	assert.Equal(t, matched, received.Load(), "every matching event reached the endpoint")

	// A slow replay, cancelled from the page.
	slow := call(t, http.MethodPost, srv.URL+"/v1/replays", map[string]any{"endpoint_id": epID, "since": 0, "rate_limit": 1}, http.StatusAccepted)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(css(`#nav [data-go="delivery"]`)),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`!!document.querySelector('#dl-replays tr[data-replay=%q] button')`, slow["id"])),
		chromedp.Click(css(fmt.Sprintf(`#dl-replays tr[data-replay=%q] button`, slow["id"]))),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelector('#dl-replays tr[data-replay=%q]').children[2].textContent === 'cancelled'`, slow["id"]),
			chromedp.WithPollingTimeout(30*time.Second)),
	))
	got := statsOf(t, srv.URL+"/v1/replays/"+slow["id"].(string))
	assert.Equal(t, "cancelled", got["status"])

	// A disabled endpoint says so and why, and is enabled again from the page.
	call(t, http.MethodPatch, srv.URL+"/v1/endpoints/"+epID, map[string]any{"enabled": false}, http.StatusOK)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(css(`#nav [data-go="delivery"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('#dl-endpoints tbody').textContent.includes('disabled by request')`),
		chromedp.Click(css("#dl-endpoints tbody td button:not(.link)")),
		chromedp.Poll[chromedp.Void](`document.querySelector('#dl-endpoints tbody').textContent.includes('enabled')`),
	))
	assert.Equal(t, true, statsOf(t, srv.URL+"/v1/endpoints/"+epID)["enabled"])
}

// TestDashboardDeadLetters: the counts by kind and the latest dead
// letters, as ingest logged them.
func TestDashboardDeadLetters(t *testing.T) {
	ctx := browser(t)
	srv, _, db := stackWith(t, false, nil)
	conn := chtest.Open(t)
	now := time.Now()
	for i, k := range []string{"invalid", "invalid", "too_large", "refused"} {
		require.NoError(t, conn.Exec(context.Background(), "INSERT INTO `"+db+"`.dead_letter_log (at, kind, reason, source) SELECT ?, ?, ?, ?",
			now.Add(-time.Duration(i+1)*time.Hour).UnixMilli(), k, fmt.Sprintf("why %d", i), fmt.Sprintf("events/1/%d", i)))
	}
	require.NoError(t, chromedp.Do(ctx, signIn(srv.URL),
		chromedp.Click(chromedp.CSS(`#nav [data-go="dead"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('#dd-total').textContent === '4'`),
	))
	got := eval[[]string](t, ctx, `['#dd-invalid', '#dd-too_large', '#dd-refused'].map(s => document.querySelector(s).textContent)`)
	assert.Equal(t, []string{"2", "1", "1"}, got)
	first := eval[[]string](t, ctx, `[...document.querySelector('#dd-latest tbody tr').children].map(td => td.textContent)`)
	assert.Equal(t, []string{"invalid", "why 0", "events/1/0"}, first[1:])
}

// withCommas writes n as the page does (en-US grouping).
func withCommas(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// TestDashboardHeaders: the page and its files are served with a policy
// that allows only its own scripts and its own origin.
func TestDashboardHeaders(t *testing.T) {
	srv, _ := stack(t)
	for _, path := range []string{"/", "/ui/app.js", "/ui/style.css"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'", path)
		assert.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"), path)
	}
	resp, err := http.Get(srv.URL + "/ui/nothing.js")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}
