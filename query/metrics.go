package query

import (
	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/schema"
)

// counts are the sums one (bucket or group, type) row of the stats query
// carries. Which of them mean something depends on the type: hard is only
// non-zero for bounces, textLength for speech, and so on.
type counts struct {
	n, hard, soft, carrier, inventory uint64
	textLength                        int64
	duration                          float64
	unique                            uint64 // distinct messageId (opened and clicked only)
}

func (c *counts) add(o counts) {
	c.n += o.n
	c.hard += o.hard
	c.soft += o.soft
	c.carrier += o.carrier
	c.inventory += o.inventory
	c.textLength += o.textLength
	c.duration += o.duration
	c.unique += o.unique
}

// Rate is a ratio that explains itself. Value is null when Denominator is 0.
type Rate = httpapi.Rate

// Totals is the block of numbers for the whole range, one bucket or one group.
type Totals struct {
	Events  uint64             `json:"events"`
	ByType  map[string]uint64  `json:"by_type"`
	Metrics map[string]float64 `json:"metrics"`
	Rates   map[string]Rate    `json:"rates"`
}

// rateDef is one rate: numerator and denominator are metric names. A
// proportion counts successes out of trials, so periods compare by a
// two-proportion z-test.
type rateDef struct {
	name, num, den string
	proportion     bool
}

// serviceDef says how a service's metrics come from the per-type counts.
type serviceDef struct {
	metrics func(by map[string]counts) map[string]float64
	rates   []rateDef
	// groupBy maps each group_by value to its column: a fixed allow-list.
	groupBy map[string]string
	// distinct: the service's schema.DistinctTypes have their distinct
	// messageIds counted.
	distinct bool
	// sums are the additive columns the service's metrics need.
	sums additive
}

// additive says which of counts' additive columns a service reads: the
// others are zeros of the right type, so a service reads only the columns
// its metrics need.
type additive struct{ bounces, lookups, text, duration bool }

// sql is the additive columns in counts' order (n, hard, soft, carrier,
// inventory, textLength, duration, unique) as the events table gives them,
// or as the rollup does (schema.Rollup), which sums them per row.
func (a additive) sql(rollup bool) string {
	pick := func(use bool, events, fromRollup, zero string) string {
		switch {
		case !use:
			return zero
		case rollup:
			return fromRollup
		}
		return events
	}
	return pick(true, "count()", "sum(events)", "") + ", " +
		pick(a.bounces, "countIf(bounce_type = 'hard'), countIf(bounce_type = 'soft')",
			"sumIf(events, bounce_type = 'hard'), sumIf(events, bounce_type = 'soft')", "toUInt64(0), toUInt64(0)") + ", " +
		pick(a.lookups, "countIf(has_carrier = 1), countIf(has_inventory = 1)", "sum(carrier), sum(inventory)", "toUInt64(0), toUInt64(0)") + ", " +
		pick(a.text, "sum(text_length)", "sum(text_length)", "toInt64(0)") + ", " +
		pick(a.duration, "sum(duration_sec)", "sum(duration_sec)", "toFloat64(0)") + ", toUInt64(0)"
}

func n(by map[string]counts, typ string) float64 { return float64(by[typ].n) }

var services = map[string]serviceDef{
	"send": {
		metrics: func(by map[string]counts) map[string]float64 {
			return map[string]float64{
				"sent":               n(by, "send.email.sent"),
				"delivered":          n(by, "send.email.delivered"),
				"bounced":            n(by, "send.email.bounced"),
				"complained":         n(by, "send.email.complained"),
				"opened":             n(by, "send.email.opened"),
				"clicked":            n(by, "send.email.clicked"),
				"hard_bounced":       float64(by["send.email.bounced"].hard),
				"soft_bounced":       float64(by["send.email.bounced"].soft),
				"unique_opened":      float64(by["send.email.opened"].unique),
				"unique_clicked":     float64(by["send.email.clicked"].unique),
				"domains_verified":   n(by, "send.domain.verified"),
				"suppressions_added": n(by, "send.suppression.added"),
			}
		},
		rates: []rateDef{
			{"delivery_rate", "delivered", "sent", true},
			{"bounce_rate", "bounced", "sent", true},
			{"hard_bounce_rate", "hard_bounced", "sent", true},
			{"complaint_rate", "complained", "delivered", true},
			{"open_rate", "unique_opened", "delivered", true},
			{"click_rate", "unique_clicked", "delivered", true},
		},
		groupBy:  map[string]string{"recipient_domain": "recipient_domain", "sender_domain": "sender_domain", "type": "type"},
		distinct: true,
		sums:     additive{bounces: true},
	},
	"telco": {
		metrics: func(by map[string]counts) map[string]float64 {
			return map[string]float64{
				"lookups":                n(by, "telco.lookup.completed"),
				"searches":               n(by, "telco.search.completed"),
				"lookups_with_carrier":   float64(by["telco.lookup.completed"].carrier),
				"lookups_with_inventory": float64(by["telco.lookup.completed"].inventory),
			}
		},
		rates: []rateDef{
			{"carrier_rate", "lookups_with_carrier", "lookups", true},
			{"inventory_rate", "lookups_with_inventory", "lookups", true},
		},
		groupBy: map[string]string{"npa": "npa", "type": "type"},
		sums:    additive{lookups: true},
	},
	"talk": {
		metrics: func(by map[string]counts) map[string]float64 {
			return map[string]float64{
				"speeches":   n(by, "talk.speech.generated"),
				"characters": float64(by["talk.speech.generated"].textLength),
			}
		},
		rates:   []rateDef{{"avg_characters", "characters", "speeches", false}},
		groupBy: map[string]string{"voice": "voice", "format": "format", "type": "type"},
		sums:    additive{text: true},
	},
	"voip": {
		metrics: func(by map[string]counts) map[string]float64 {
			return map[string]float64{
				"incoming":     n(by, "voip.call.incoming"),
				"completed":    n(by, "voip.call.completed"),
				"missed":       n(by, "voip.call.missed"),
				"call_seconds": by["voip.call.completed"].duration,
			}
		},
		rates: []rateDef{
			{"answer_rate", "completed", "incoming", true},
			{"missed_rate", "missed", "incoming", true},
		},
		groupBy: map[string]string{"type": "type"},
		sums:    additive{duration: true},
	},
	"transcribe": {
		metrics: func(by map[string]counts) map[string]float64 {
			return map[string]float64{
				"sessions":      n(by, "transcribe.session.completed"),
				"audio_seconds": by["transcribe.session.completed"].duration,
			}
		},
		groupBy: map[string]string{"type": "type"},
		sums:    additive{duration: true},
	},
	"platform": {
		metrics: func(by map[string]counts) map[string]float64 {
			return map[string]float64{
				"keys_created": n(by, "platform.key.created"),
				"keys_revoked": n(by, "platform.key.revoked"),
				"tests":        n(by, "platform.test"),
			}
		},
		groupBy: map[string]string{"type": "type"},
	},
}

// block turns per-type counts into the Totals a response carries.
func (d serviceDef) block(service string, by map[string]counts) Totals {
	t := Totals{ByType: map[string]uint64{}, Metrics: d.metrics(by), Rates: map[string]Rate{}}
	for _, typ := range schema.TypesOf(service) {
		t.ByType[typ] = 0
	}
	for typ, c := range by {
		t.ByType[typ] = c.n
		t.Events += c.n
	}
	for _, r := range d.rates {
		t.Rates[r.name] = httpapi.NewRate(t.Metrics[r.num], t.Metrics[r.den], r.num+" / "+r.den)
	}
	return t
}
