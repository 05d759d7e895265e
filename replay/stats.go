package replay

import (
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dodev/hindsight/internal/httpapi"
)

// latency holds percentiles of attempt latency; null without attempts.
type latency struct {
	P50 *float64 `json:"p50"`
	P95 *float64 `json:"p95"`
}

// deliveryBlock is the numbers of a range or a bucket.
type deliveryBlock struct {
	Attempts    uint64       `json:"attempts"`
	Delivered   uint64       `json:"delivered"`
	Failed      uint64       `json:"failed"`
	SuccessRate httpapi.Rate `json:"success_rate"`
	LatencyMS   latency      `json:"latency_ms"`
}

func block(attempts, delivered, failed uint64, p50, p95 float64) deliveryBlock {
	b := deliveryBlock{Attempts: attempts, Delivered: delivered, Failed: failed,
		SuccessRate: httpapi.NewRate(float64(delivered), float64(attempts), "delivered / attempts")}
	if attempts > 0 {
		if !math.IsNaN(p50) {
			b.LatencyMS.P50 = &p50
		}
		if !math.IsNaN(p95) {
			b.LatencyMS.P95 = &p95
		}
	}
	return b
}

// deliveryStats serves GET /v1/stats/deliveries: attempts, outcomes and
// latency of deliveries, for one endpoint or all, with an optional series,
// and how many times endpoints were disabled and enabled again in the range.
// One statement for the attempts: the buckets, and the whole range beside
// them (percentiles do not add up across buckets).
func (a *API) deliveryStats(c *gin.Context) {
	r, err := httpapi.ParseRange(c.Query("from"), c.Query("to"), time.Now())
	if err != nil {
		a.fail(c, err)
		return
	}
	from, to := r.From, r.To
	g, err := httpapi.ParseGranularity(c.Query("granularity"))
	if err != nil {
		a.fail(c, err)
		return
	}
	loc, err := httpapi.ParseZone(c.Query("tz"))
	if err != nil {
		a.fail(c, err)
		return
	}
	var buckets []time.Time
	if g != httpapi.NoSeries {
		if buckets, err = httpapi.BucketsOf(g, from, to, loc); err != nil {
			a.fail(c, err)
			return
		}
	}
	endpoint := c.Query("endpoint_id")
	where := "at >= ? AND at < ?"
	args := []any{from.UnixMilli(), to.UnixMilli()}
	if endpoint != "" {
		where += " AND endpoint_id = ?"
		args = append(args, endpoint)
	}
	const values = "count(), countIf(outcome = 'delivered'), countIf(outcome = 'failed'), quantile(0.5)(latency_ms), quantile(0.95)(latency_ms)"
	bucket, zoneArgs := httpapi.BucketSQL(g, "at")
	var qargs []any
	for range zoneArgs {
		qargs = append(qargs, loc.String())
	}
	qargs = append(append(qargs, args...), args...)
	q := "SELECT 'S' AS kind, " + bucket + " AS b, " + values + " FROM " + a.store.table("deliveries") + " WHERE " + where + " GROUP BY b" +
		" UNION ALL SELECT 'T' AS kind, toUInt32(0) AS b, " + values + " FROM " + a.store.table("deliveries") + " WHERE " + where
	rows, err := a.conn.Query(c.Request.Context(), q, qargs...)
	if err != nil {
		a.fail(c, fmt.Errorf("delivery stats: %w", err))
		return
	}
	defer rows.Close()
	totals := block(0, 0, 0, math.NaN(), math.NaN())
	series := map[int64]deliveryBlock{}
	for rows.Next() {
		var kind string
		var b uint32
		var n, ok, failed uint64
		var p50, p95 float64
		if err := rows.Scan(&kind, &b, &n, &ok, &failed, &p50, &p95); err != nil {
			a.fail(c, fmt.Errorf("delivery stats: %w", err))
			return
		}
		if kind == "T" {
			totals = block(n, ok, failed, p50, p95)
		} else {
			series[int64(b)] = block(n, ok, failed, p50, p95)
		}
	}
	if err := rows.Err(); err != nil {
		a.fail(c, fmt.Errorf("delivery stats: %w", err))
		return
	}
	disabled, enabled, err := a.store.countChanges(c.Request.Context(), from, to, endpoint)
	if err != nil {
		a.fail(c, fmt.Errorf("delivery stats: %w", err))
		return
	}
	type bucketView struct {
		Bucket string `json:"bucket"`
		deliveryBlock
	}
	resp := gin.H{"endpoint_id": nilIfEmpty(endpoint), "from": httpapi.FormatTime(from), "to": httpapi.FormatTime(to),
		"tz": loc.String(), "granularity": nil, "totals": totals,
		"endpoint_changes": gin.H{"disabled": disabled, "enabled": enabled}}
	if g != httpapi.NoSeries {
		resp["granularity"] = g
		out := make([]bucketView, 0, len(buckets))
		for _, b := range buckets {
			blk, ok := series[b.Unix()]
			if !ok {
				blk = block(0, 0, 0, math.NaN(), math.NaN())
			}
			out = append(out, bucketView{Bucket: httpapi.FormatBucket(b, loc), deliveryBlock: blk})
		}
		resp["series"] = out
	}
	c.JSON(http.StatusOK, resp)
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
