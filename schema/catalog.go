package schema

import (
	"sort"
	"strings"
)

// Kind is the JSON type a data field must have.
type Kind string

// The JSON kinds a catalog field can require. KindStrings accepts a string or
// an array of strings (an email's "to").
const (
	KindString  Kind = "string"
	KindStrings Kind = "string_or_strings"
	KindNumber  Kind = "number"
	KindInteger Kind = "integer"
	KindBool    Kind = "boolean"
	KindObject  Kind = "object"
)

// Field is one data field a catalog type describes.
type Field struct {
	Name     string   `json:"name"`
	Kind     Kind     `json:"kind"`
	Optional bool     `json:"optional,omitempty"`
	Enum     []string `json:"enum,omitempty"` // allowed values of a string field, if restricted
}

// EventType is one entry of the catalog.
type EventType struct {
	Type        string  `json:"type"`
	Service     string  `json:"service"`
	Description string  `json:"description"`
	Fields      []Field `json:"fields"`
}

// Services are the platform's services, in the order the product lists them.
var Services = []string{"send", "telco", "talk", "voip", "transcribe", "platform"}

func str(name string) Field     { return Field{Name: name, Kind: KindString} }
func optStr(name string) Field  { return Field{Name: name, Kind: KindString, Optional: true} }
func num(name string) Field     { return Field{Name: name, Kind: KindNumber} }
func recipients() Field         { return Field{Name: "to", Kind: KindStrings} }
func boolean(name string) Field { return Field{Name: name, Kind: KindBool} }
func integer(name string) Field { return Field{Name: name, Kind: KindInteger} }
func object(name string) Field  { return Field{Name: name, Kind: KindObject} }
func enum(name string, values ...string) Field {
	return Field{Name: name, Kind: KindString, Enum: values}
}

// catalog lists every event type the platform emits. Types the platform adds
// before this list knows them are still stored and counted; they are only not
// validated beyond the envelope.
var catalog = []EventType{
	{"send.email.sent", "send", "An email was accepted for delivery.", []Field{str("messageId"), str("from"), recipients(), str("subject")}},
	{"send.email.delivered", "send", "The recipient's mail server accepted the email.", []Field{str("messageId"), recipients()}},
	{"send.email.bounced", "send", "The email bounced, permanently (hard) or temporarily (soft).", []Field{str("messageId"), recipients(), enum("bounceType", "hard", "soft"), str("diagnosticCode")}},
	{"send.email.complained", "send", "The recipient marked the email as spam.", []Field{str("messageId"), recipients()}},
	{"send.email.opened", "send", "The recipient opened the email.", []Field{str("messageId"), recipients(), optStr("userAgent")}},
	{"send.email.clicked", "send", "The recipient clicked a link in the email.", []Field{str("messageId"), recipients(), str("url")}},
	{"send.domain.verified", "send", "A sending domain passed DNS verification.", []Field{str("domain")}},
	{"send.suppression.added", "send", "An address was added to the suppression list.", []Field{str("email"), optStr("reason")}},
	{"telco.lookup.completed", "telco", "A phone number lookup finished.", []Field{str("tn"), str("npa"), str("nxx"), boolean("hasCarrier"), boolean("hasInventory")}},
	{"telco.search.completed", "telco", "A phone number search finished.", []Field{str("source"), object("filters")}},
	{"talk.speech.generated", "talk", "Text was turned into speech.", []Field{str("voice"), str("format"), integer("textLength"), num("speed")}},
	{"voip.call.incoming", "voip", "A call came in.", []Field{str("callId"), str("from"), str("to")}},
	{"voip.call.completed", "voip", "A call was answered and has ended.", []Field{str("callId"), num("durationSec")}},
	{"voip.call.missed", "voip", "A call came in and was not answered.", []Field{str("callId"), str("from"), str("to")}},
	{"transcribe.session.completed", "transcribe", "A transcription session finished.", []Field{str("sessionId"), num("durationSec"), optStr("language")}},
	{"platform.key.created", "platform", "An API key was created.", []Field{str("keyId"), optStr("name")}},
	{"platform.key.revoked", "platform", "An API key was revoked.", []Field{str("keyId")}},
	{"platform.test", "platform", "A test event sent to a webhook endpoint (livemode false).", []Field{str("message"), str("endpoint_id")}},
}

var byType = func() map[string]*EventType {
	m := make(map[string]*EventType, len(catalog))
	for i := range catalog {
		m[catalog[i].Type] = &catalog[i]
	}
	return m
}()

// Catalog returns a copy of every known event type, sorted by type.
func Catalog() []EventType {
	out := make([]EventType, len(catalog))
	copy(out, catalog)
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// Lookup returns the catalog entry of an event type.
func Lookup(typ string) (EventType, bool) {
	et, ok := byType[typ]
	if !ok {
		return EventType{}, false
	}
	return *et, true
}

// TypesOf returns the catalog's types of one service, sorted.
func TypesOf(service string) []string {
	var out []string
	for _, et := range catalog {
		if et.Service == service {
			out = append(out, et.Type)
		}
	}
	sort.Strings(out)
	return out
}

// IsService reports whether s is one of the platform's services.
func IsService(s string) bool {
	for _, svc := range Services {
		if svc == s {
			return true
		}
	}
	return false
}

// ServiceOf returns the first segment of a dotted type.
func ServiceOf(typ string) string {
	svc, _, _ := strings.Cut(typ, ".")
	return svc
}
