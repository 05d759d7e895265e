package schema

import (
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fastjson"
)

// fastjsonParse is Parse as it was before it scanned records itself, on
// fastjson's validator and parser: the oracle FuzzParseAsBefore holds the
// scanner to. Its messages for JSON that is not JSON differ; its answers
// for everything else are the same.
func fastjsonParse(p *fastjson.Parser, raw []byte) (Event, error) {
	// fastjson's parser is lenient about numbers ("1-2"); its validator is
	// strict, so validate first.
	if err := fastjson.ValidateBytes(raw); err != nil {
		return Event{}, invalid("not JSON: %v", err)
	}
	v, err := p.ParseBytes(raw)
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
			fjFirst(&env.id, v)
		case "type":
			fjFirst(&env.typ, v)
		case "service":
			fjFirst(&env.service, v)
		case "createdAt":
			fjFirst(&env.createdAt, v)
		case "livemode":
			fjFirst(&env.livemode, v)
		case "data":
			fjFirst(&env.data, v)
		}
	})
	ev := Event{Raw: raw, Livemode: true}

	id, err := fjEnvelopeString(env.id, "eventId")
	if err != nil {
		return Event{}, err
	}
	ev.ID = string(id)
	if err := checkEventID(ev.ID); err != nil {
		return Event{}, err
	}
	typ, err := fjEnvelopeString(env.typ, "type")
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
	svc, err := fjEnvelopeString(env.service, "service")
	if err != nil {
		return Event{}, err
	}
	ev.Service = ServiceOf(ev.Type)
	if string(svc) != ev.Service {
		return Event{}, invalid("service %q does not match type %q (want %q)", svc, ev.Type, ev.Service)
	}
	if ev.CreatedAt, err = fjCreatedAt(env.createdAt); err != nil {
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
		if err := fjCheckFields(et, env.data); err != nil {
			return Event{}, err
		}
	}
	ev.Dims = fjExtractDims(ev.Service, data)
	return ev, nil
}

func fjFirst(dst **fastjson.Value, v *fastjson.Value) {
	if *dst == nil {
		*dst = v
	}
}

func fjEnvelopeString(f *fastjson.Value, key string) ([]byte, error) {
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

func fjCreatedAt(v *fastjson.Value) (int64, error) {
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

func fjCheckFields(et *EventType, data *fastjson.Value) error {
	for _, f := range et.Fields {
		v := data.Get(f.Name)
		if v == nil {
			if f.Optional {
				continue
			}
			return invalid("%s: missing data.%s", et.Type, f.Name)
		}
		if !fjKindMatches(f.Kind, v) {
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

func fjKindMatches(k Kind, v *fastjson.Value) bool {
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

func fjExtractDims(service string, data *fastjson.Object) Dims {
	var f struct {
		messageID, bounceType, npa, voice, format, to, from *fastjson.Value
		hasCarrier, hasInventory, textLength, durationSec   *fastjson.Value
	}
	data.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case "messageId":
			fjFirst(&f.messageID, v)
		case "bounceType":
			fjFirst(&f.bounceType, v)
		case "npa":
			fjFirst(&f.npa, v)
		case "voice":
			fjFirst(&f.voice, v)
		case "format":
			fjFirst(&f.format, v)
		case "to":
			fjFirst(&f.to, v)
		case "from":
			fjFirst(&f.from, v)
		case "hasCarrier":
			fjFirst(&f.hasCarrier, v)
		case "hasInventory":
			fjFirst(&f.hasInventory, v)
		case "textLength":
			fjFirst(&f.textLength, v)
		case "durationSec":
			fjFirst(&f.durationSec, v)
		}
	})
	d := Dims{
		MessageID:  fjStringOf(f.messageID),
		BounceType: fjStringOf(f.bounceType),
		NPA:        fjStringOf(f.npa),
		Voice:      fjStringOf(f.voice),
		Format:     fjStringOf(f.format),
	}
	if d.MessageID != "" {
		d.MessageHash = xxhash.Sum64String(d.MessageID)
	}
	if service == "send" {
		d.Recipients, d.RecipientDomain = fjRecipientsOf(f.to)
		d.SenderDomain = domainOf(fjStringOf(f.from))
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

func fjStringOf(v *fastjson.Value) string {
	if v == nil || v.Type() != fastjson.TypeString {
		return ""
	}
	b, _ := v.StringBytes()
	return string(b)
}

func fjRecipientsOf(v *fastjson.Value) (addrs []string, firstDomain string) {
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
