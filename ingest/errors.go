package ingest

import (
	"errors"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kerr"
)

// refusedRows are ClickHouse's error codes that blame the rows of an insert,
// not the server or the connection: inserting the same rows again fails the
// same way, so they are split until the refused ones are found and
// dead-lettered. Everything else (timeouts, memory, too many parts, a missing
// table, a lost connection) is retried as an outage: the rows are good and an
// operator can fix the server.
var refusedRows = map[int32]string{
	6:   "CANNOT_PARSE_TEXT",
	27:  "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
	38:  "CANNOT_PARSE_DATE",
	41:  "CANNOT_PARSE_DATETIME",
	53:  "TYPE_MISMATCH",
	69:  "ARGUMENT_OUT_OF_BOUND",
	70:  "CANNOT_CONVERT_TYPE",
	72:  "CANNOT_PARSE_NUMBER",
	117: "INCORRECT_DATA",
	131: "TOO_LARGE_STRING_SIZE",
	321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
	349: "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN",
}

// rowsRefused reports whether err is ClickHouse refusing the rows themselves.
func rowsRefused(err error) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	_, ok := refusedRows[ex.Code]
	return ok
}

// dlqUnusable reports a produce error that retrying will not cure: the topic
// is missing and cannot be created, we may not write to it, or it refuses the
// record. Dead letters then go to ClickHouse's dead_letters table instead.
func dlqUnusable(err error) bool {
	for _, e := range []error{
		kerr.UnknownTopicOrPartition, kerr.TopicAuthorizationFailed, kerr.InvalidTopicException,
		kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.PolicyViolation,
		kerr.ClusterAuthorizationFailed,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// permanent marks an error retry must not repeat.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }
