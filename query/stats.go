package query

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/schema"
)

// Bucket is one step of a series.
type Bucket struct {
	Bucket string `json:"bucket"`
	Totals
	// Previous is the compared period's bucket in the same place of its
	// series (absent past that series' end); set with compare.
	Previous *PreviousBucket `json:"previous,omitempty"`
}

// Group is the numbers of one value of group_by.
type Group struct {
	Key string `json:"key"`
	Totals
	Previous *Totals `json:"previous,omitempty"` // the same group in the compared period
}

// StatsResponse is the body of GET /v1/stats/{service}.
type StatsResponse struct {
	Service     string               `json:"service"`
	From        string               `json:"from"`
	To          string               `json:"to"`
	Granularity *httpapi.Granularity `json:"granularity"` // null without a series
	TZ          string               `json:"tz"`
	Livemode    Livemode             `json:"livemode"`
	GroupBy     string               `json:"group_by,omitempty"`
	Totals      Totals               `json:"totals"`
	Series      []Bucket             `json:"series,omitempty"`
	Groups      []Group              `json:"groups,omitempty"`
	// Compare and Previous are set with compare: the earlier period and
	// its totals; every rate then carries its change.
	Compare  *Comparison `json:"compare,omitempty"`
	Previous *Totals     `json:"previous,omitempty"`
}

// statsRequest is a parsed and checked GET /v1/stats/{service}.
type statsRequest struct {
	service     string
	def         serviceDef
	r           timeRange
	granularity httpapi.Granularity
	loc         *time.Location
	livemode    Livemode
	groupBy     string // the parameter's value
	groupCol    string // its column, from the service's allow-list
	limit       int
	filters     schema.Filters
	compare     *timeRange // the period compared with, if any
	format      string     // "csv", or "" for JSON
	// groupKeys, when not nil, are the groups to count instead of the top
	// limit: a compared period counts the groups of the period it follows.
	groupKeys []string
	// at narrows the reads of the events to the sort keys a messageId
	// filter's emails (schema.MessagesAt) and a recipient filter's
	// addresses (schema.RecipientsAt) are stored under, binding atArgs.
	at     string
	atArgs []any
	// fromEvents counts from the events alone, never the rollup or
	// engagements: the path they must answer as
	// (TestRollupAnswersAsTheEvents).
	fromEvents bool
}

const (
	defaultGroupLimit = 100
	maxGroupLimit     = 1000
)

func parseStatsRequest(c *gin.Context, now time.Time) (statsRequest, error) {
	req := statsRequest{service: c.Param("service")}
	var err error
	if req.r, err = parseRange(c.Query("from"), c.Query("to"), now); err != nil {
		return req, err
	}
	if req.granularity, err = httpapi.ParseGranularity(c.Query("granularity")); err != nil {
		return req, err
	}
	if req.loc, err = httpapi.ParseZone(c.Query("tz")); err != nil {
		return req, err
	}
	if req.livemode, err = parseLivemode(c.Query("livemode")); err != nil {
		return req, err
	}
	req.def = services[req.service]
	if req.groupBy = c.Query("group_by"); req.groupBy != "" {
		col, ok := req.def.groupBy[req.groupBy]
		if !ok {
			keys := make([]string, 0, len(req.def.groupBy))
			for k := range req.def.groupBy {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return req, badParam("group_by", fmt.Sprintf("%q is not a group of %s; want one of %s", req.groupBy, req.service, strings.Join(keys, ", ")))
		}
		req.groupCol = col
	}
	if req.limit, err = httpapi.ParseLimit(c.Query("limit"), defaultGroupLimit, maxGroupLimit); err != nil {
		return req, err
	}
	if req.filters, err = parseFilters(c, req.service); err != nil {
		return req, err
	}
	if req.compare, err = parseCompare(c.Query("compare"), req.r); err != nil {
		return req, err
	}
	// Other values of format are talk's audio format filter (see parseFilters).
	switch v := c.Query("format"); v {
	case "csv":
		if req.compare != nil {
			return req, badParam("compare", "not in CSV: a comparison is JSON only")
		}
		req.format = v
	case "ndjson":
		return req, badParam("format", "stats come as json or csv")
	}
	return req, nil
}

func (s *API) stats(c *gin.Context) {
	service := c.Param("service")
	if !schema.IsService(service) {
		abort(c, http.StatusNotFound, "unknown_service", fmt.Sprintf("no service %q; services are %s", service, strings.Join(schema.Services, ", ")))
		return
	}
	req, err := parseStatsRequest(c, s.cfg.Now())
	if err != nil {
		s.fail(c, err)
		return
	}
	resp, err := s.runStats(c.Request.Context(), req)
	if err == nil && req.compare != nil {
		err = s.compare(c.Request.Context(), req, &resp)
	}
	if httpapi.IsTooManyRows(err) {
		// A dense series (many buckets times many types or groups) is the
		// one way a stats answer outgrows the result-row limit.
		err = badParam("granularity", fmt.Sprintf("the series has more than %d rows (buckets × types or groups); narrow the range, widen the granularity or drop group_by", httpapi.LimitsOf(c.Request.Context()).MaxResultRows))
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	if req.format == "csv" {
		statsCSV(c, resp, req.def)
		return
	}
	c.JSON(http.StatusOK, resp)
}

// statsSQL builds the one statement a stats request runs: a UNION ALL of
//
//	S:  additive counts per (bucket, type); totals are their sum
//	G:  additive counts per (group, type), for the top groups only
//	US: distinct messageIds per (bucket, type) of the unique types
//	UT: the same over the whole range, when there is a series (distinct
//	    counts do not add up across buckets), from the same read as US
//	UG: the same per (group, type)
//
// S and G read the rollup where plan covers the range (schema.Rollup), and
// the events for the rest, each giving rows runStats adds up. The distinct
// counts read links when linked (schema.Links), else the events of their
// types (opened, clicked), a narrow read in the table's order (service,
// type, created_at), or engagements, the same ordered by recipient domain
// or by sender domain, for a request that filters by one
// (schema.EngagedBy). Each additive SELECT of the events
// reads through src, so stored duplicates count once; distinct counts need
// no such care.
// Columns and values come from allow-lists; everything else is bound.
func statsSQL(src schema.Counted, plan schema.Rollup, linked bool, req statsRequest) (string, []any) {
	fcond, fargs := req.filters.SQL()
	cond := req.livemode.SQL() + fcond
	where := "service = ? AND created_at >= ? AND created_at < ?" + cond + req.at
	whereArgs := append(append([]any{req.service, req.r.From.UnixMilli(), req.r.To.UnixMilli()}, fargs...), req.atArgs...)
	// from is what a SELECT of the events reads: those matching where and
	// extra.
	from := func(extra string, extraArgs []any) (string, []any) {
		return src.Source(where+extra, append(append([]any{}, whereArgs...), extraArgs...))
	}
	// rawCond keeps the additive parts' reads of the events to what the
	// rollup does not count; rawAdditive is false when that is nothing.
	rawCond, rawArgs, rawAdditive := plan.RawSQL()
	// rolled is what a SELECT of the rollup reads, as from.
	rolled := func(extra string, extraArgs []any) (string, []any) {
		return plan.Source("service = ?"+cond+extra, append(append([]any{req.service}, fargs...), extraArgs...))
	}
	const zeros = "toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toInt64(0), toFloat64(0)"
	const unique = zeros + ", uniqExact(message_hash)"

	var parts []string
	var args []any
	// add adds one SELECT of source (from or rolled). key is the SQL of its
	// bucket (b) and group (k) columns, keyArgs what key binds; extra
	// narrows its WHERE.
	add := func(source func(string, []any) (string, []any), kind, key string, keyArgs []any, values, extra string, extraArgs []any, groupBy string) {
		rows, rowsArgs := source(extra, extraArgs)
		parts = append(parts, "SELECT '"+kind+"' AS kind, "+key+", CAST(type AS String) AS t, "+values+
			" FROM "+rows+" GROUP BY "+groupBy)
		args = append(append(args, keyArgs...), rowsArgs...)
	}
	// additive adds the SELECTs of an additive part: of the rollup where it
	// covers, of the events for the rest.
	additive := func(kind, key string, keyArgs []any, extra string, extraArgs []any, groupBy string) {
		if plan.Covers() {
			add(rolled, kind, key, keyArgs, req.def.sums.sql(true), extra, extraArgs, groupBy)
		}
		if rawAdditive {
			add(from, kind, key, keyArgs, req.def.sums.sql(false), rawCond+extra, append(append([]any{}, rawArgs...), extraArgs...), groupBy)
		}
	}

	bucket, zoneArgs := httpapi.BucketSQL(req.granularity, "created_at")
	zones := make([]any, zoneArgs)
	for i := range zones {
		zones[i] = req.loc.String()
	}
	seriesKey := bucket + " AS b, '' AS k"
	additive("S", seriesKey, zones, "", nil, "b, t")

	var top string
	var topArgs []any
	groupKey := ""
	switch {
	case req.groupCol != "" && req.groupKeys != nil:
		if len(req.groupKeys) == 0 {
			break // no group to count
		}
		groupKey = "toUInt32(0) AS b, CAST(" + req.groupCol + " AS String) AS k"
		top = " AND " + req.groupCol + " IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(req.groupKeys)), ", ") + ")"
		for _, k := range req.groupKeys {
			topArgs = append(topArgs, k)
		}
		additive("G", groupKey, nil, top, topArgs, "k, t")
	case req.groupCol != "":
		groupKey = "toUInt32(0) AS b, CAST(" + req.groupCol + " AS String) AS k"
		// GLOBAL: on a cluster the top values are the whole table's (see
		// package schema).
		top, topArgs = topGroupsSQL(req, from, rolled, plan.Covers(), rawCond, rawArgs, rawAdditive)
		additive("G", groupKey, nil, top, topArgs, "k, t")
	}
	if req.def.distinct {
		in := " AND type IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(schema.DistinctTypes)), ", ") + ")"
		var typeArgs []any
		for _, t := range schema.DistinctTypes {
			typeArgs = append(typeArgs, t)
		}
		// distinct is what the distinct counts read: engagements when the
		// request keeps to some recipient domains, sender domains or bounce
		// types, in the order that holds their rows together
		// (schema.EngagedBy), and to what it keeps; else the events, in
		// time order, which lets each core read its own buckets (a month
		// unfiltered: 272 ms against 320 through engagements, interleaved
		// runs).
		// Neither needs the care copies take in from: a copy holds its
		// messageId once more.
		read := src.Distinct
		if t := schema.EngagedBy(req.filters); t != "" && !req.fromEvents && within(req, schema.EngagementDims) {
			read = func(where string, args []any) (string, []any) { return src.Engaged(t, where, args) }
		}
		distinct := func(extra string, extraArgs []any) (string, []any) {
			return read(where+extra, append(append([]any{}, whereArgs...), extraArgs...))
		}
		switch {
		case linked:
			// From links (schema.Links): a message counts in a bucket when
			// its first engagement there follows none in the bucket (a
			// bucket's part of the range: the first may start before it).
			links, linksArgs := src.Linked(schema.LinkScope(req.livemode))
			const values = zeros + ", sumIf(messages, prev < "
			if req.granularity != httpapi.NoSeries {
				parts = append(parts, "SELECT 'US' AS kind, "+seriesKey+", CAST(type AS String) AS t, "+values+"greatest(toInt64(b) * 1000, ?)) FROM "+links+" GROUP BY b, t")
				args = append(append(append(args, zones...), req.r.From.UnixMilli()), linksArgs...)
			}
			kind := "UT" // the range's, beside the buckets'
			if req.granularity == httpapi.NoSeries {
				kind = "US"
			}
			parts = append(parts, "SELECT '"+kind+"' AS kind, toUInt32(0) AS b, '' AS k, CAST(type AS String) AS t, "+values+"?) FROM "+links+" GROUP BY t")
			args = append(append(args, req.r.From.UnixMilli()), linksArgs...)
		case req.granularity == httpapi.NoSeries:
			add(distinct, "US", seriesKey, zones, unique, in, typeArgs, "b, t")
		default:
			// US and UT from one read: each bucket's set of messageIds
			// (uniqExactState) gives its count, and the sets merged give the
			// range's; a row per bucket and one for the range, as the rest.
			events, eventsArgs := distinct(in, typeArgs)
			parts = append(parts, "SELECT x.3 AS kind, x.1 AS b, '' AS k, t, "+zeros+", x.2 FROM ("+
				"SELECT t, arrayPushBack(groupArray((b, finalizeAggregation(s), 'US')), (toUInt32(0), uniqExactMerge(s), 'UT')) AS xs FROM ("+
				"SELECT CAST(type AS String) AS t, "+bucket+" AS b, uniqExactState(message_hash) AS s FROM "+events+" GROUP BY t, b) "+
				"GROUP BY t) ARRAY JOIN xs AS x")
			args = append(append(args, zones...), eventsArgs...)
		}
		if groupKey != "" {
			add(distinct, "UG", groupKey, nil, unique, in+top, append(typeArgs, topArgs...), "k, t")
		}
	}
	return strings.Join(parts, " UNION ALL "), args
}

// rollupServes reports whether the rollup can count req: its filters and
// group are dimensions the rollup keeps, and each bucket of its series
// starts on a quarter hour, so every quarter hour lies in one bucket.
func rollupServes(req statsRequest, buckets []time.Time) bool {
	if !within(req, schema.RollupDims) {
		return false
	}
	for _, b := range buckets {
		if b.UnixMilli()%schema.RollupStep != 0 {
			return false
		}
	}
	return true
}

// within reports whether req filters and groups only by dimensions among
// dims (or by type).
func within(req statsRequest, dims []string) bool {
	return req.filters.Within(dims) && (req.groupCol == "" || req.groupCol == "type" || slices.Contains(dims, req.groupCol))
}

// topGroupsSQL is the condition, " AND ...", that keeps to the req.limit
// groups with the most events, most first and then by value; it reads the
// rollup where it covers (rolled) and the events for the rest (from, with
// rawCond).
func topGroupsSQL(req statsRequest, from, rolled func(string, []any) (string, []any), covers bool, rawCond string, rawArgs []any, rawAdditive bool) (string, []any) {
	col := req.groupCol
	if !covers {
		events, args := from("", nil)
		return " AND " + col + " GLOBAL IN (SELECT " + col + " FROM " + events +
			" GROUP BY " + col + " ORDER BY count() DESC, " + col + " LIMIT ?)", append(args, req.limit)
	}
	counted, args := rolled("", nil)
	sql := "SELECT " + col + " AS g, sum(events) AS n FROM " + counted + " GROUP BY g"
	if rawAdditive {
		events, eventsArgs := from(rawCond, rawArgs)
		sql += " UNION ALL SELECT " + col + " AS g, count() AS n FROM " + events + " GROUP BY g"
		args = append(args, eventsArgs...)
	}
	return " AND " + col + " GLOBAL IN (SELECT g FROM (" + sql + ") GROUP BY g ORDER BY sum(n) DESC, g LIMIT ?)", append(args, req.limit)
}

// statsStatement looks up how the request's range reads (duplicates
// recorded, the rollup's span) and returns its statement.
func (s *API) statsStatement(ctx context.Context, req statsRequest, buckets []time.Time) (string, []any, error) {
	from, to := req.r.From.UnixMilli(), req.r.To.UnixMilli()
	src, err := schema.CountedEvents(ctx, s.conn, s.cfg.Database, from, to)
	if err != nil {
		return "", nil, fmt.Errorf("stats of %s: %w", req.service, err)
	}
	if ids := req.filters.Values("message_id"); len(ids) > 0 {
		if req.at, req.atArgs, err = schema.MessagesAt(ctx, s.conn, s.cfg.Database, ids); err != nil {
			return "", nil, fmt.Errorf("stats of %s: %w", req.service, err)
		}
	}
	if addrs := req.filters.Values("recipient"); len(addrs) > 0 {
		at, atArgs, err := schema.RecipientsAt(ctx, s.conn, s.cfg.Database, req.service, addrs, from, to)
		if err != nil {
			return "", nil, fmt.Errorf("stats of %s: %w", req.service, err)
		}
		req.at, req.atArgs = req.at+at, append(req.atArgs, atArgs...)
	}
	var plan schema.Rollup
	if !req.fromEvents && rollupServes(req, buckets) {
		if plan, err = schema.PlanRollup(ctx, s.conn, s.cfg.Database, from, to); err != nil {
			return "", nil, fmt.Errorf("stats of %s: %w", req.service, err)
		}
	}
	// Distinct counts over the whole service (a group_by aside) read links
	// where they are current (schema.Links).
	linked := false
	if req.def.distinct && !req.fromEvents && len(req.filters) == 0 && req.at == "" && rollupServes(req, buckets) {
		if linked, err = schema.Links(ctx, s.conn, s.cfg.Database, from, to); err != nil {
			return "", nil, fmt.Errorf("stats of %s: %w", req.service, err)
		}
	}
	q, args := statsSQL(src, plan, linked, req)
	return q, args, nil
}

func (s *API) runStats(ctx context.Context, req statsRequest) (StatsResponse, error) {
	var buckets []time.Time
	if req.granularity != httpapi.NoSeries {
		var err error
		if buckets, err = httpapi.BucketsOf(req.granularity, req.r.From, req.r.To, req.loc); err != nil {
			return StatsResponse{}, err
		}
	}
	q, args, err := s.statsStatement(ctx, req, buckets)
	if err != nil {
		return StatsResponse{}, err
	}
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return StatsResponse{}, fmt.Errorf("stats of %s: %w", req.service, err)
	}
	defer rows.Close()
	totals := map[string]counts{}
	series := map[int64]map[string]counts{}
	groups := map[string]map[string]counts{}
	into := func(m map[string]counts, typ string, c counts) {
		cur := m[typ]
		cur.add(c)
		m[typ] = cur
	}
	for rows.Next() {
		var kind, key, typ string
		var b uint32
		var c counts
		if err := rows.Scan(&kind, &b, &key, &typ, &c.n, &c.hard, &c.soft, &c.carrier, &c.inventory, &c.textLength, &c.duration, &c.unique); err != nil {
			return StatsResponse{}, fmt.Errorf("read stats of %s: %w", req.service, err)
		}
		switch {
		case kind == "UT", req.granularity == httpapi.NoSeries && (kind == "S" || kind == "US"):
			into(totals, typ, c)
		case kind == "S" || kind == "US":
			if kind == "S" {
				into(totals, typ, c)
			}
			if series[int64(b)] == nil {
				series[int64(b)] = map[string]counts{}
			}
			into(series[int64(b)], typ, c)
		case kind == "G" || kind == "UG":
			if groups[key] == nil {
				groups[key] = map[string]counts{}
			}
			into(groups[key], typ, c)
		}
	}
	if err := rows.Err(); err != nil {
		return StatsResponse{}, fmt.Errorf("read stats of %s: %w", req.service, err)
	}

	resp := StatsResponse{
		Service: req.service, From: formatTime(req.r.From), To: formatTime(req.r.To),
		TZ: req.loc.String(), Livemode: req.livemode, GroupBy: req.groupBy,
		Totals: req.def.block(req.service, totals),
	}
	if req.granularity != httpapi.NoSeries {
		resp.Granularity = &req.granularity
	}
	for _, b := range buckets {
		resp.Series = append(resp.Series, Bucket{Bucket: httpapi.FormatBucket(b, req.loc), Totals: req.def.block(req.service, series[b.Unix()])})
	}
	if req.granularity != httpapi.NoSeries && resp.Series == nil {
		resp.Series = []Bucket{}
	}
	for key, by := range groups {
		resp.Groups = append(resp.Groups, Group{Key: key, Totals: req.def.block(req.service, by)})
	}
	sort.Slice(resp.Groups, func(i, j int) bool {
		a, b := resp.Groups[i], resp.Groups[j]
		if a.Events != b.Events {
			return a.Events > b.Events
		}
		return a.Key < b.Key
	})
	if req.groupBy != "" && resp.Groups == nil {
		resp.Groups = []Group{}
	}
	return resp, nil
}

// compare adds to resp the period req.compare: its totals, each bucket's
// counterpart by position, each group's counterpart by key, and every
// rate's change.
func (s *API) compare(ctx context.Context, req statsRequest, resp *StatsResponse) error {
	prev := req
	prev.r, prev.compare = *req.compare, nil
	if req.groupCol != "" {
		prev.groupKeys = []string{}
		for _, g := range resp.Groups {
			prev.groupKeys = append(prev.groupKeys, g.Key)
		}
	}
	p, err := s.runStats(ctx, prev)
	if err != nil {
		return fmt.Errorf("compared period: %w", err)
	}
	resp.Compare = &Comparison{From: p.From, To: p.To, Method: CompareMethod}
	resp.Previous = &p.Totals
	req.def.compareTotals(&resp.Totals, p.Totals)
	for i := range resp.Series {
		if i < len(p.Series) {
			b := p.Series[i]
			resp.Series[i].Previous = &PreviousBucket{Bucket: b.Bucket, Totals: b.Totals}
			req.def.compareTotals(&resp.Series[i].Totals, b.Totals)
		}
	}
	byKey := make(map[string]Totals, len(p.Groups))
	for _, g := range p.Groups {
		byKey[g.Key] = g.Totals
	}
	for i, g := range resp.Groups {
		t, ok := byKey[g.Key]
		if !ok {
			t = req.def.block(req.service, nil) // none in the compared period
		}
		resp.Groups[i].Previous = &t
		req.def.compareTotals(&resp.Groups[i].Totals, t)
	}
	return nil
}
