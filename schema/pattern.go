package schema

import (
	"fmt"
	"strings"
)

// Pattern selects event types the way webhook endpoints subscribe:
// "*" (everything), "<service>.*", "<service>.<noun>.*", or an exact type.
type Pattern struct {
	text   string
	prefix string // for wildcards: what a matching type starts with ("send." or "send.email.")
	exact  bool
}

// ParsePattern checks a pattern. Segments are lowercase like types; a
// wildcard may only stand alone or as the last of two or three segments.
func ParsePattern(s string) (Pattern, error) {
	if s == "*" {
		return Pattern{text: s}, nil
	}
	if base, ok := strings.CutSuffix(s, ".*"); ok {
		n := strings.Count(base, ".") + 1
		if n > 2 || checkSegments(base) != nil {
			return Pattern{}, fmt.Errorf("pattern %q: want *, <service>.*, <service>.<noun>.* or an exact type", s)
		}
		return Pattern{text: s, prefix: base + "."}, nil
	}
	if strings.Contains(s, "*") || checkType(s) != nil {
		return Pattern{}, fmt.Errorf("pattern %q: want *, <service>.*, <service>.<noun>.* or an exact type", s)
	}
	return Pattern{text: s, exact: true}, nil
}

// checkSegments accepts one or more lowercase dotted segments.
func checkSegments(s string) error {
	if checkType(s+".x") != nil {
		return ErrInvalid
	}
	return nil
}

// MaxPatterns bounds a list of patterns: each becomes a condition of every
// statement that reads with it.
const MaxPatterns = 100

// ParsePatterns parses a list; an empty list is an error, and so is one of
// more than MaxPatterns.
func ParsePatterns(list []string) ([]Pattern, error) {
	if len(list) == 0 {
		return nil, fmt.Errorf("no patterns given")
	}
	if len(list) > MaxPatterns {
		return nil, fmt.Errorf("%d patterns: want at most %d", len(list), MaxPatterns)
	}
	out := make([]Pattern, 0, len(list))
	for _, s := range list {
		p, err := ParsePattern(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (p Pattern) String() string { return p.text }

// Match reports whether typ is selected.
func (p Pattern) Match(typ string) bool {
	switch {
	case p.exact:
		return typ == p.text
	case p.prefix == "":
		return true
	}
	return strings.HasPrefix(typ, p.prefix)
}

// SQL returns a condition on the type column selecting the pattern, and its
// bound arguments. Wildcards become a range on type (prefix <= type <
// prefix with its final "." raised to "/"), which the table's sort key can
// use and which, unlike LIKE, gives "_" no special meaning.
func (p Pattern) SQL() (string, []any) {
	switch {
	case p.exact:
		return "type = ?", []any{p.text}
	case p.prefix == "":
		return "1", nil
	}
	upper := p.prefix[:len(p.prefix)-1] + "/"
	return "(type >= ? AND type < ?)", []any{p.prefix, upper}
}

// MatchAny reports whether any of the patterns selects typ, as PatternsSQL
// does.
func MatchAny(ps []Pattern, typ string) bool {
	for _, p := range ps {
		if p.Match(typ) {
			return true
		}
	}
	return false
}

// PatternsSQL ORs the conditions of several patterns.
func PatternsSQL(ps []Pattern) (string, []any) {
	var conds []string
	var args []any
	for _, p := range ps {
		c, a := p.SQL()
		if c == "1" {
			return "1", nil
		}
		conds = append(conds, c)
		args = append(args, a...)
	}
	return "(" + strings.Join(conds, " OR ") + ")", args
}
