package schema

import "fmt"

// Livemode selects live events, test events or both: the API's livemode
// parameter, a replay's livemode, as they spell it. Events without the
// field are live.
type Livemode string

// The Livemode values.
const (
	LiveOnly Livemode = "true"
	TestOnly Livemode = "false"
	LiveAll  Livemode = "all"
)

// ParseLivemode reads "true", "false" or "all"; "" is def.
func ParseLivemode(v string, def Livemode) (Livemode, error) {
	switch l := Livemode(v); l {
	case "":
		return def, nil
	case LiveOnly, TestOnly, LiveAll:
		return l, nil
	}
	return "", fmt.Errorf("want true, false or all, got %q", v)
}

// SQL is the condition on the events table the value selects, " AND ..."
// (empty for all).
func (l Livemode) SQL() string {
	switch l {
	case LiveOnly:
		return " AND livemode = 1"
	case TestOnly:
		return " AND livemode = 0"
	}
	return ""
}

// Match reports whether an event of that livemode is selected, as SQL does.
func (l Livemode) Match(live bool) bool {
	switch l {
	case LiveOnly:
		return live
	case TestOnly:
		return !live
	}
	return true
}
