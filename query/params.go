package query

import (
	"strconv"

	"github.com/dodev/hindsight/internal/httpapi"
)

// Livemode selects live events, test events or both.
type Livemode string

// Livemode values, as the API spells them.
const (
	LiveOnly Livemode = "true"
	TestOnly Livemode = "false"
	LiveAll  Livemode = "all"
)

// sql returns the fixed condition the value selects.
func (l Livemode) sql() string {
	switch l {
	case LiveOnly:
		return " AND livemode = 1"
	case TestOnly:
		return " AND livemode = 0"
	}
	return ""
}

func parseLivemode(v string) (Livemode, error) {
	switch v {
	case "", "true":
		return LiveOnly, nil
	case "false":
		return TestOnly, nil
	case "all":
		return LiveAll, nil
	}
	return "", badParam("livemode", "want true, false or all, got "+strconv.Quote(v))
}

// timeRange is a half-open range [From, To).
type timeRange = httpapi.Range

// parseRange reads from and to, by default the last 7 days up to now.
var parseRange = httpapi.ParseRange

var formatTime = httpapi.FormatTime

// parseTime reads an RFC3339 time or integer milliseconds since the epoch.
var parseTime = httpapi.ParseTime

// badParam is a 400 naming the parameter at fault.
func badParam(param, msg string) error { return &httpapi.BadParam{Param: param, Msg: msg} }
