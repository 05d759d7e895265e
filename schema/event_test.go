package schema_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dodev/hindsight/schema"
)

const validBounce = `{"eventId":"evt_1","type":"send.email.bounced","service":"send","data":{"messageId":"m1","to":["Ann <Ann@Example.COM>","b@c.d"],"bounceType":"hard","diagnosticCode":"550"},"createdAt":1790812800000,"extra":{"kept":true}}`

func TestParseValid(t *testing.T) {
	var p schema.Parser
	ev, err := p.Parse([]byte(validBounce))
	require.NoError(t, err)
	assert.Equal(t, "evt_1", ev.ID)
	assert.Equal(t, "send.email.bounced", ev.Type)
	assert.Equal(t, "send", ev.Service)
	assert.Equal(t, int64(1790812800000), ev.CreatedAt)
	assert.True(t, ev.Livemode, "absent livemode means live")
	assert.True(t, ev.Known)
	assert.Equal(t, "m1", ev.Dims.MessageID)
	assert.Equal(t, "example.com", ev.Dims.RecipientDomain, "first recipient, lowercased, display name stripped")
	assert.Equal(t, "hard", ev.Dims.BounceType)
	assert.Equal(t, validBounce, string(ev.Raw), "raw bytes kept as received")
}

func TestParseDims(t *testing.T) {
	var p schema.Parser
	for _, tc := range []struct {
		name, in string
		want     schema.Dims
		live     bool
	}{
		{"lookup", `{"eventId":"a","type":"telco.lookup.completed","service":"telco","createdAt":1,"livemode":false,"data":{"tn":"+12125550100","npa":"212","nxx":"555","hasCarrier":true,"hasInventory":false}}`,
			schema.Dims{NPA: "212", HasCarrier: true}, false},
		{"speech", `{"eventId":"a","type":"talk.speech.generated","service":"talk","createdAt":1,"data":{"voice":"nova","format":"mp3","textLength":1200,"speed":1.25}}`,
			schema.Dims{Voice: "nova", Format: "mp3", TextLength: 1200}, true},
		{"call", `{"eventId":"a","type":"voip.call.completed","service":"voip","createdAt":1,"data":{"callId":"c","durationSec":61.5}}`,
			schema.Dims{DurationSec: 61.5}, true},
		{"voip to is not an email", `{"eventId":"a","type":"voip.call.incoming","service":"voip","createdAt":1,"data":{"callId":"c","from":"+1@x","to":"+2@y"}}`,
			schema.Dims{}, true},
		{"sent", `{"eventId":"a","type":"send.email.sent","service":"send","createdAt":1,"data":{"messageId":"m","from":"News <news@Mail.do.dev>","to":"x@Y.io","subject":"s"}}`,
			schema.Dims{MessageID: "m", MessageHash: xxhash.Sum64String("m"), RecipientDomain: "y.io", Recipients: []string{"x@y.io"}, SenderDomain: "mail.do.dev"}, true},
		{"several recipients", `{"eventId":"a","type":"send.email.delivered","service":"send","createdAt":1,"data":{"messageId":"m","to":["Ann <Ann@Example.COM>"," bob@B.org "]}}`,
			schema.Dims{MessageID: "m", MessageHash: xxhash.Sum64String("m"), RecipientDomain: "example.com", Recipients: []string{"Ann@example.com", "bob@b.org"}}, true},
		{"unknown type keeps familiar fields", `{"eventId":"a","type":"send.email.deferred","service":"send","createdAt":1,"data":{"messageId":"m","to":7}}`,
			schema.Dims{MessageID: "m", MessageHash: xxhash.Sum64String("m")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := p.Parse([]byte(tc.in))
			require.NoError(t, err)
			assert.Equal(t, tc.want, ev.Dims)
			assert.Equal(t, tc.live, ev.Livemode)
		})
	}
}

// TestNormalizeAddress: the local part as given, the domain after the last
// @ lowercased, the part in angle brackets, trimmed.
func TestNormalizeAddress(t *testing.T) {
	for in, want := range map[string]string{
		"ann@Example.COM": "ann@example.com", "Ann <Ann@Example.com>": "Ann@example.com", " bob@b.org ": "bob@b.org",
		`"a@b"@C.io`: `"a@b"@c.io`, "no-at": "no-at", "": "",
	} {
		assert.Equal(t, want, schema.NormalizeAddress(in), in)
	}
}

func TestParseRejects(t *testing.T) {
	base := func(mut func(m map[string]any)) string {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(validBounce), &m))
		mut(m)
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return string(b)
	}
	data := func(mut func(d map[string]any)) string {
		return base(func(m map[string]any) { mut(m["data"].(map[string]any)) })
	}
	for _, tc := range []struct {
		name, in, reason string
	}{
		{"not json", `{"eventId":`, "not JSON"},
		{"lenient number", `{"eventId":"a","type":"x.y","service":"x","data":{},"createdAt":1-2}`, "not JSON"},
		{"array", `[{"eventId":"a"}]`, "not a JSON object"},
		{"string", `"hello"`, "not a JSON object"},
		{"missing eventId", base(func(m map[string]any) { delete(m, "eventId") }), "missing eventId"},
		{"empty eventId", base(func(m map[string]any) { m["eventId"] = "" }), "empty eventId"},
		{"numeric eventId", base(func(m map[string]any) { m["eventId"] = 7 }), "eventId must be a string"},
		{"long eventId", base(func(m map[string]any) { m["eventId"] = strings.Repeat("a", 129) }), "longer than 128"},
		{"non-ASCII eventId", base(func(m map[string]any) { m["eventId"] = "évt_1" }), "printable ASCII"},
		{"newline in eventId", base(func(m map[string]any) { m["eventId"] = "evt\n1" }), "printable ASCII"},
		{"space in eventId", base(func(m map[string]any) { m["eventId"] = "evt 1" }), "printable ASCII"},
		{"DEL in eventId", base(func(m map[string]any) { m["eventId"] = "evt\x7f" }), "printable ASCII"},
		{"missing type", base(func(m map[string]any) { delete(m, "type") }), "missing type"},
		{"empty type", base(func(m map[string]any) { m["type"] = "" }), "empty type"},
		{"uppercase type", base(func(m map[string]any) { m["type"] = "Send.email.bounced" }), "malformed type"},
		{"one segment", base(func(m map[string]any) { m["type"] = "send"; m["service"] = "send" }), "malformed type"},
		{"empty segment", base(func(m map[string]any) { m["type"] = "send..bounced" }), "malformed type"},
		{"space in type", base(func(m map[string]any) { m["type"] = "send.email bounced" }), "malformed type"},
		{"missing service", base(func(m map[string]any) { delete(m, "service") }), "missing service"},
		{"service mismatch", base(func(m map[string]any) { m["service"] = "telco" }), "does not match type"},
		{"missing createdAt", base(func(m map[string]any) { delete(m, "createdAt") }), "missing createdAt"},
		{"string createdAt", base(func(m map[string]any) { m["createdAt"] = "1790812800000" }), "createdAt must be an integer"},
		{"fractional createdAt", base(func(m map[string]any) { m["createdAt"] = 1790812800000.5 }), "createdAt must be an integer"},
		{"exponent createdAt", `{"eventId":"a","type":"x.y","service":"x","data":{},"createdAt":1.7e12}`, "createdAt must be an integer"},
		{"overflowing createdAt", `{"eventId":"a","type":"x.y","service":"x","data":{},"createdAt":99999999999999999999}`, "createdAt must be an integer"},
		{"negative createdAt", base(func(m map[string]any) { m["createdAt"] = -1 }), "outside"},
		{"createdAt in seconds is still ms, too far ahead", base(func(m map[string]any) { m["createdAt"] = 5_000_000_000_000 }), "outside"},
		{"livemode string", base(func(m map[string]any) { m["livemode"] = "false" }), "livemode must be a boolean"},
		{"missing data", base(func(m map[string]any) { delete(m, "data") }), "missing data"},
		{"data array", base(func(m map[string]any) { m["data"] = []int{1} }), "data must be an object"},
		{"data null", base(func(m map[string]any) { m["data"] = nil }), "data must be an object"},
		{"required field missing", data(func(d map[string]any) { delete(d, "diagnosticCode") }), "missing data.diagnosticCode"},
		{"required field wrong type", data(func(d map[string]any) { d["messageId"] = 12 }), "data.messageId must be a string"},
		{"enum violated", data(func(d map[string]any) { d["bounceType"] = "medium" }), "data.bounceType must be one of hard, soft"},
		{"recipients of numbers", data(func(d map[string]any) { d["to"] = []int{1} }), "data.to must be a string or a non-empty array of strings"},
		{"empty recipients", data(func(d map[string]any) { d["to"] = []string{} }), "data.to must be"},
		{"integer field fractional", `{"eventId":"a","type":"talk.speech.generated","service":"talk","createdAt":1,"data":{"voice":"v","format":"mp3","textLength":1.5,"speed":1}}`, "data.textLength must be an integer"},
		{"bool field as string", `{"eventId":"a","type":"telco.lookup.completed","service":"telco","createdAt":1,"data":{"tn":"1","npa":"2","nxx":"3","hasCarrier":"yes","hasInventory":false}}`, "data.hasCarrier must be a boolean"},
		{"object field as array", `{"eventId":"a","type":"telco.search.completed","service":"telco","createdAt":1,"data":{"source":"s","filters":[]}}`, "data.filters must be an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p schema.Parser
			_, err := p.Parse([]byte(tc.in))
			require.Error(t, err)
			assert.True(t, errors.Is(err, schema.ErrInvalid))
			var ie *schema.InvalidError
			require.ErrorAs(t, err, &ie)
			assert.Contains(t, ie.Reason, tc.reason)
		})
	}
}

func TestParseOptionalFieldsMayBeAbsent(t *testing.T) {
	var p schema.Parser
	for _, in := range []string{
		`{"eventId":"a","type":"send.email.opened","service":"send","createdAt":1,"data":{"messageId":"m","to":"a@b.c"}}`,
		`{"eventId":"a","type":"send.suppression.added","service":"send","createdAt":1,"data":{"email":"a@b.c"}}`,
		`{"eventId":"a","type":"transcribe.session.completed","service":"transcribe","createdAt":1,"data":{"sessionId":"s","durationSec":3}}`,
		`{"eventId":"a","type":"platform.key.created","service":"platform","createdAt":1,"data":{"keyId":"k"}}`,
	} {
		_, err := p.Parse([]byte(in))
		assert.NoError(t, err, in)
	}
	_, err := p.Parse([]byte(`{"eventId":"a","type":"send.email.opened","service":"send","createdAt":1,"data":{"messageId":"m","to":"a@b.c","userAgent":5}}`))
	assert.Error(t, err, "an optional field present must still have its type")
}

// TestSampleIsValid keeps testdata honest: every sample line parses, and the
// sample covers every catalog type.
func TestSampleIsValid(t *testing.T) {
	raw, err := os.ReadFile("../testdata/events.ndjson")
	require.NoError(t, err)
	var p schema.Parser
	seen := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		ev, err := p.Parse([]byte(line))
		require.NoError(t, err, "line %d", i+1)
		seen[ev.Type] = true
	}
	for _, et := range schema.Catalog() {
		assert.True(t, seen[et.Type], "sample lacks %s", et.Type)
	}
}

func TestCatalog(t *testing.T) {
	cat := schema.Catalog()
	assert.Len(t, cat, 18)
	for _, et := range cat {
		assert.Equal(t, schema.ServiceOf(et.Type), et.Service, et.Type)
		assert.True(t, schema.IsService(et.Service), et.Type)
		assert.NotEmpty(t, et.Description, et.Type)
		got, ok := schema.Lookup(et.Type)
		assert.True(t, ok)
		assert.Equal(t, et.Type, got.Type)
	}
	bounce, _ := schema.Lookup("send.email.bounced")
	assert.Equal(t, []schema.Field{
		{Name: "messageId", Kind: schema.KindString},
		{Name: "to", Kind: schema.KindStrings},
		{Name: "bounceType", Kind: schema.KindString, Enum: []string{"hard", "soft"}},
		{Name: "diagnosticCode", Kind: schema.KindString},
	}, bounce.Fields)
	assert.Equal(t, []string{"voip.call.completed", "voip.call.incoming", "voip.call.missed"}, schema.TypesOf("voip"))
	_, ok := schema.Lookup("send.email.deferred")
	assert.False(t, ok)
	cat[0].Type = "mutated"
	assert.NotEqual(t, "mutated", schema.Catalog()[0].Type, "Catalog returns a copy")
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(validBounce))
	f.Add([]byte(`{"eventId":"a","type":"x.y","service":"x","data":{},"createdAt":1}`))
	f.Add([]byte(`{"eventId":"a","type":"send.email.sent","service":"send","data":{"to":[]},"createdAt":-0}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var p schema.Parser
		ev, err := p.Parse(in)
		if err != nil {
			var ie *schema.InvalidError
			if !errors.As(err, &ie) || ie.Reason == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		// Whatever passes is JSON the standard library agrees is an object
		// with the envelope the parser reported.
		var env struct {
			EventID   string `json:"eventId"`
			Type      string `json:"type"`
			CreatedAt int64  `json:"createdAt"`
		}
		if !json.Valid(in) {
			t.Fatalf("accepted invalid JSON: %q", in)
		}
		if err := json.Unmarshal(in, &env); err == nil && env.EventID != ev.ID && !strings.EqualFold(env.EventID, ev.ID) {
			t.Fatalf("eventId %q, stdlib reads %q", ev.ID, env.EventID)
		}
		if ev.ID == "" || ev.Service != schema.ServiceOf(ev.Type) || ev.CreatedAt < 0 {
			t.Fatalf("accepted a bad envelope: %+v", ev)
		}
	})
}

// TestParseTakesTheFirstOfARepeatedKey: an object that repeats a key is
// read by its first, in the envelope and in data alike.
func TestParseTakesTheFirstOfARepeatedKey(t *testing.T) {
	var p schema.Parser
	ev, err := p.Parse([]byte(`{"eventId":"evt_1","eventId":"evt_2","type":"send.email.bounced","type":"x.y","service":"send",` +
		`"data":{"messageId":"m1","to":"a@first.com","bounceType":"hard","diagnosticCode":"550","messageId":"m2","to":"b@second.com"},"createdAt":1,"data":{}}`))
	require.NoError(t, err)
	assert.Equal(t, "evt_1", ev.ID)
	assert.Equal(t, "send.email.bounced", ev.Type)
	assert.Equal(t, "m1", ev.Dims.MessageID)
	assert.Equal(t, "first.com", ev.Dims.RecipientDomain)
	assert.Equal(t, []string{"a@first.com"}, ev.Dims.Recipients)
}

// BenchmarkParse parses the checked-in sample mix, one record per
// iteration: ingest runs this for every record.
func BenchmarkParse(b *testing.B) {
	all, err := os.ReadFile("../testdata/events.ndjson")
	require.NoError(b, err)
	recs := bytes.Split(bytes.TrimSpace(all), []byte("\n"))
	var p schema.Parser
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := p.Parse(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
}
