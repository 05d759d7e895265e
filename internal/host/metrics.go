package host

import (
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the host's Prometheus metrics, in a registry of their own
// that GET /metrics serves first. Routes are Gin's templates
// (/v1/events/:eventId), so no id becomes a label; a path that matches no
// route is "unmatched".
type metrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	inFlight prometheus.Gauge
	// gatherers are what GET /metrics serves: the host's, then AddMetrics'.
	gatherers prometheus.Gatherers
}

// newMetrics builds the host's metrics; queries reports the /v1 requests
// holding a slot of MaxConcurrent, which are those running queries.
func newMetrics(queries func() int) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_http_requests_total",
			Help: "HTTP requests answered, by method, route and status.",
		}, []string{"method", "route", "status"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hindsight_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by method and route.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"method", "route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hindsight_http_requests_in_flight",
			Help: "HTTP requests being answered.",
		}),
	}
	inQuery := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hindsight_api_queries_in_flight",
		Help: "API requests being answered under /v1, each holding one of the slots MaxConcurrent bounds: those that query ClickHouse.",
	}, func() float64 { return float64(queries()) })
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.requests, m.seconds, m.inFlight, inQuery)
	m.gatherers = prometheus.Gatherers{reg}
	return m
}

func (m *metrics) observe(c *gin.Context) {
	start := time.Now()
	m.inFlight.Inc()
	defer m.inFlight.Dec()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(c.Request.Method, route, strconv.Itoa(c.Writer.Status())).Inc()
	m.seconds.WithLabelValues(c.Request.Method, route).Observe(time.Since(start).Seconds())
}

// serve answers GET /metrics, without a key as /healthz, in Prometheus'
// text format.
func (m *metrics) serve(c *gin.Context) {
	promhttp.HandlerFor(m.gatherers, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}).ServeHTTP(c.Writer, c.Request)
}

// AddMetrics adds to what GET /metrics serves beside the host's own metrics
// (cmd adds ingest's, replay's and the process'). Call it before serving.
func (h *Host) AddMetrics(g ...prometheus.Gatherer) {
	h.metrics.gatherers = append(h.metrics.gatherers, g...)
}
