//go:build chdb

package compat

import (
	"context"
	"encoding/csv"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"github.com/chdb-io/chdb-go/chdb"
)

// chdbConn runs the statements the project sends through clickhouse-go on an
// embedded chDB session instead: "?" placeholders are rendered with the bound
// values (as clickhouse-go does for servers without server-side parameters),
// results come back as CSV and are scanned into the caller's pointers. It
// implements exactly what schema.Conn and query.Conn need.
type chdbConn struct {
	s       *chdb.Session
	version proto.Version
	// sent records every rendered statement, so a failure can name it.
	sent []string
}

func (c *chdbConn) ServerVersion() (*driver.ServerVersion, error) {
	return &driver.ServerVersion{Name: "chDB", Version: c.version}, nil
}

func (c *chdbConn) Ping(context.Context) error { return nil }

func (c *chdbConn) run(query string, args []any) (string, error) {
	sql, err := render(query, args)
	if err != nil {
		return "", err
	}
	c.sent = append(c.sent, sql)
	res, err := c.s.Query(sql, "CSV")
	if err == nil && res != nil {
		err = res.Error()
	}
	if err != nil {
		return "", fmt.Errorf("chDB refused %s: %w", sql, err)
	}
	defer res.Free()
	return res.String(), nil
}

func (c *chdbConn) Exec(_ context.Context, query string, args ...any) error {
	_, err := c.run(query, args)
	return err
}

func (c *chdbConn) Query(_ context.Context, query string, args ...any) (driver.Rows, error) {
	out, err := c.run(query, args)
	if err != nil {
		return nil, err
	}
	records, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("parse chDB CSV of %s: %w", query, err)
	}
	return &csvRows{records: records, i: -1}, nil
}

// render replaces each "?" outside quotes with a SQL literal of its value.
func render(query string, args []any) (string, error) {
	var b strings.Builder
	next := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		ch := query[i]
		switch {
		case quote != 0:
			if ch == '\\' && i+1 < len(query) {
				b.WriteByte(ch)
				i++
				ch = query[i]
			} else if ch == quote {
				quote = 0
			}
		case ch == '\'' || ch == '`':
			quote = ch
		case ch == '?':
			if next >= len(args) {
				return "", fmt.Errorf("%s: more placeholders than %d arguments", query, len(args))
			}
			lit, err := literal(args[next])
			if err != nil {
				return "", err
			}
			b.WriteString(lit)
			next++
			continue
		}
		b.WriteByte(ch)
	}
	if next != len(args) {
		return "", fmt.Errorf("%s: %d placeholders for %d arguments", query, next, len(args))
	}
	return b.String(), nil
}

func literal(v any) (string, error) {
	switch v := v.(type) {
	case string:
		r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
		return "'" + r.Replace(v) + "'", nil
	case int:
		return strconv.Itoa(v), nil
	case int32:
		return strconv.FormatInt(int64(v), 10), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint8:
		return strconv.FormatUint(uint64(v), 10), nil
	case uint32:
		return strconv.FormatUint(uint64(v), 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case time.Time:
		return fmt.Sprintf("toDateTime(%d)", v.Unix()), nil
	case uint16:
		return strconv.FormatUint(uint64(v), 10), nil
	case []string:
		parts := make([]string, len(v))
		for i, s := range v {
			parts[i], _ = literal(s)
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	case []int64:
		parts := make([]string, len(v))
		for i, n := range v {
			parts[i] = strconv.FormatInt(n, 10)
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	case []uint32:
		parts := make([]string, len(v))
		for i, n := range v {
			parts[i] = strconv.FormatUint(uint64(n), 10)
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	}
	return "", fmt.Errorf("no literal for %T", v)
}

// csvRows is a driver.Rows over chDB's CSV output.
type csvRows struct {
	records [][]string
	i       int
	err     error
}

var _ driver.Rows = (*csvRows)(nil)

func (r *csvRows) Next() bool {
	r.i++
	return r.i < len(r.records)
}

func (r *csvRows) Scan(dest ...any) error {
	rec := r.records[r.i]
	if len(rec) != len(dest) {
		return fmt.Errorf("row has %d columns, scanning into %d", len(rec), len(dest))
	}
	for i, d := range dest {
		if err := scanField(rec[i], d); err != nil {
			return fmt.Errorf("column %d %q: %w", i, rec[i], err)
		}
	}
	return nil
}

func scanField(s string, dest any) error {
	var err error
	switch d := dest.(type) {
	case *string:
		*d = s
	case *uint64:
		*d, err = strconv.ParseUint(s, 10, 64)
	case *uint32:
		var v uint64
		v, err = strconv.ParseUint(s, 10, 32)
		*d = uint32(v)
	case *uint8:
		var v uint64
		v, err = strconv.ParseUint(s, 10, 8)
		*d = uint8(v)
	case *int64:
		*d, err = strconv.ParseInt(s, 10, 64)
	case *uint16:
		var v uint64
		v, err = strconv.ParseUint(s, 10, 16)
		*d = uint16(v)
	case *[]string:
		*d, err = stringArray(s)
	case *[]uint32:
		*d = []uint32{}
		inner := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		for _, part := range strings.Split(inner, ",") {
			if part = strings.TrimSpace(part); part != "" {
				var v uint64
				if v, err = strconv.ParseUint(part, 10, 32); err != nil {
					return err
				}
				*d = append(*d, uint32(v))
			}
		}
	case *float64:
		switch s {
		case "inf":
			*d = math.Inf(1)
		case "nan":
			*d = math.NaN()
		default:
			*d, err = strconv.ParseFloat(s, 64)
		}
	default:
		return fmt.Errorf("cannot scan into %s", reflect.TypeOf(dest))
	}
	return err
}

// stringArray reads Array(String) as CSV renders it: ['a','b\'c'].
func stringArray(s string) ([]string, error) {
	out := []string{}
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, fmt.Errorf("not an array: %q", s)
	}
	inner := s[1 : len(s)-1]
	for i := 0; i < len(inner); i++ {
		switch inner[i] {
		case ',', ' ':
			continue
		case '\'':
		default:
			return nil, fmt.Errorf("array element at %d of %q is not quoted", i, s)
		}
		var b strings.Builder
		for i++; i < len(inner) && inner[i] != '\''; i++ {
			if inner[i] == '\\' && i+1 < len(inner) {
				i++
			}
			b.WriteByte(inner[i])
		}
		out = append(out, b.String())
	}
	return out, nil
}

func (r *csvRows) ScanStruct(any) error             { return fmt.Errorf("ScanStruct is not supported") }
func (r *csvRows) ColumnTypes() []driver.ColumnType { return nil }
func (r *csvRows) Totals(...any) error              { return nil }
func (r *csvRows) Columns() []string                { return nil }
func (r *csvRows) Close() error                     { return nil }
func (r *csvRows) Err() error                       { return r.err }
func (r *csvRows) HasData() bool                    { return len(r.records) > 0 }

// PrepareBatch collects rows and sends them as one INSERT ... VALUES.
func (c *chdbConn) PrepareBatch(_ context.Context, query string, _ ...driver.PrepareBatchOption) (driver.Batch, error) {
	return &valuesBatch{c: c, insert: query}, nil
}

type valuesBatch struct {
	c      *chdbConn
	insert string
	rows   [][]any
	sent   bool
}

var _ driver.Batch = (*valuesBatch)(nil)

func (b *valuesBatch) Append(v ...any) error {
	b.rows = append(b.rows, v)
	return nil
}

func (b *valuesBatch) Send() error {
	b.sent = true
	if len(b.rows) == 0 {
		return nil
	}
	var values []string
	var args []any
	for _, r := range b.rows {
		values = append(values, "("+strings.TrimSuffix(strings.Repeat("?, ", len(r)), ", ")+")")
		args = append(args, r...)
	}
	return b.c.Exec(context.Background(), b.insert+" VALUES "+strings.Join(values, ", "), args...)
}

func (b *valuesBatch) Abort() error                  { b.sent = true; return nil }
func (b *valuesBatch) AppendStruct(any) error        { return fmt.Errorf("AppendStruct is not supported") }
func (b *valuesBatch) Column(int) driver.BatchColumn { return nil }
func (b *valuesBatch) Flush() error                  { return nil }
func (b *valuesBatch) IsSent() bool                  { return b.sent }
func (b *valuesBatch) Rows() int                     { return len(b.rows) }
func (b *valuesBatch) Columns() []column.Interface   { return nil }
func (b *valuesBatch) Close() error                  { return nil }
