package replay

import (
	"github.com/prometheus/client_golang/prometheus"
)

// workerMetrics are a Worker's Prometheus metrics, in a registry of their
// own (Worker.Metrics). No endpoint, replay or event id is a label.
type workerMetrics struct {
	reg            *prometheus.Registry
	attempts       *prometheus.CounterVec
	attemptSeconds prometheus.Histogram
	finished       *prometheus.CounterVec
	disabled       prometheus.Counter
}

func newWorkerMetrics(w *Worker) *workerMetrics {
	m := &workerMetrics{
		reg: prometheus.NewRegistry(),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_replay_attempts_total",
			Help: "Delivery attempts replays made, by outcome: delivered, retrying (another attempt follows) or failed.",
		}, []string{"outcome"}),
		attemptSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hindsight_replay_attempt_duration_seconds",
			Help:    "Time from sending a delivery to its answer (or its error).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hindsight_replay_jobs_finished_total",
			Help: "Replay jobs this worker ended, by status.",
		}, []string{"status"}),
		disabled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hindsight_replay_endpoints_disabled_total",
			Help: "Endpoints this worker disabled because every attempt failed for their disable_after.",
		}),
	}
	for _, o := range []string{"delivered", "retrying", "failed"} {
		m.attempts.WithLabelValues(o)
	}
	for _, s := range []string{StatusCompleted, StatusFailed, StatusCancelled} {
		m.finished.WithLabelValues(s)
	}
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hindsight_replay_jobs_running",
		Help: "Replay jobs this worker runs now.",
	}, func() float64 {
		w.mu.Lock()
		defer w.mu.Unlock()
		return float64(len(w.running))
	})
	m.reg.MustRegister(m.attempts, m.attemptSeconds, m.finished, m.disabled, running)
	return m
}

// Metrics gathers the worker's metrics: attempts by outcome and their
// latency, jobs running and jobs ended by status, endpoints disabled.
func (w *Worker) Metrics() prometheus.Gatherer { return w.metrics.reg }
