package schema_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/schema"
)

func TestPatternMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		match   []string
		miss    []string
	}{
		{"*", []string{"send.email.sent", "platform.test", "x.y"}, nil},
		{"send.*", []string{"send.email.sent", "send.domain.verified"}, []string{"sender.email.sent", "telco.lookup.completed", "send"}},
		{"send.email.*", []string{"send.email.bounced", "send.email.opened"}, []string{"send.emails.sent", "send.domain.verified", "send.email"}},
		{"send.email.bounced", []string{"send.email.bounced"}, []string{"send.email.bounced2", "send.email.*"}},
		{"send.email_v2.*", []string{"send.email_v2.sent"}, []string{"send.emailxv2.sent"}},
	} {
		p, err := schema.ParsePattern(tc.pattern)
		require.NoError(t, err, tc.pattern)
		assert.Equal(t, tc.pattern, p.String())
		for _, typ := range tc.match {
			assert.True(t, p.Match(typ), "%s matches %s", tc.pattern, typ)
		}
		for _, typ := range tc.miss {
			assert.False(t, p.Match(typ), "%s does not match %s", tc.pattern, typ)
		}
	}
}

func TestPatternRejects(t *testing.T) {
	for _, s := range []string{"", "**", "send", "send.", "*.email.sent", "send.*.sent", "send.email.bounced.*", "Send.*",
		"send.email.*.*", "send*", "send.e*", ".*", "send..*", "send.email.sent ", "' OR 1=1 --", "send.%", "send._"} {
		_, err := schema.ParsePattern(s)
		assert.Error(t, err, "%q", s)
	}
	_, err := schema.ParsePatterns(nil)
	assert.Error(t, err)
}

func TestPatternSQL(t *testing.T) {
	p, _ := schema.ParsePattern("send.email.*")
	sql, args := p.SQL()
	assert.Equal(t, "(type >= ? AND type < ?)", sql)
	assert.Equal(t, []any{"send.email.", "send.email/"}, args)
	all, _ := schema.ParsePatterns([]string{"send.*", "*"})
	sql, args = schema.PatternsSQL(all)
	assert.Equal(t, "1", sql)
	assert.Nil(t, args)
}

func FuzzPattern(f *testing.F) {
	for _, s := range []string{"*", "send.*", "send.email.*", "send.email.sent", "a.b.c.*"} {
		f.Add(s, "send.email.sent")
	}
	f.Fuzz(func(t *testing.T, pattern, typ string) {
		p, err := schema.ParsePattern(pattern)
		if err != nil {
			return
		}
		// The SQL range and Match agree: prefix <= typ < upper iff typ has the prefix.
		sql, args := p.SQL()
		if len(args) == 2 {
			lo, hi := args[0].(string), args[1].(string)
			inRange := typ >= lo && typ < hi
			if inRange != strings.HasPrefix(typ, lo) && strings.IndexFunc(typ, func(r rune) bool { return r < '/' }) < 0 {
				t.Fatalf("%s: range [%q, %q) disagrees with prefix for %q", sql, lo, hi, typ)
			}
			if p.Match(typ) != strings.HasPrefix(typ, lo) {
				t.Fatalf("Match disagrees with prefix %q for %q", lo, typ)
			}
		}
	})
}
