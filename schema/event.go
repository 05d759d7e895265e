package schema

import (
	"errors"
	"fmt"
	"strconv"
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
	if v.Type() != fastjson.TypeObject {
		return Event{}, invalid("not a JSON object: the record is a JSON %s", v.Type())
	}
	ev := Event{Raw: raw, Livemode: true}

	if ev.ID, err = envelopeString(v, "eventId"); err != nil {
		return Event{}, err
	}
	if err := checkEventID(ev.ID); err != nil {
		return Event{}, err
	}
	if ev.Type, err = envelopeString(v, "type"); err != nil {
		return Event{}, err
	}
	if err := checkType(ev.Type); err != nil {
		return Event{}, err
	}
	if ev.Service, err = envelopeString(v, "service"); err != nil {
		return Event{}, err
	}
	if want := ServiceOf(ev.Type); ev.Service != want {
		return Event{}, invalid("service %q does not match type %q (want %q)", ev.Service, ev.Type, want)
	}
	if ev.CreatedAt, err = createdAt(v.Get("createdAt")); err != nil {
		return Event{}, err
	}
	if lm := v.Get("livemode"); lm != nil {
		switch lm.Type() {
		case fastjson.TypeTrue:
		case fastjson.TypeFalse:
			ev.Livemode = false
		default:
			return Event{}, invalid("livemode must be a boolean, got %s", lm.Type())
		}
	}
	data := v.Get("data")
	if data == nil {
		return Event{}, invalid("missing data")
	}
	if data.Type() != fastjson.TypeObject {
		return Event{}, invalid("data must be an object, got %s", data.Type())
	}
	if et, ok := byType[ev.Type]; ok {
		ev.Known = true
		if err := checkFields(et, data); err != nil {
			return Event{}, err
		}
	}
	ev.Dims = extractDims(ev.Service, data)
	return ev, nil
}

func envelopeString(v *fastjson.Value, key string) (string, error) {
	f := v.Get(key)
	if f == nil {
		return "", invalid("missing %s", key)
	}
	if f.Type() != fastjson.TypeString {
		return "", invalid("%s must be a string, got %s", key, f.Type())
	}
	b, _ := f.StringBytes()
	if len(b) == 0 {
		return "", invalid("empty %s", key)
	}
	return string(b), nil
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
	text := v.String()
	ms, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, invalid("createdAt must be an integer of milliseconds, got %s", text)
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
		_, err := strconv.ParseInt(v.String(), 10, 64)
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
func extractDims(service string, data *fastjson.Value) Dims {
	d := Dims{
		MessageID:  stringField(data, "messageId"),
		BounceType: stringField(data, "bounceType"),
		NPA:        stringField(data, "npa"),
		Voice:      stringField(data, "voice"),
		Format:     stringField(data, "format"),
	}
	if d.MessageID != "" {
		d.MessageHash = xxhash.Sum64String(d.MessageID)
	}
	if service == "send" {
		d.RecipientDomain = domainOf(firstRecipient(data.Get("to")))
		d.Recipients = addressesOf(data.Get("to"))
		d.SenderDomain = domainOf(stringField(data, "from"))
	}
	if v := data.Get("hasCarrier"); v != nil {
		d.HasCarrier = v.Type() == fastjson.TypeTrue
	}
	if v := data.Get("hasInventory"); v != nil {
		d.HasInventory = v.Type() == fastjson.TypeTrue
	}
	if v := data.Get("textLength"); v != nil && v.Type() == fastjson.TypeNumber {
		d.TextLength = v.GetInt64()
	}
	if v := data.Get("durationSec"); v != nil && v.Type() == fastjson.TypeNumber {
		d.DurationSec = v.GetFloat64()
	}
	return d
}

func stringField(data *fastjson.Value, key string) string {
	v := data.Get(key)
	if v == nil || v.Type() != fastjson.TypeString {
		return ""
	}
	b, _ := v.StringBytes()
	return string(b)
}

func firstRecipient(v *fastjson.Value) string {
	if v == nil {
		return ""
	}
	if v.Type() == fastjson.TypeArray {
		arr, _ := v.Array()
		if len(arr) == 0 {
			return ""
		}
		v = arr[0]
	}
	if v.Type() != fastjson.TypeString {
		return ""
	}
	b, _ := v.StringBytes()
	return string(b)
}

// addressesOf reads every address of data.to, one or a list.
func addressesOf(v *fastjson.Value) []string {
	if v == nil {
		return nil
	}
	list := []*fastjson.Value{v}
	if v.Type() == fastjson.TypeArray {
		list, _ = v.Array()
	}
	var out []string
	for _, a := range list {
		if a.Type() != fastjson.TypeString {
			continue
		}
		b, _ := a.StringBytes()
		if addr := NormalizeAddress(string(b)); addr != "" {
			out = append(out, addr)
		}
	}
	return out
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
	return addr[:at+1] + strings.ToLower(addr[at+1:])
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
