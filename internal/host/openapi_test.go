package host_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenAPIMatchesRoutes walks Gin's routes: each must be in the served
// document, and the document may name no route that does not exist.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	srv, h, _ := fullAPI(t, &bytes.Buffer{})
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/openapi.json", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	doc, err := openapi3.NewLoader().LoadFromIoReader(resp.Body)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()), "a valid OpenAPI 3 document")

	// The document covers every module cmd mounts on the host.
	param := regexp.MustCompile(`:([A-Za-z]+)`)
	routes := map[string]bool{}
	for _, r := range h.Routes() {
		routes[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	for r := range routes {
		assert.True(t, documented[r], "route %s is missing from openapi.json", r)
	}
	for d := range documented {
		assert.True(t, routes[d], "openapi.json names %s, which is not a route", d)
	}
	assert.GreaterOrEqual(t, len(routes), 19)
}

// TestOpenAPILint lints the document with Redocly's CLI, the linter users
// run, and requires no warning beyond the ones .redocly.lint-ignore.yaml
// explains. `make test` fetches the CLI into .cache/redocly and sets
// HINDSIGHT_REDOCLY; without it the test skips.
func TestOpenAPILint(t *testing.T) {
	bin := os.Getenv("HINDSIGHT_REDOCLY")
	if bin == "" {
		t.Skip("HINDSIGHT_REDOCLY is not set (make test sets it)")
	}
	out, err := exec.Command(bin, "lint", "openapi.json").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "Your API description is valid", "%s", out)
	assert.NotRegexp(t, `You have \d+ warning`, string(out), "%s", out)
}

// TestOpenAPINumbers: every operation has its own operationId, and every
// number says its format, so generated clients neither name operations
// after paths nor read counts into float32 (oapi-codegen's choice for a
// bare number).
func TestOpenAPINumbers(t *testing.T) {
	b, err := os.ReadFile("openapi.json")
	require.NoError(t, err)
	doc, err := openapi3.NewLoader().LoadFromData(b)
	require.NoError(t, err)
	ids := map[string]string{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + path
			if assert.NotEmpty(t, op.OperationID, where) {
				assert.Empty(t, ids[op.OperationID], "%s: operationId %s already names %s", where, op.OperationID, ids[op.OperationID])
				ids[op.OperationID] = where
			}
		}
	}
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			if typ, _ := v["type"].(string); typ == "integer" || typ == "number" {
				assert.NotEmpty(t, v["format"], "%s: a %s without a format", at, typ)
			}
			for k, c := range v {
				walk(c, at+"/"+k)
			}
		case []any:
			for i, c := range v {
				walk(c, fmt.Sprintf("%s/%d", at, i))
			}
		}
	}
	var raw any
	require.NoError(t, json.Unmarshal(b, &raw))
	walk(raw, "#")
}
