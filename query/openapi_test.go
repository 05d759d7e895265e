package query_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/query"
	"github.com/dodev/hindsight/replay"
)

// TestOpenAPIMatchesRoutes walks Gin's routes: each must be in the served
// document, and the document may name no route that does not exist.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	srv, conn, db := newAPI(t)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/openapi.json", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	doc, err := openapi3.NewLoader().LoadFromIoReader(resp.Body)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()), "a valid OpenAPI 3 document")

	api, err := query.New(query.Config{Database: db, APIKey: key}, conn, nil)
	require.NoError(t, err)
	// cmd mounts replay's routes on the same group; the document covers both.
	replay.NewAPI(db, conn, replay.NewSender(replay.Policy{}, "test", 1), key, nil).Register(api.V1())
	param := regexp.MustCompile(`:([A-Za-z]+)`)
	routes := map[string]bool{}
	for _, r := range api.Routes() {
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
