// Package httpapi holds what the HTTP host and every module's handlers
// share: the JSON error body and the mapping of errors to answers (Fail),
// the 400 that names a parameter, request ids, the ClickHouse limits a
// request's context carries, signed cursors, series buckets, and the
// parsing of times given as RFC3339 or integer milliseconds. It knows no
// routes; internal/host builds the engine.
package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Error is the body of every error response.
type Error struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Abort ends a request with an error body.
func Abort(c *gin.Context, status int, code, msg string) {
	var e Error
	e.Error.Code, e.Error.Message = code, msg
	c.AbortWithStatusJSON(status, e)
}

// Fail ends a request with the error's answer: 400 for a BadParam, 404 for
// an error that is notFound (nil: none is), 503 for a query that ran past
// its time, else 500 with the error in the log only.
func Fail(c *gin.Context, log *slog.Logger, err, notFound error) {
	var bp *BadParam
	switch {
	case errors.As(err, &bp):
		Abort(c, http.StatusBadRequest, "invalid_parameter", bp.Error())
	case IsTimeout(err):
		Abort(c, http.StatusServiceUnavailable, "query_timeout", "the query took longer than its limit; narrow the range")
	case notFound != nil && errors.Is(err, notFound):
		Abort(c, http.StatusNotFound, "not_found", err.Error())
	default:
		log.Error("request failed", "path", c.Request.URL.Path, "request_id", RequestID(c), "err", err)
		Abort(c, http.StatusInternalServerError, "internal", "internal error; the server log has details (request "+RequestID(c)+")")
	}
}

// BadParam is a 400 naming the parameter at fault.
type BadParam struct {
	Param, Msg string
}

func (e *BadParam) Error() string { return e.Param + ": " + e.Msg }

// MaxMillis is 9999-12-31T23:59:59.999Z: later times have no RFC3339 form.
const MaxMillis = 253402300799999

// ParseTime reads an RFC3339 time or integer milliseconds since the epoch.
func ParseTime(param, v string) (time.Time, error) {
	if isInteger(v) {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 || ms > MaxMillis {
			return time.Time{}, &BadParam{param, "integer milliseconds out of range: " + strconv.Quote(v)}
		}
		return time.UnixMilli(ms).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, &BadParam{param, "want RFC3339 (2026-01-02T15:04:05Z) or integer milliseconds, got " + strconv.Quote(v)}
	}
	if t.Before(time.Unix(0, 0)) || t.UnixMilli() > MaxMillis {
		return time.Time{}, &BadParam{param, "time out of range: " + strconv.Quote(v)}
	}
	return t.UTC(), nil
}

func isInteger(v string) bool {
	v = strings.TrimPrefix(v, "-")
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

// FormatTime renders a time the way every response does.
func FormatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// Range is a half-open time range [From, To).
type Range struct {
	From, To time.Time
}

// ParseRange reads the from and to parameters, by default the 7 days up to
// now, and requires from before to.
func ParseRange(from, to string, now time.Time) (Range, error) {
	r := Range{To: now.UTC().Truncate(time.Millisecond)}
	var err error
	if to != "" {
		if r.To, err = ParseTime("to", to); err != nil {
			return r, err
		}
	}
	r.From = r.To.Add(-7 * 24 * time.Hour)
	if from != "" {
		if r.From, err = ParseTime("from", from); err != nil {
			return r, err
		}
	}
	if !r.From.Before(r.To) {
		return r, badParam("from", "must be before to")
	}
	return r, nil
}

// Rate is a ratio that explains itself. Value is null when Denominator is 0.
type Rate struct {
	Value       *float64 `json:"value"`
	Numerator   float64  `json:"numerator"`
	Denominator float64  `json:"denominator"`
	Formula     string   `json:"formula"`
	// Change is set when the request compares two periods.
	Change *Change `json:"change,omitempty"`
}

// Change compares a rate with the same rate over an earlier period.
type Change struct {
	Absolute *float64 `json:"absolute"` // value - previous value; null when either is null
	Relative *float64 `json:"relative"` // absolute / previous value; null when that is 0 or null
	// Z and Significant come from a two-proportion z-test; both are null
	// for a rate that is not a proportion or a period with no denominator.
	Z           *float64 `json:"z"`
	Significant *bool    `json:"significant"`
}

// NewRate is num / den under formula.
func NewRate(num, den float64, formula string) Rate {
	r := Rate{Numerator: num, Denominator: den, Formula: formula}
	if den != 0 {
		v := num / den
		r.Value = &v
	}
	return r
}

// DecodeJSON reads a JSON body of at most 64 KiB into v, refusing unknown fields.
func DecodeJSON(c *gin.Context, v any) error {
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, 64<<10+1))
	if err != nil {
		return badParam("body", "unreadable: "+err.Error())
	}
	if len(body) > 64<<10 {
		return badParam("body", "larger than 64 KiB")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return badParam(te.Field, fmt.Sprintf("want a %s", te.Type))
		}
		return badParam("body", "not the JSON this route takes: "+err.Error())
	}
	return nil
}

// ParseLimit reads a limit parameter: def when absent, else an integer from
// 1 to most.
func ParseLimit(v string, def, most int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, &BadParam{"limit", fmt.Sprintf("want an integer from 1 to %d, got %q", most, v)}
	}
	return n, nil
}
