package schema

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// A record is read in one pass over its bytes: scan checks it is JSON
// (RFC 8259, what encoding/json's Valid accepts) and, on the way, notes
// where the values Parse needs are: the envelope's members and the members
// of its data object, with the elements of data's arrays (data.to). Those
// values point into the record; nothing is copied until a string is needed.

// maxDepth is how deeply a record may nest objects and arrays (fastjson's
// limit, which Parse had before): a record nested deeper is refused before
// it costs a deep recursion.
const maxDepth = 300

// keepMembers is the most data members and array elements a scanner keeps
// room for from one record to the next.
const keepMembers = 1024

// kind is a JSON value's type.
type kind uint8

const (
	kindNone kind = iota // absent
	kindString
	kindNumber
	kindTrue
	kindFalse
	kindNull
	kindObject
	kindArray
)

func (k kind) String() string {
	return [...]string{"none", "string", "number", "true", "false", "null", "object", "array"}[k]
}

// value is one JSON value of a record, where it is in the record.
type value struct {
	kind kind
	// esc says a string holds escapes.
	esc bool
	// text is a string's bytes between its quotes, escapes as written, or
	// a number's text.
	text []byte
}

// member is one member of data, its key unescaped.
type member struct {
	key []byte
	val value
	// elems are the elements of an array val.
	elems []value
	// lo and hi bound elems in scanner.elems.
	lo, hi int
}

// envelope is the first value of each envelope member Parse reads.
type envelope struct {
	id, typ, service, createdAt, livemode, data value
}

// scanner holds one record's scan; its slices are reused from record to
// record.
type scanner struct {
	b     []byte
	i     int
	env   envelope
	data  []member
	elems []value
	// seenData is set once the envelope's first data member is met.
	seenData bool
}

// role is what a scanned value is to the record.
type role uint8

const (
	roleOther    role = iota
	roleEnvelope      // the record itself
	roleData          // the envelope's (first) data
	roleMember        // a value of a member of data: an array's elements are noted
)

// scan reads b, a whole record. The top-level value's kind is returned
// whatever it is; an error says where b stops being JSON.
func (s *scanner) scan(b []byte) (kind, error) {
	// The last record's members point into its bytes: cleared, they keep
	// no record alive that is not the one in hand.
	clear(s.data)
	clear(s.elems)
	data, elems := s.data[:0], s.elems[:0]
	if cap(data) > keepMembers || cap(elems) > keepMembers {
		data, elems = nil, nil // one large record's, not kept for every next one
	}
	*s = scanner{b: b, data: data, elems: elems}
	s.ws()
	v, err := s.value(0, roleEnvelope)
	if err != nil {
		return kindNone, err
	}
	if s.ws(); s.i < len(s.b) {
		return kindNone, s.unexpected("after the top-level value")
	}
	for i := range s.data {
		m := &s.data[i]
		m.elems = s.elems[m.lo:m.hi]
	}
	return v.kind, nil
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) unexpected(where string) error {
	if s.i >= len(s.b) {
		return fmt.Errorf("unexpected end %s", where)
	}
	return fmt.Errorf("unexpected %q at byte %d %s", s.b[s.i], s.i, where)
}

// value scans the value at s.i, at depth (the objects and arrays around
// it), and returns it.
func (s *scanner) value(depth int, r role) (value, error) {
	if s.i >= len(s.b) {
		return value{}, s.unexpected("where a value belongs")
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return value{kind: kindObject}, s.object(depth+1, r)
	case c == '[':
		return value{kind: kindArray}, s.array(depth+1, r)
	case c == '"':
		text, esc, err := s.str()
		return value{kind: kindString, text: text, esc: esc}, err
	case c == '-' || c >= '0' && c <= '9':
		text, err := s.number()
		return value{kind: kindNumber, text: text}, err
	case c == 't':
		return value{kind: kindTrue}, s.literal("true")
	case c == 'f':
		return value{kind: kindFalse}, s.literal("false")
	case c == 'n':
		return value{kind: kindNull}, s.literal("null")
	}
	return value{}, s.unexpected("where a value belongs")
}

func (s *scanner) literal(lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return fmt.Errorf("bad literal at byte %d: want %s", s.i, lit)
	}
	s.i += len(lit)
	return nil
}

func (s *scanner) object(depth int, r role) error {
	if depth > maxDepth {
		return fmt.Errorf("nested deeper than %d at byte %d", maxDepth, s.i)
	}
	s.i++ // {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return s.unexpected("where a key belongs")
		}
		key, esc, err := s.str()
		if err != nil {
			return err
		}
		if s.ws(); s.i >= len(s.b) || s.b[s.i] != ':' {
			return s.unexpected("after a key")
		}
		s.i++
		s.ws()
		if err := s.member(depth, r, key, esc); err != nil {
			return err
		}
		if more, err := s.more('}', "in an object"); !more {
			return err
		}
	}
}

// member scans the value of the member key (esc: with escapes) of an
// object with role r, noting it if Parse needs it.
func (s *scanner) member(depth int, r role, key []byte, esc bool) error {
	if esc && (r == roleEnvelope || r == roleData) {
		key = unescape(nil, key)
	}
	switch r {
	case roleEnvelope:
		var dst *value
		child := roleOther
		switch string(key) {
		case "eventId":
			dst = &s.env.id
		case "type":
			dst = &s.env.typ
		case "service":
			dst = &s.env.service
		case "createdAt":
			dst = &s.env.createdAt
		case "livemode":
			dst = &s.env.livemode
		case "data":
			if !s.seenData {
				s.seenData, dst, child = true, &s.env.data, roleData
			}
		}
		v, err := s.value(depth, child)
		if dst != nil && dst.kind == kindNone {
			*dst = v
		}
		return err
	case roleData:
		lo := len(s.elems)
		v, err := s.value(depth, roleMember)
		s.data = append(s.data, member{key: key, val: v, lo: lo, hi: len(s.elems)})
		return err
	}
	_, err := s.value(depth, roleOther)
	return err
}

func (s *scanner) array(depth int, r role) error {
	if depth > maxDepth {
		return fmt.Errorf("nested deeper than %d at byte %d", maxDepth, s.i)
	}
	s.i++ // [
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		v, err := s.value(depth, roleOther)
		if err != nil {
			return err
		}
		if r == roleMember {
			s.elems = append(s.elems, v)
		}
		if more, err := s.more(']', "in an array"); !more {
			return err
		}
	}
}

// more reads what follows a member of an object or an element of an
// array: a comma, and more follow, or close, which ends it; where (in an
// object, in an array) names it in an error.
func (s *scanner) more(close byte, where string) (bool, error) {
	s.ws()
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
			return true, nil
		case close:
			s.i++
			return false, nil
		}
	}
	return false, s.unexpected(where)
}

// str scans the string at s.i and returns its bytes between the quotes
// and whether it holds escapes.
func (s *scanner) str() ([]byte, bool, error) {
	s.i++ // "
	start, esc := s.i, false
	for s.i < len(s.b) {
		s.i = plainRun(s.b, s.i)
		if s.i == len(s.b) {
			break
		}
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], esc, nil
		case c == '\\':
			esc = true
			if s.i+1 >= len(s.b) {
				s.i++
				return nil, false, s.unexpected("in a string")
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				for k := 2; k < 6; k++ {
					if s.i+k >= len(s.b) || !isHex(s.b[s.i+k]) {
						s.i += k
						return nil, false, s.unexpected("in a \\u escape")
					}
				}
				s.i += 6
			default:
				s.i++
				return nil, false, s.unexpected("after a backslash")
			}
		default: // a control character
			return nil, false, s.unexpected("in a string")
		}
	}
	return nil, false, s.unexpected("in a string")
}

// plainRun returns the index of the first byte at or after i that ends a
// run of a string's plain bytes (see stringStop), or len(b). It looks at
// eight bytes at a time while eight are left: a word has such a byte if
// one is below 0x20, or one equals '"' or '\\' (a zero byte of the word
// xor the byte repeated), by the bit tricks of Hacker's Delight 6-1.
func plainRun(b []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		quote, backslash := w^(ones*'"'), w^(ones*'\\')
		stop := (w - ones*0x20) | (quote-ones)&^quote | (backslash-ones)&^backslash
		if stop&^w&highs != 0 {
			break
		}
	}
	for i < len(b) && !stringStop[b[i]] {
		i++
	}
	return i
}

// stringStop holds the bytes that end a run of a string's plain bytes: its
// closing quote, an escape's backslash and the control characters JSON
// refuses in a string.
var stringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// number scans the number at s.i: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() ([]byte, error) {
	start := s.i
	if s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.digits() == 0:
		return nil, s.unexpected("in a number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return nil, s.unexpected("in a number's fraction")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return nil, s.unexpected("in a number's exponent")
		}
	}
	return s.b[start:s.i], nil
}

func (s *scanner) digits() int {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

// dataMember returns the first member of data named key, or nil.
func (s *scanner) dataMember(key string) *member {
	for i := range s.data {
		if string(s.data[i].key) == key {
			return &s.data[i]
		}
	}
	return nil
}

// bytes returns a string value's bytes, unescaped: v.text itself when it
// holds no escapes.
func (v value) bytes() []byte {
	if !v.esc {
		return v.text
	}
	return unescape(nil, v.text)
}

// int64 returns a number's value if it is an integer that fits in int64.
func (v value) int64() (int64, bool) {
	t := v.text
	if v.kind != kindNumber || len(t) == 0 {
		return 0, false
	}
	neg := t[0] == '-'
	if neg {
		t = t[1:]
	}
	if len(t) == 0 {
		return 0, false
	}
	var n uint64 // at most 1<<63 + 9: no overflow
	for _, c := range t {
		if c < '0' || c > '9' || n > (1<<63)/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	switch {
	case n < 1<<63 && neg:
		return -int64(n), true
	case n < 1<<63:
		return int64(n), true
	case n == 1<<63 && neg:
		return math.MinInt64, true
	}
	return 0, false
}

// float64 returns a number's value, ±Inf beyond float64's range.
func (v value) float64() float64 {
	f, _ := strconv.ParseFloat(string(v.text), 64) // valid JSON numbers parse
	return f
}

// unescape appends to dst the text of a JSON string's bytes between its
// quotes, escapes and all, as encoding/json decodes it: a \u escape of a
// lone surrogate reads as U+FFFD.
func unescape(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		c := b[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch e := b[i+1]; e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(b[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) {
				// A pair reads as one rune; anything else as U+FFFD.
				pair := rune(utf8.RuneError)
				if i+6 <= len(b) && b[i] == '\\' && b[i+1] == 'u' {
					pair = utf16.DecodeRune(r, hex4(b[i+2:i+6]))
				}
				if pair != utf8.RuneError {
					i += 6
				}
				r = pair
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // " \ /
			dst = append(dst, e)
		}
		i += 2
	}
	return dst
}

// hex4 reads four hex digits scan has checked.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		switch {
		case c <= '9':
			c -= '0'
		case c <= 'F':
			c -= 'A' - 10
		default:
			c -= 'a' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
