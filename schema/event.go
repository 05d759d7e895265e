package schema

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/cespare/xxhash/v2"
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
	// Shared makes the strings of the Events returned share raw's bytes
	// where they can, rather than copy them: the caller then keeps raw
	// unchanged for as long as it uses them. Ingest holds each record's
	// value until its row is stored, and most of an event's strings
	// (eventId, messageId, domains, addresses) were an allocation each.
	Shared bool
	s      scanner
}

// text returns b as a string: b itself if ps.Shared, else a copy.
func (ps *Parser) text(b []byte) string {
	if ps.Shared {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return string(b)
}

// str returns a string value's text, or "" for any other kind (see text).
func (ps *Parser) str(v value) string {
	if v.kind != kindString {
		return ""
	}
	return ps.text(v.bytes())
}

// Parse validates one record value and returns the event it holds. An error
// wraps ErrInvalid and is an *InvalidError. The returned Event's Raw is raw
// itself, not a copy.
//
// It reads the record once (see scanner): checking it is JSON and noting
// the envelope's members and data's on the way. An object that repeats a
// key is read by its first.
func (ps *Parser) Parse(raw []byte) (Event, error) {
	s := &ps.s
	top, err := s.scan(raw)
	if err != nil {
		return Event{}, invalid("not JSON: %v", err)
	}
	if top != kindObject {
		return Event{}, invalid("not a JSON object: the record is a JSON %s", top)
	}
	env := &s.env
	ev := Event{Raw: raw, Livemode: true}

	id, err := envelopeString(env.id, "eventId")
	if err != nil {
		return Event{}, err
	}
	ev.ID = ps.text(id)
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
	switch lm := env.livemode; lm.kind {
	case kindNone, kindTrue:
	case kindFalse:
		ev.Livemode = false
	default:
		return Event{}, invalid("livemode must be a boolean, got %s", lm.kind)
	}
	switch env.data.kind {
	case kindNone:
		return Event{}, invalid("missing data")
	case kindObject:
	default:
		return Event{}, invalid("data must be an object, got %s", env.data.kind)
	}
	if known {
		ev.Known = true
		if err := checkFields(et, s); err != nil {
			return Event{}, err
		}
	}
	ev.Dims = ps.extractDims(ev.Service, s.data)
	return ev, nil
}

// envelopeString returns the bytes of a non-empty string field f, named key.
func envelopeString(f value, key string) ([]byte, error) {
	switch f.kind {
	case kindNone:
		return nil, invalid("missing %s", key)
	case kindString:
	default:
		return nil, invalid("%s must be a string, got %s", key, f.kind)
	}
	b := f.bytes()
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

func createdAt(v value) (int64, error) {
	switch v.kind {
	case kindNone:
		return 0, invalid("missing createdAt")
	case kindNumber:
	default:
		return 0, invalid("createdAt must be an integer of milliseconds, got %s", v.kind)
	}
	ms, ok := v.int64()
	if !ok {
		return 0, invalid("createdAt must be an integer of milliseconds, got %s", v.text)
	}
	if ms < 0 || ms >= MaxCreatedAt {
		return 0, invalid("createdAt %d is outside 1970-01-01 to 2100-01-01", ms)
	}
	return ms, nil
}

func checkFields(et *EventType, s *scanner) error {
	for _, f := range et.Fields {
		m := s.dataMember(f.Name)
		if m == nil {
			if f.Optional {
				continue
			}
			return invalid("%s: missing data.%s", et.Type, f.Name)
		}
		if !kindMatches(f.Kind, m) {
			return invalid("%s: data.%s must be %s, got %s", et.Type, f.Name, kindName(f.Kind), m.val.kind)
		}
		if len(f.Enum) > 0 {
			b := m.val.bytes()
			s := unsafe.String(unsafe.SliceData(b), len(b)) // not kept
			if !contains(f.Enum, s) {
				return invalid("%s: data.%s must be one of %s, got %q", et.Type, f.Name, strings.Join(f.Enum, ", "), s)
			}
		}
	}
	return nil
}

func kindMatches(k Kind, m *member) bool {
	v := m.val
	switch k {
	case KindString:
		return v.kind == kindString
	case KindStrings:
		if v.kind == kindString {
			return true
		}
		if v.kind != kindArray || len(m.elems) == 0 {
			return false
		}
		for _, e := range m.elems {
			if e.kind != kindString {
				return false
			}
		}
		return true
	case KindNumber:
		return v.kind == kindNumber
	case KindInteger:
		_, ok := v.int64()
		return ok
	case KindBool:
		return v.kind == kindTrue || v.kind == kindFalse
	case KindObject:
		return v.kind == kindObject
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

// extractDims reads the fields queries need from data's members. It runs
// on unknown types too, so a new type with familiar fields is grouped like
// its siblings; a field of an unexpected JSON type is left at its zero
// value.
func (ps *Parser) extractDims(service string, data []member) Dims {
	var f struct {
		messageID, bounceType, npa, voice, format, from   value
		hasCarrier, hasInventory, textLength, durationSec value
		to                                                *member
	}
	for i, m := range data {
		var dst *value
		switch string(m.key) {
		case "messageId":
			dst = &f.messageID
		case "bounceType":
			dst = &f.bounceType
		case "npa":
			dst = &f.npa
		case "voice":
			dst = &f.voice
		case "format":
			dst = &f.format
		case "to":
			if f.to == nil {
				f.to = &data[i]
			}
			continue
		case "from":
			dst = &f.from
		case "hasCarrier":
			dst = &f.hasCarrier
		case "hasInventory":
			dst = &f.hasInventory
		case "textLength":
			dst = &f.textLength
		case "durationSec":
			dst = &f.durationSec
		default:
			continue
		}
		if dst.kind == kindNone { // the first of a repeated key
			*dst = m.val
		}
	}
	d := Dims{
		MessageID:  ps.str(f.messageID),
		BounceType: ps.str(f.bounceType),
		NPA:        ps.str(f.npa),
		Voice:      ps.str(f.voice),
		Format:     ps.str(f.format),
	}
	if d.MessageID != "" {
		d.MessageHash = xxhash.Sum64String(d.MessageID)
	}
	if service == "send" {
		d.Recipients, d.RecipientDomain = ps.recipientsOf(f.to)
		d.SenderDomain = domainOf(ps.str(f.from))
	}
	d.HasCarrier = f.hasCarrier.kind == kindTrue
	d.HasInventory = f.hasInventory.kind == kindTrue
	if f.textLength.kind == kindNumber {
		d.TextLength, _ = f.textLength.int64()
	}
	if f.durationSec.kind == kindNumber {
		d.DurationSec = f.durationSec.float64()
	}
	return d
}

// recipientsOf reads data.to (nil without one), one address or a list:
// every address, NormalizeAddress'd, and the domain of the first element if
// it is a string (the recipient domain queries group by).
func (ps *Parser) recipientsOf(to *member) (addrs []string, firstDomain string) {
	if to == nil {
		return nil, ""
	}
	list := []value{to.val}
	if to.val.kind == kindArray {
		list = to.elems
	}
	for i, a := range list {
		if a.kind != kindString {
			continue
		}
		s := ps.str(a)
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
