package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fastjson"
)

// scanCases are records at the edges of JSON: each is checked against
// encoding/json's Valid, and those that are JSON against Parse as it was.
var scanCases = []string{
	``, ` `, `{`, `}`, `{}`, ` {} `, `{} {}`, `{}x`, `[]`, `[1,]`, `[,1]`, `{"a":1,}`, `{,"a":1}`, `{"a" 1}`, `{"a":}`, `{1:1}`,
	`"abc"`, `"abc`, `"a\"b"`, `"a\\"`, `"a\/b"`, `"\b\f\n\r\t"`, `"\x"`, `"\u00e9"`, `"\u00E9"`, `"\u00g9"`, `"\u00e"`, `"\ud83d\ude00"`,
	"\"a\tb\"", "\"a\x00b\"", "\"a\x1fb\"", "\"\x7f\"", "\"\xff\xfe\"", `"\`, `"\u`,
	`0`, `-0`, `01`, `-`, `1.`, `.1`, `1.5`, `1e5`, `1E+5`, `1e-5`, `1e`, `1e+`, `+1`, `-01`, `1.5e3`, `0.0`, `00`, `1-2`, `9223372036854775808`,
	`true`, `false`, `null`, `tru`, `nul`, `True`, `truex`, `[true,false,null]`,
	strings.Repeat("[", 300) + strings.Repeat("]", 300), strings.Repeat("[", 301) + strings.Repeat("]", 301),
	`{"eventId":"evt_1","type":"send.email.sent","service":"send","createdAt":1,"data":{"messageId":"m","to":"a@b.c","from":"x@Y.z","subject":"s"}}`,
	`{"eventId":"evt_1","type":"send.email.sent","service":"send","createdAt":1,"data":{"messageId":"m","to":["a@B.c",7,"d@e.f"],"from":"x@y.z"}}`,
	`{"eventId":"evt_1","type":"send.email.sent","service":"send","createdAt":1,"data":{"messageId":"m","to":[],"from":"x@y.z"}}`,
	`{"eventId":"evt_1","type":"send.email.sent","service":"send","createdAt":1,"data":{"messageId":"m","to":[["a@b.c"]],"from":"x@y.z"}}`,
	`{"eventId":"evt_\u0031","typ\u0065":"send.email.bounced","service":"send","createdAt":1,"data":{"message\u0049d":"m\"1","to":"a@b.c","bounceType":"h\u0061rd"}}`,
	`{"eventId":"e","type":"talk.speech.generated","service":"talk","createdAt":1,"data":{"voice":"v","format":"mp3","textLength":12,"durationSec":1.5e0}}`,
	`{"eventId":"e","type":"talk.speech.generated","service":"talk","createdAt":1,"data":{"voice":"v","format":"mp3","textLength":1.5,"durationSec":1e400}}`,
	`{"eventId":"e","type":"talk.speech.generated","service":"talk","createdAt":1,"data":{"voice":"v","format":"mp3","textLength":99999999999999999999,"durationSec":-0}}`,
	`{"eventId":"e","type":"telco.lookup.completed","service":"telco","createdAt":1,"data":{"tn":"1","npa":"2","nxx":"3","hasCarrier":true,"hasInventory":null}}`,
	`{"eventId":"e","type":"x.y","service":"x","createdAt":-0,"data":{"nested":{"to":"a@b.c","messageId":"no"},"list":[{"a":[1,{"b":2}]}]}}`,
	`{"eventId":"e","type":"x.y","service":"x","createdAt":1.0,"data":{}}`,
	`{"eventId":"e","type":"x.y","service":"x","createdAt":1e3,"data":{}}`,
	`{"eventId":"e","type":"x.y","service":"x","createdAt":4102444800000,"data":{}}`,
	`{"eventId":"e","type":"x.y","service":"x","createdAt":1,"data":[],"data":{}}`,
	`{"eventId":"e","type":"x.y","service":"x","createdAt":1,"livemode":false,"data":{}}`,
	`{"eventId":"e","type":"x.y","service":"x","createdAt":1,"livemode":0,"data":{}}`,
	`{"eventId":"e","type":"x.y","service":"x","createdAt":1}`,
	`{"eventId":"e e","type":"x.y","service":"x","createdAt":1,"data":{}}`,
	`{"eventId":"e","type":"X.y","service":"x","createdAt":1,"data":{}}`,
	`{"eventId":"e","type":"x.y","service":"y","createdAt":1,"data":{}}`,
	`{"eventId":"e","type":"send.email.bounced","service":"send","createdAt":1,"data":{"messageId":"m","to":"a@b.c","bounceType":"medium"}}`,
}

func TestScanAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range scanCases {
		checkScan(t, []byte(in))
	}
}

// TestParseAsBeforeOnTestdata holds Parse to the former parser over every
// record of the checked-in sample.
func TestParseAsBeforeOnTestdata(t *testing.T) {
	all, err := os.ReadFile("../testdata/events.ndjson")
	require.NoError(t, err)
	recs := bytes.Split(bytes.TrimSpace(all), []byte("\n"))
	require.Greater(t, len(recs), 1000)
	for _, rec := range recs {
		checkScan(t, rec)
	}
}

// FuzzParseAsBefore: a record is JSON to Parse exactly when it is to
// encoding/json, and Parse reads every JSON record as the former parser
// on fastjson did, event or error.
func FuzzParseAsBefore(f *testing.F) {
	for _, in := range scanCases {
		f.Add([]byte(in))
	}
	all, err := os.ReadFile("../testdata/events.ndjson")
	require.NoError(f, err)
	for _, rec := range bytes.Split(bytes.TrimSpace(all), []byte("\n"))[:40] {
		f.Add(rec)
	}
	f.Fuzz(checkScan)
}

// surrogateEscape matches a \u escape of a UTF-16 surrogate: fastjson reads
// a lone one otherwise than encoding/json, whose reading (U+FFFD) Parse
// keeps.
var surrogateEscape = regexp.MustCompile(`\\u[dD][89a-fA-F]`)

func checkScan(t *testing.T, in []byte) {
	var p Parser
	ev, err := p.Parse(in)
	var ie *InvalidError
	if err != nil && (!errors.As(err, &ie) || ie.Reason == "") {
		t.Fatalf("%q: error without a reason: %v", in, err)
	}
	notJSON := err != nil && strings.HasPrefix(ie.Reason, "not JSON")
	tooDeep := bytes.Count(in, []byte("["))+bytes.Count(in, []byte("{")) > maxDepth
	if json.Valid(in) == notJSON && !tooDeep {
		t.Fatalf("%q: encoding/json says valid %v, Parse: %v", in, json.Valid(in), err)
	}
	if notJSON || surrogateEscape.Match(in) {
		return
	}
	var fp fastjson.Parser
	old, oldErr := fastjsonParse(&fp, in)
	if oldErr != nil && strings.Contains(oldErr.Error(), "not JSON") {
		t.Fatalf("%q: fastjson refused what encoding/json takes: %v", in, oldErr)
	}
	if err != nil || oldErr != nil {
		if err == nil || oldErr == nil || err.Error() != oldErr.Error() {
			t.Fatalf("%q: Parse says %v, before %v", in, err, oldErr)
		}
		return
	}
	assert.Equal(t, old, ev, "%q", in)
	shared := Parser{Shared: true}
	sev, err := shared.Parse(in)
	require.NoError(t, err, "%q", in)
	assert.Equal(t, ev, sev, "%q: Shared reads it otherwise", in)
}

// TestParseShared: a Shared parser's strings are raw's bytes, a plain one's
// copies of them, so a plain Event outlives a raw reused.
func TestParseShared(t *testing.T) {
	raw := []byte(`{"eventId":"evt_1","type":"send.email.sent","service":"send","createdAt":1,` +
		`"data":{"messageId":"m_1","to":["ann@b.c","Bob <bob@d.e>"],"from":"x@y.z","subject":"s"}}`)
	inRaw := func(s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		start := uintptr(unsafe.Pointer(&raw[0]))
		return p >= start && p < start+uintptr(len(raw))
	}
	for _, shared := range []bool{false, true} {
		p := Parser{Shared: shared}
		ev, err := p.Parse(raw)
		require.NoError(t, err)
		require.Equal(t, []string{"ann@b.c", "bob@d.e"}, ev.Dims.Recipients)
		for _, s := range []string{ev.ID, ev.Dims.MessageID, ev.Dims.Recipients[0], ev.Dims.Recipients[1], ev.Dims.RecipientDomain, ev.Dims.SenderDomain} {
			assert.Equal(t, shared, inRaw(s), "shared %v: %q", shared, s)
		}
	}
}

// FuzzUnescape: a JSON string's text reads as encoding/json reads it,
// surrogate escapes, lone or paired, included.
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{`plain`, `a\"b\\c\/d`, `\b\f\n\r\t`, `\u00e9\u00E9`, `\ud83d\ude00`, `\ud800`, `\ud800\u0041`,
		`\udc00\ud800`, `\ud83d\ud83d\ude00`, `\ud83dx`, `\ud83d\n`, "é\x80"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		quoted := append(append([]byte{'"'}, in...), '"')
		var want string
		if json.Unmarshal(quoted, &want) != nil {
			return
		}
		s := scanner{b: quoted}
		text, esc, err := s.str()
		require.NoError(t, err, "%q", quoted)
		got := new(Parser).str(value{kind: kindString, text: text, esc: esc})
		// encoding/json replaces invalid UTF-8 with U+FFFD; stored
		// dimensions keep the bytes as sent.
		if !utf8.Valid(in) {
			return
		}
		require.Equal(t, want, got, "%q", quoted)
	})
}

// TestScannerKeepsNoEarlierRecord: once the next record is parsed, nothing
// the parser keeps points into an earlier one, whose buffer (a whole fetch,
// in ingest) would otherwise stay alive.
func TestScannerKeepsNoEarlierRecord(t *testing.T) {
	var p Parser
	first := []byte(`{"eventId":"e","type":"x.y","service":"x","createdAt":1,"data":{"a":"1","b":"2","c":"3","to":["4","5"]}}`)
	_, err := p.Parse(first)
	require.NoError(t, err)
	_, err = p.Parse([]byte(`{"eventId":"e","type":"x.y","service":"x","createdAt":1,"data":{}}`))
	require.NoError(t, err)
	lo := uintptr(unsafe.Pointer(&first[0]))
	into := func(b []byte) bool {
		if cap(b) == 0 {
			return false
		}
		at := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		return at >= lo && at < lo+uintptr(len(first))
	}
	for _, m := range p.s.data[:cap(p.s.data)] {
		assert.False(t, into(m.key) || into(m.val.text), "a member of the first record is kept: %q", m.key)
	}
	for _, v := range p.s.elems[:cap(p.s.elems)] {
		assert.False(t, into(v.text), "an element of the first record is kept: %q", v.text)
	}
}
