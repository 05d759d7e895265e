package host_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/apitest"
	"github.com/dodev/hindsight/internal/chtest"
)

// routeScopes is the scope each /v1 route needs, written out here rather
// than read from the code: "" means any valid key.
var routeScopes = map[string]string{
	"GET /v1/openapi.json":                 "",
	"GET /v1/stats/:service":               "stats:read",
	"GET /v1/event-types":                  "stats:read",
	"GET /v1/stats/deliveries":             "stats:read",
	"GET /v1/events":                       "events:read",
	"GET /v1/events/:eventId":              "events:read",
	"GET /v1/messages/:messageId":          "events:read",
	"GET /v1/dead-letters":                 "stats:read",
	"POST /v1/endpoints":                   "endpoints:write",
	"GET /v1/endpoints":                    "endpoints:write",
	"GET /v1/endpoints/:id":                "endpoints:write",
	"PATCH /v1/endpoints/:id":              "endpoints:write",
	"DELETE /v1/endpoints/:id":             "endpoints:write",
	"POST /v1/endpoints/:id/secret/rotate": "endpoints:write",
	"POST /v1/endpoints/:id/test":          "endpoints:write",
	"GET /v1/endpoints/:id/attempts":       "replays:write",
	"GET /v1/replays/:id/attempts":         "replays:write",
	"POST /v1/events/:eventId/resend":      "replays:write",
	"POST /v1/replays":                     "replays:write",
	"GET /v1/replays":                      "replays:write",
	"GET /v1/replays/:id":                  "replays:write",
	"POST /v1/replays/:id/cancel":          "replays:write",
	"POST /v1/keys":                        "keys:admin",
	"GET /v1/keys":                         "keys:admin",
	"DELETE /v1/keys/:id":                  "keys:admin",
}

var scopes = []string{"stats:read", "events:read", "endpoints:write", "replays:write", "keys:admin"}

// call sends body (JSON, "" for none) and decodes the JSON answer.
func call(t *testing.T, srv *httptest.Server, method, path, bearer, body string) (int, map[string]any) {
	t.Helper()
	var in any
	if body != "" {
		in = json.RawMessage(body)
	}
	var out map[string]any
	return apitest.Do(t, method, srv.URL+path, bearer, in, &out), out
}

func makeKey(t *testing.T, srv *httptest.Server, bearer, name string, scopes ...string) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"name": name, "scopes": scopes})
	code, out := call(t, srv, "POST", "/v1/keys", bearer, string(body))
	require.Equal(t, http.StatusCreated, code, "%v", out)
	return out
}

// TestEveryRouteAgainstEveryScope calls each route with a key of each one
// scope: where the key holds the route's scope the answer is anything but
// 401 and 403 (a 4xx for the made-up ids and bodies is fine); where it does
// not, 403 naming the scope.
func TestEveryRouteAgainstEveryScope(t *testing.T) {
	var logs bytes.Buffer
	srv, api, _ := fullAPI(t, &logs)
	secrets := map[string]string{}
	for _, s := range scopes {
		secrets[s] = makeKey(t, srv, key, "only "+s, s)["key"].(string)
	}
	param := regexp.MustCompile(`:([A-Za-z]+)`)
	seen := 0
	for _, r := range api.Routes() {
		if !strings.HasPrefix(r.Path, "/v1/") {
			continue
		}
		name := r.Method + " " + r.Path
		need, ok := routeScopes[name]
		if !assert.True(t, ok, "route %s has no scope in this test's table", name) {
			continue
		}
		seen++
		path := param.ReplaceAllStringFunc(r.Path, func(p string) string {
			if p == ":service" {
				return "send"
			}
			return "nope"
		})
		for _, held := range scopes {
			code, body := call(t, srv, r.Method, path, secrets[held], "{}")
			if need == "" || need == held {
				assert.NotContains(t, []int{401, 403}, code, "%s with %s: %v", name, held, body)
				assert.Less(t, code, 500, "%s with %s: %v", name, held, body)
				continue
			}
			if assert.Equal(t, http.StatusForbidden, code, "%s with %s", name, held) {
				e := body["error"].(map[string]any)
				assert.Equal(t, "forbidden", e["code"])
				assert.Equal(t, "needs scope "+need, e["message"])
			}
		}
		code, body := call(t, srv, r.Method, path, key, "{}")
		assert.NotContains(t, []int{401, 403}, code, "%s with the bootstrap key: %v", name, body)
	}
	assert.Equal(t, len(routeScopes), seen, "every route in the table exists")
	for _, s := range secrets {
		assert.NotContains(t, logs.String(), s, "a secret in the log")
	}
}

func TestKeys(t *testing.T) {
	var logs bytes.Buffer
	srv, _, db := fullAPI(t, &logs)
	conn := chtest.Open(t)

	// A key can only give what it holds.
	admin := makeKey(t, srv, key, "admin and stats", "keys:admin", "stats:read")
	adminKey := admin["key"].(string)
	code, body := call(t, srv, "POST", "/v1/keys", adminKey, `{"name":"reader","scopes":["events:read"]}`)
	assert.Equal(t, http.StatusForbidden, code)
	assert.Contains(t, body["error"].(map[string]any)["message"], "lacks events:read")
	reader := makeKey(t, srv, adminKey, "reader", "stats:read")

	// What is stored: the secret's SHA-256 and its first characters.
	secret := reader["key"].(string)
	require.Regexp(t, `^hs_[A-Za-z0-9_-]{32}$`, secret)
	var hash, prefix string
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT hash, prefix FROM `"+db+"`.api_keys WHERE id = ?",
		reader["id"]).Scan(&hash, &prefix))
	sum := sha256.Sum256([]byte(secret))
	assert.Equal(t, hex.EncodeToString(sum[:]), hash)
	assert.True(t, strings.HasPrefix(secret, prefix) && len(prefix) < 12, prefix)

	// Bad input names the field.
	for body, param := range map[string]string{
		`{"name":"","scopes":["stats:read"]}`:         "name",
		`{"name":"x","scopes":[]}`:                    "scopes",
		`{"name":"x","scopes":["stats:write"]}`:       "scopes",
		`{"name":"x\u0000y","scopes":["stats:read"]}`: "name",
		`{"name":"x","scopes":"stats:read"}`:          "scopes",
		`{"name":"x","scopes":["stats:read"],"a":1}`:  "body",
	} {
		code, out := call(t, srv, "POST", "/v1/keys", key, body)
		if assert.Equal(t, http.StatusBadRequest, code, body) {
			assert.True(t, strings.HasPrefix(out["error"].(map[string]any)["message"].(string), param), "%s: %v", body, out)
		}
	}

	// Listing shows no secret, and when a key was last used.
	code, _ = call(t, srv, "GET", "/v1/stats/send", secret, "")
	require.Equal(t, http.StatusOK, code)
	code, list := call(t, srv, "GET", "/v1/keys", key, "")
	require.Equal(t, http.StatusOK, code)
	raw, _ := json.Marshal(list)
	assert.NotContains(t, string(raw), secret)
	assert.NotContains(t, string(raw), adminKey)
	var used any
	for _, k := range list["data"].([]any) {
		if k.(map[string]any)["id"] == reader["id"] {
			used = k.(map[string]any)["last_used_at"]
		}
	}
	assert.NotNil(t, used, "the reader's last use")

	// Revoked, the key is refused at once on this process; a second revoke
	// and the bootstrap key are not found.
	code, _ = call(t, srv, "DELETE", "/v1/keys/"+reader["id"].(string), adminKey, "")
	require.Equal(t, http.StatusOK, code)
	code, _ = call(t, srv, "GET", "/v1/stats/send", secret, "")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _ = call(t, srv, "DELETE", "/v1/keys/"+reader["id"].(string), adminKey, "")
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = call(t, srv, "DELETE", "/v1/keys/bootstrap", adminKey, "")
	assert.Equal(t, http.StatusBadRequest, code)
}
