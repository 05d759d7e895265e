package query

import (
	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/schema"
)

// Livemode selects live events, test events or both (as replays do).
type Livemode = schema.Livemode

// parseLivemode reads the livemode parameter: live events by default.
func parseLivemode(v string) (Livemode, error) {
	l, err := schema.ParseLivemode(v, schema.LiveOnly)
	if err != nil {
		return "", badParam("livemode", err.Error())
	}
	return l, nil
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
