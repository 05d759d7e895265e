package schema

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fastjson"
)

// Limits of the envelope.
const (
	// MaxEventIDLen bounds an eventId in bytes. EventIDs travel as the
	// webhook-id header of every delivery, so they are also limited to
	// printable ASCII without spaces (see checkEventID).
	MaxEventIDLen = 128
	// DefaultMaxEventBytes is the largest record ingest stores as an event
	// unless told otherwise; larger ones are dead-lettered.
	DefaultMaxEventBytes = 256 << 10
	MaxTypeLen           = 128
	// MaxCreatedAt is 2100-01-01T00:00:00Z in ms: ClickHouse's DateTime, which
	// partitions the table, ends in 2106.
	MaxCreatedAt = 4102444800000
)

// ErrInvalid is wrapped by every validation error, so callers can tell a bad
// record (dead-letter it) from a failure of their own.
var ErrInvalid = errors.New("invalid event")

// InvalidError says why a record is not a valid event. Reason is the text the
// dead-letter topic carries in its "error" header.
type InvalidError struct {
	Reason string
}

func (e *InvalidError) Error() string { return "invalid event: " + e.Reason }

// Unwrap lets errors.Is(err, ErrInvalid) match.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

func invalid(format string, args ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

// Event is a validated event: the envelope, the dimensions queries need, and
// the record's original bytes, which are what is stored and replayed.
type Event struct {
	ID        string
	Type      string
	Service   string
	CreatedAt int64 // milliseconds since the epoch
	Livemode  bool
	Known     bool // the type is in the catalog
	Dims      Dims
	Raw       []byte
}

// Dims are the data fields queries group and sum by, extracted at write time
// so no query parses JSON. A field the event does not carry is its zero value.
type Dims struct {
	MessageID string
	// MessageHash is a 64-bit hash of MessageID (0 without one): distinct
	// counts over it run about a third faster than over the strings. Two
	// messages collide with odds of about n²/2^65 among n, 3e-6 for ten
	// million; ClickHouse's own uniqExact keeps 128-bit hashes of strings.
	MessageHash     uint64
	RecipientDomain string   // lowercased domain of the first recipient (send only)
	Recipients      []string // every address of data.to, NormalizeAddress'd (send only)
	SenderDomain    string   // lowercased domain of the sender (send only)
	BounceType      string
	HasCarrier      bool
	HasInventory    bool
	NPA             string
	Voice           string
	Format          string
	TextLength      int64
	DurationSec     float64
}

// Parser validates raw record values. It reuses its buffers, so it is not
// safe for concurrent use: give each goroutine its own. The zero value is
// ready to use.
type Parser struct {
	p fastjson.Parser
}

// Parse validates one record value and returns the event it holds. An error
// wraps ErrInvalid and is an *InvalidError. The returned Event's Raw is raw
// itself, not a copy.
//
// It reads each object once: a Visit over the envelope and one over data
// pick the fields it needs (the first of each name, as a lookup by name
// would find), rather than a lookup per field, each a scan of the keys.
func (ps *Parser) Parse(raw []byte) (Event, error) {
	// fastjson's parser is lenient about numbers ("1-2"); its validator is
	// strict, so validate first.
	if err := fastjson.ValidateBytes(raw); err != nil {
		return Event{}, invalid("not JSON: %v", err)
	}
	v, err := ps.p.ParseBytes(raw)
	if err != nil {
		return Event{}, invalid("not JSON: %v", err)
	}
	obj, err := v.Object()
	if err != nil {
		return Event{}, invalid("not a JSON object: the record is a JSON %s", v.Type())
	}
	var env struct{ id, typ, service, createdAt, livemode, data *fastjson.Value }
	obj.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case "eventId":
			first(&env.id, v)
		case "type":
			first(&env.typ, v)
		case "service":
			first(&env.service, v)
		case "createdAt":
			first(&env.createdAt, v)
		case "livemode":
			first(&env.livemode, v)
		case "data":
			first(&env.data, v)
		}
	})
	ev := Event{Raw: raw, Livemode: true}

	id, err := envelopeString(env.id, "eventId")
	if err != nil {
		return Event{}, err
	}
	ev.ID = string(id)
	if err := checkEventID(ev.ID); err != nil {
		return Event{}, err
	}
	typ, err := envelopeString(env.typ, "type")
	if err != nil {
		return Event{}, err
	}
	// A catalog type is well formed, and its name need not be copied.
	et, known := byType[string(typ)]
	if known {
		ev.Type = et.Type
	} else {
		ev.Type = string(typ)
		if err := checkType(ev.Type); err != nil {
			return Event{}, err
		}
	}
	svc, err := envelopeString(env.service, "service")
	if err != nil {
		return Event{}, err
	}
	ev.Service = ServiceOf(ev.Type)
	if string(svc) != ev.Service {
		return Event{}, invalid("service %q does not match type %q (want %q)", svc, ev.Type, ev.Service)
	}
	if ev.CreatedAt, err = createdAt(env.createdAt); err != nil {
		return Event{}, err
	}
	if lm := env.livemode; lm != nil {
		switch lm.Type() {
		case fastjson.TypeTrue:
		case fastjson.TypeFalse:
			ev.Livemode = false
		default:
			return Event{}, invalid("livemode must be a boolean, got %s", lm.Type())
		}
	}
	if env.data == nil {
		return Event{}, invalid("missing data")
	}
	data, err := env.data.Object()
	if err != nil {
		return Event{}, invalid("data must be an object, got %s", env.data.Type())
	}
	if known {
		ev.Known = true
		if err := checkFields(et, env.data); err != nil {
			return Event{}, err
		}
	}
	ev.Dims = extractDims(ev.Service, data)
	return ev, nil
}

// first keeps the first value of a key an object repeats.
func first(dst **fastjson.Value, v *fastjson.Value) {
	if *dst == nil {
		*dst = v
	}
}

// envelopeString returns the bytes of a non-empty string field f, named key.
func envelopeString(f *fastjson.Value, key string) ([]byte, error) {
	if f == nil {
		return nil, invalid("missing %s", key)
	}
	if f.Type() != fastjson.TypeString {
		return nil, invalid("%s must be a string, got %s", key, f.Type())
	}
	b, _ := f.StringBytes()
	if len(b) == 0 {
		return nil, invalid("empty %s", key)
	}
	return b, nil
}

// checkEventID accepts printable ASCII without spaces, at most
// MaxEventIDLen bytes: an eventId is sent as an HTTP header value on every
// delivery, where a control character makes the request impossible to build.
func checkEventID(id string) error {
	if len(id) > MaxEventIDLen {
		return invalid("eventId is longer than %d bytes", MaxEventIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return invalid("eventId has %q at byte %d: want printable ASCII without spaces", rune(c), i)
		}
	}
	return nil
}

// checkType accepts lowercase dotted names of at least two segments, each
// starting with a letter: "send.email.bounced", "platform.test".
func checkType(t string) error {
	if len(t) > MaxTypeLen {
		return invalid("type is longer than %d characters", MaxTypeLen)
	}
	segments := 0
	for seg := range strings.SplitSeq(t, ".") {
		segments++
		if seg == "" || seg[0] < 'a' || seg[0] > 'z' {
			return invalid("malformed type %q: want lowercase dotted segments like send.email.bounced", t)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
				return invalid("malformed type %q: want lowercase dotted segments like send.email.bounced", t)
			}
		}
	}
	if segments < 2 {
		return invalid("malformed type %q: want at least two dotted segments", t)
	}
	return nil
}

func createdAt(v *fastjson.Value) (int64, error) {
	if v == nil {
		return 0, invalid("missing createdAt")
	}
	if v.Type() != fastjson.TypeNumber {
		return 0, invalid("createdAt must be an integer of milliseconds, got %s", v.Type())
	}
	ms, err := v.Int64() // strconv.ParseInt's answer, without marshalling v
	if err != nil {
		return 0, invalid("createdAt must be an integer of milliseconds, got %s", v)
	}
	if ms < 0 || ms >= MaxCreatedAt {
		return 0, invalid("createdAt %d is outside 1970-01-01 to 2100-01-01", ms)
	}
	return ms, nil
}

func checkFields(et *EventType, data *fastjson.Value) error {
	for _, f := range et.Fields {
		v := data.Get(f.Name)
		if v == nil {
			if f.Optional {
				continue
			}
			return invalid("%s: missing data.%s", et.Type, f.Name)
		}
		if !kindMatches(f.Kind, v) {
			return invalid("%s: data.%s must be %s, got %s", et.Type, f.Name, kindName(f.Kind), v.Type())
		}
		if len(f.Enum) > 0 {
			s := string(v.GetStringBytes())
			if !contains(f.Enum, s) {
				return invalid("%s: data.%s must be one of %s, got %q", et.Type, f.Name, strings.Join(f.Enum, ", "), s)
			}
		}
	}
	return nil
}

func kindMatches(k Kind, v *fastjson.Value) bool {
	switch k {
	case KindString:
		return v.Type() == fastjson.TypeString
	case KindStrings:
		if v.Type() == fastjson.TypeString {
			return true
		}
		arr, err := v.Array()
		if err != nil || len(arr) == 0 {
			return false
		}
		for _, e := range arr {
			if e.Type() != fastjson.TypeString {
				return false
			}
		}
		return true
	case KindNumber:
		return v.Type() == fastjson.TypeNumber
	case KindInteger:
		if v.Type() != fastjson.TypeNumber {
			return false
		}
		_, err := v.Int64()
		return err == nil
	case KindBool:
		return v.Type() == fastjson.TypeTrue || v.Type() == fastjson.TypeFalse
	case KindObject:
		return v.Type() == fastjson.TypeObject
	}
	return false
}

func kindName(k Kind) string {
	switch k {
	case KindStrings:
		return "a string or a non-empty array of strings"
	case KindInteger:
		return "an integer"
	case KindObject:
		return "an object"
	}
	return "a " + string(k)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// extractDims reads the fields queries need. It runs on unknown types too, so
// a new type with familiar fields is grouped like its siblings; a field of an
// unexpected JSON type is left at its zero value.
func extractDims(service string, data *fastjson.Object) Dims {
	var f struct {
		messageID, bounceType, npa, voice, format, to, from *fastjson.Value
		hasCarrier, hasInventory, textLength, durationSec   *fastjson.Value
	}
	data.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case "messageId":
			first(&f.messageID, v)
		case "bounceType":
			first(&f.bounceType, v)
		case "npa":
			first(&f.npa, v)
		case "voice":
			first(&f.voice, v)
		case "format":
			first(&f.format, v)
		case "to":
			first(&f.to, v)
		case "from":
			first(&f.from, v)
		case "hasCarrier":
			first(&f.hasCarrier, v)
		case "hasInventory":
			first(&f.hasInventory, v)
		case "textLength":
			first(&f.textLength, v)
		case "durationSec":
			first(&f.durationSec, v)
		}
	})
	d := Dims{
		MessageID:  stringOf(f.messageID),
		BounceType: stringOf(f.bounceType),
		NPA:        stringOf(f.npa),
		Voice:      stringOf(f.voice),
		Format:     stringOf(f.format),
	}
	if d.MessageID != "" {
		d.MessageHash = xxhash.Sum64String(d.MessageID)
	}
	if service == "send" {
		d.Recipients, d.RecipientDomain = recipientsOf(f.to)
		d.SenderDomain = domainOf(stringOf(f.from))
	}
	if v := f.hasCarrier; v != nil {
		d.HasCarrier = v.Type() == fastjson.TypeTrue
	}
	if v := f.hasInventory; v != nil {
		d.HasInventory = v.Type() == fastjson.TypeTrue
	}
	if v := f.textLength; v != nil && v.Type() == fastjson.TypeNumber {
		d.TextLength = v.GetInt64()
	}
	if v := f.durationSec; v != nil && v.Type() == fastjson.TypeNumber {
		d.DurationSec = v.GetFloat64()
	}
	return d
}

// stringOf returns v's text if v is a string, else "".
func stringOf(v *fastjson.Value) string {
	if v == nil || v.Type() != fastjson.TypeString {
		return ""
	}
	b, _ := v.StringBytes()
	return string(b)
}

// recipientsOf reads data.to, one address or a list: every address,
// NormalizeAddress'd, and the domain of the first element if it is a
// string (the recipient domain queries group by).
func recipientsOf(v *fastjson.Value) (addrs []string, firstDomain string) {
	if v == nil {
		return nil, ""
	}
	list := []*fastjson.Value{v}
	if v.Type() == fastjson.TypeArray {
		list, _ = v.Array()
	}
	for i, a := range list {
		if a.Type() != fastjson.TypeString {
			continue
		}
		b, _ := a.StringBytes()
		s := string(b)
		if i == 0 {
			firstDomain = domainOf(s)
		}
		if addr := NormalizeAddress(s); addr != "" {
			addrs = append(addrs, addr)
		}
	}
	return addrs, firstDomain
}

// NormalizeAddress returns the address of "Ann <ann@Example.com>" or
// "ann@Example.com" as it is stored and matched: the part between angle
// brackets if any, trimmed, its domain (after the last @) lowercased and
// its local part as given. The SQL of migration 13 computes the same from
// the events stored before it.
func NormalizeAddress(addr string) string {
	if lt := strings.IndexByte(addr, '<'); lt >= 0 {
		if gt := strings.IndexByte(addr[lt:], '>'); gt >= 0 {
			addr = addr[lt+1 : lt+gt]
		}
	}
	addr = strings.TrimSpace(addr)
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	domain := addr[at+1:]
	lower := strings.ToLower(domain)
	if lower == domain {
		return addr // already lowercase: no copy
	}
	return addr[:at+1] + lower
}

// domainOf returns the lowercased domain of an address such as
// "Ann <ann@Example.com>" or "ann@example.com".
func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	d := addr[at+1:]
	if end := strings.IndexAny(d, "> \t"); end >= 0 {
		d = d[:end]
	}
	return strings.ToLower(d)
}
