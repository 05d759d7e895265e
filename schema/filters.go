package schema

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// A Dimension is a typed column of the events table that requests can
// filter on, and the services whose events fill it.
type Dimension struct {
	Name     string
	Services []string
	// Fold: values compare lowercase (domains are stored lowercase).
	Fold bool
	// Column is the column when it is not Name; an Array column matches
	// when it holds the value. Normalize rewrites values as the column
	// stores them.
	Column    string
	Array     bool
	Normalize func(string) string
}

// column is the dimension's column in the events table.
func (d Dimension) column() string {
	if d.Column != "" {
		return d.Column
	}
	return d.Name
}

// Dimensions are the filters requests take, by name (also the column).
var Dimensions = map[string]Dimension{
	"recipient_domain": {Name: "recipient_domain", Services: []string{"send"}, Fold: true},
	"sender_domain":    {Name: "sender_domain", Services: []string{"send"}, Fold: true},
	"message_id":       {Name: "message_id", Services: []string{"send"}},
	"bounce_type":      {Name: "bounce_type", Services: []string{"send"}},
	"npa":              {Name: "npa", Services: []string{"telco"}},
	"voice":            {Name: "voice", Services: []string{"talk"}},
	"format":           {Name: "format", Services: []string{"talk"}},
	// An address among the email's recipients, its domain in any case.
	"recipient": {Name: "recipient", Services: []string{"send"}, Column: "recipients", Array: true, Normalize: NormalizeAddress},
}

// Limits of a filter.
const (
	MaxFilterValues   = 100
	MaxFilterValueLen = 256
)

// Filter keeps the events whose dimension holds any of Values.
type Filter struct {
	Dim    Dimension
	Values []string
}

// Filters combine with AND.
type Filters []Filter

// FilterError names the filter at fault.
type FilterError struct{ Name, Msg string }

func (e *FilterError) Error() string { return e.Name + ": " + e.Msg }

// ParseFilters reads the filters among a request's parameters (get returns
// a parameter's value, "" when absent): name=v or name=v1,v2. With a
// service, a filter of another service's dimension is an error.
func ParseFilters(get func(string) string, service string) (Filters, error) {
	names := make([]string, 0, len(Dimensions))
	for n := range Dimensions {
		names = append(names, n)
	}
	sort.Strings(names)
	var out Filters
	for _, n := range names {
		v := get(n)
		if v == "" {
			continue
		}
		d := Dimensions[n]
		if service != "" && !slices.Contains(d.Services, service) {
			return nil, &FilterError{n, fmt.Sprintf("not a filter of %s: it filters %s events", service, strings.Join(d.Services, ", "))}
		}
		var values []string
		for part := range strings.SplitSeq(v, ",") {
			part = strings.TrimSpace(part)
			switch {
			case part == "":
				return nil, &FilterError{n, "an empty value; give name=value or name=v1,v2"}
			case len(part) > MaxFilterValueLen:
				return nil, &FilterError{n, fmt.Sprintf("a value longer than %d bytes", MaxFilterValueLen)}
			}
			if d.Fold {
				part = strings.ToLower(part)
			}
			if d.Normalize != nil {
				part = d.Normalize(part)
			}
			if !slices.Contains(values, part) {
				values = append(values, part)
			}
		}
		if len(values) > MaxFilterValues {
			return nil, &FilterError{n, fmt.Sprintf("%d values, at most %d", len(values), MaxFilterValues)}
		}
		out = append(out, Filter{Dim: d, Values: values})
	}
	return out, nil
}

// SQL is the condition the filters make, " AND ..." (empty without
// filters), columns from Dimensions and every value bound.
func (fs Filters) SQL() (string, []any) {
	var b strings.Builder
	var args []any
	for _, f := range fs {
		if f.Dim.Array {
			b.WriteString(" AND (" + strings.TrimSuffix(strings.Repeat("has("+f.Dim.column()+", ?) OR ", len(f.Values)), " OR ") + ")")
		} else {
			b.WriteString(" AND " + f.Dim.column() + " IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(f.Values)), ", ") + ")")
		}
		for _, v := range f.Values {
			args = append(args, v)
		}
	}
	return b.String(), args
}

// Map is the filters as dimension → values, as a replay stores them.
func (fs Filters) Map() map[string][]string {
	if len(fs) == 0 {
		return nil
	}
	m := make(map[string][]string, len(fs))
	for _, f := range fs {
		m[f.Dim.Name] = f.Values
	}
	return m
}

// FiltersOf reads filters Map made back.
func FiltersOf(m map[string][]string) (Filters, error) {
	return ParseFilters(func(n string) string { return strings.Join(m[n], ",") }, "")
}

// Match reports whether ev holds every filter, as the filters' SQL does
// over its stored row.
func (fs Filters) Match(ev *Event) bool {
	for _, f := range fs {
		if !f.match(ev) {
			return false
		}
	}
	return true
}

func (f Filter) match(ev *Event) bool {
	d := &ev.Dims
	var have []string
	switch f.Dim.Name {
	case "recipient_domain":
		have = []string{d.RecipientDomain}
	case "sender_domain":
		have = []string{d.SenderDomain}
	case "message_id":
		have = []string{d.MessageID}
	case "bounce_type":
		have = []string{d.BounceType}
	case "npa":
		have = []string{d.NPA}
	case "voice":
		have = []string{d.Voice}
	case "format":
		have = []string{d.Format}
	case "recipient":
		have = d.Recipients
	}
	// Values are stored as the columns hold them (ParseFilters).
	for _, v := range f.Values {
		if slices.Contains(have, v) {
			return true
		}
	}
	return false
}
