package replay

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/internal/chtest"
	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/internal/keys"
)

// slowConn answers every query as a ClickHouse server whose query ran past
// max_execution_time does.
type slowConn struct{ driver.Conn }

func (c *slowConn) Query(context.Context, string, ...any) (driver.Rows, error) {
	return nil, &clickhouse.Exception{Code: 159, Message: "Timeout exceeded: elapsed 2 seconds, maximum: 1"}
}

// TestTimeoutIs503: a replay route whose query times out answers 503, as
// the stats routes do (it was a 500).
func TestTimeoutIs503(t *testing.T) {
	conn := &slowConn{Conn: chtest.Open(t)}
	gin.SetMode(gin.ReleaseMode)
	g := gin.New()
	NewAPI("db", conn, NewSender(Policy{}, "test", 1), testKey, nil).WithLimits(httpapi.Limits{MaxExecutionTime: 7 * time.Second}).Register(g.Group("/v1", keys.NewChecker(keys.NewStore(conn, "db"), testKey, nil).Authenticate))
	srv := httptest.NewServer(g)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/replays", nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body httpapi.Error
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "query_timeout", body.Error.Code)
}
