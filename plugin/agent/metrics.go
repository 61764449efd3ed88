package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/watch"
)

// Metrics are the agent's Prometheus metrics, in their own registry.
type Metrics struct {
	Registry    *prometheus.Registry
	findings    *prometheus.GaugeVec
	checks      *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lastSuccess prometheus.Gauge
	readErrors  prometheus.Counter
	latency     prometheus.Histogram
	// conditionErrors counts Node condition writes that failed.
	conditionErrors prometheus.Counter
}

// NewMetrics registers the agent's metrics, labelled with the node.
func NewMetrics(node string) *Metrics {
	constant := prometheus.Labels{"node": node}
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "svctrace_findings", ConstLabels: constant,
			Help: "Findings that lasted the grace period on this node, by kind, severity and Service."}, []string{"kind", "severity", "namespace", "service"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "svctrace_checks_total", ConstLabels: constant,
			Help: "Checks run: of the whole node, or of the Services an API change touched; by result."}, []string{"scope", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "svctrace_check_duration_seconds", ConstLabels: constant,
			Help:    "How long a check took, the dataplane read included.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10)}, []string{"scope"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "svctrace_last_success_timestamp_seconds", ConstLabels: constant,
			Help: "When a check last succeeded (Unix time)."}),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "svctrace_read_errors_total", ConstLabels: constant,
			Help: "Dataplane reads that failed."}),
		conditionErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "svctrace_condition_write_errors_total", ConstLabels: constant,
			Help: "Node condition writes that failed (RBAC, API server unreachable); the next check tries again."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "svctrace_programming_latency_seconds", ConstLabels: constant,
			Help:    "From an EndpointSlice change seen in the API to the first check that finds this node's dataplane agreeing with it (measured by svctrace, not kube-proxy).",
			Buckets: []float64{0.5, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 300}}),
	}
	m.Registry.MustRegister(m.findings, m.checks, m.duration, m.lastSuccess, m.readErrors, m.latency, m.conditionErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// setFindings replaces the findings gauge with the reported findings.
func (m *Metrics) setFindings(active []trace.Finding) {
	m.findings.Reset()
	for _, f := range active {
		ns, name := "", ""
		if svc := watch.ServiceOf(f); svc != "" {
			ns, name = splitService(svc)
		}
		m.findings.WithLabelValues(f.Kind, string(f.Severity), ns, name).Inc()
	}
}

func splitService(svc string) (string, string) {
	for i := 0; i < len(svc); i++ {
		if svc[i] == '/' {
			return svc[:i], svc[i+1:]
		}
	}
	return "", svc
}
