package query_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/apitest"
)

// injectionCorpus is input meant to escape a quoted value, end a statement,
// bind a parameter or overflow a parser.
var injectionCorpus = []string{
	`' OR '1'='1`,
	`'; DROP TABLE events; --`,
	"`; DROP DATABASE default; --",
	`") UNION ALL SELECT name, 1 FROM system.tables --`,
	`\' OR 1=1 --`,
	`1 OR 1=1`,
	`?`,
	`? ? ?`,
	`{service:String}`,
	`$1`,
	`%00`,
	"\x00",
	"send\n.email",
	`send.*' OR type != '`,
	`send.email.*,*) OR (1=1`,
	strings.Repeat("A", 10_000),
	strings.Repeat("9", 400),
	"-9223372036854775809",
	"9223372036854775808",
	"1e309",
	"ünïcödé.ëvent",
	`../../../../etc/passwd`,
	`<script>alert(1)</script>`,
}

func TestInjectionCorpus(t *testing.T) {
	srv, conn, db := newAPI(t)
	at := time.Now().Add(-time.Hour)
	insert(t, conn, db, []row{{"evt_1", "send.email.sent", at, true}, {"evt_2", "voip.call.missed", at, true}})
	countRows := func() uint64 {
		var n uint64
		require.NoError(t, conn.QueryRow(context.Background(), "SELECT count() FROM "+db+".events").Scan(&n))
		return n
	}
	before := countRows()

	params := map[string][]string{
		"/v1/stats/send":   {"from", "to", "livemode", "granularity", "tz", "group_by", "limit"},
		"/v1/stats/telco":  {"group_by"},
		"/v1/events":       {"types", "from", "to", "livemode", "limit", "cursor"},
		"/v1/event-types":  {"anything"},
		"/v1/openapi.json": {"anything"},
	}
	requests := 0
	check := func(path string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		requests++
		assert.Less(t, resp.StatusCode, 500, "GET %s", path)
	}
	for path, names := range params {
		for _, name := range names {
			for _, v := range injectionCorpus {
				check(path + "?" + name + "=" + url.QueryEscape(v))
				// The same value beside valid others, so it is not the first
				// check to fail.
				check(path + "?granularity=day&group_by=type&" + name + "=" + url.QueryEscape(v))
			}
		}
	}
	for _, v := range injectionCorpus {
		check("/v1/stats/" + url.PathEscape(v))
		check("/v1/events/" + url.PathEscape(v))
	}
	// The key routes: names and scopes stored as given or refused, ids
	// looked up as given, bearer values refused.
	named := map[string]bool{}
	for _, v := range injectionCorpus {
		body, _ := json.Marshal(map[string]any{"name": v, "scopes": []string{"stats:read"}})
		code, out := call(t, srv, "POST", "/v1/keys", key, json.RawMessage(body))
		switch code {
		case http.StatusCreated:
			named[v] = true
			assert.Equal(t, v, out["name"])
		default:
			assert.Equal(t, http.StatusBadRequest, code, "name %q: %v", v, out)
		}
		body, _ = json.Marshal(map[string]any{"name": "x", "scopes": []string{v}})
		code, _ = call(t, srv, "POST", "/v1/keys", key, json.RawMessage(body))
		assert.Equal(t, http.StatusBadRequest, code, "scope %q", v)
		code, _ = call(t, srv, "DELETE", "/v1/keys/"+url.PathEscape(v), key, nil)
		assert.Contains(t, []int{http.StatusBadRequest, http.StatusNotFound}, code, "key id %q", v)
		if !strings.ContainsAny(v, "\x00\n") {
			code, _ = call(t, srv, "GET", "/v1/stats/send", v, nil)
			assert.Equal(t, http.StatusUnauthorized, code, "bearer %q", v)
		}
		requests += 4
	}
	_, list := call(t, srv, "GET", "/v1/keys", key, nil)
	for _, k := range list["data"].([]any) {
		assert.True(t, named[k.(map[string]any)["name"].(string)], "key %v", k)
	}
	assert.Len(t, list["data"], len(named))
	assert.Equal(t, before, countRows(), "the data is untouched")
	code, body := get(t, srv, "/v1/stats/send?livemode=all", key)
	require.Equal(t, http.StatusOK, code)
	assert.EqualValues(t, 1, body["totals"].(map[string]any)["events"])
	t.Logf("%d hostile requests, none 5xx", requests)
}

// call sends body as JSON (nil: none) and decodes the JSON answer.
func call(t *testing.T, srv *httptest.Server, method, path, bearer string, body any) (int, map[string]any) {
	t.Helper()
	var out map[string]any
	return apitest.Do(t, method, srv.URL+path, bearer, body, &out), out
}
