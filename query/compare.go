package query

import (
	"math"
	"strings"

	"github.com/dodev/hindsight/internal/httpapi"
)

// CompareMethod names the test behind every rate's change.significant.
const CompareMethod = "two-proportion z-test (pooled), two-sided at 95%: significant when |z| >= 1.96"

// zCritical is the two-sided 95% quantile of the standard normal.
const zCritical = 1.959963984540054

// Comparison says which earlier period a stats answer is compared with.
type Comparison struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Method string `json:"method"`
}

// PreviousBucket is the bucket of the earlier period in the same place of
// its series as the bucket that carries it.
type PreviousBucket struct {
	Bucket string `json:"bucket"`
	Totals
}

// parseCompare reads compare: "previous" is the period of the same length
// just before r, "<from>,<to>" any other. The empty value compares nothing.
func parseCompare(v string, r timeRange) (*timeRange, error) {
	switch {
	case v == "":
		return nil, nil
	case v == "previous":
		return &timeRange{From: r.From.Add(-r.To.Sub(r.From)), To: r.From}, nil
	}
	from, to, ok := strings.Cut(v, ",")
	if !ok {
		return nil, badParam("compare", "want previous or <from>,<to>")
	}
	var p timeRange
	var err error
	if p.From, err = parseTime("compare", from); err != nil {
		return nil, err
	}
	if p.To, err = parseTime("compare", to); err != nil {
		return nil, err
	}
	if !p.From.Before(p.To) {
		return nil, badParam("compare", "its from must be before its to")
	}
	return &p, nil
}

// compareTotals sets the change of each of cur's rates against prev's.
func (d serviceDef) compareTotals(cur *Totals, prev Totals) {
	for _, r := range d.rates {
		c, p := cur.Rates[r.name], prev.Rates[r.name]
		c.Change = change(c, p, r.proportion)
		cur.Rates[r.name] = c
	}
}

// change compares rate c with the same rate p of an earlier period.
func change(c, p httpapi.Rate, proportion bool) *httpapi.Change {
	out := &httpapi.Change{}
	if c.Value != nil && p.Value != nil {
		abs := *c.Value - *p.Value
		out.Absolute = &abs
		if *p.Value != 0 {
			rel := abs / *p.Value
			out.Relative = &rel
		}
	}
	if !proportion {
		return out
	}
	if z, ok := zTest(c.Numerator, c.Denominator, p.Numerator, p.Denominator); ok {
		sig := math.Abs(z) >= zCritical
		out.Z, out.Significant = &z, &sig
	}
	return out
}

// zTest is the pooled two-proportion z statistic of x1/n1 against x2/n2;
// false when either period has no trials or more successes than trials.
// Two proportions both 0 or both 1 differ by nothing: z is 0.
func zTest(x1, n1, x2, n2 float64) (float64, bool) {
	if n1 <= 0 || n2 <= 0 || x1 < 0 || x2 < 0 || x1 > n1 || x2 > n2 {
		return 0, false
	}
	p := (x1 + x2) / (n1 + n2)
	se := math.Sqrt(p * (1 - p) * (1/n1 + 1/n2))
	if se == 0 {
		return 0, true
	}
	return (x1/n1 - x2/n2) / se, true
}
