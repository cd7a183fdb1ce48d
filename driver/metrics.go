package driver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics counts what the node plugin does. Label values are drawn from
// closed sets (gRPC codes, registered provider names, publish kinds): never
// pod, namespace or secret names, which would leak cluster details to
// whoever can scrape the node.
type Metrics struct {
	publish   *prometheus.CounterVec
	unpublish *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	errors    *prometheus.CounterVec
	checks    *prometheus.CounterVec
	revision  *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg, plus the Go
// runtime and process collectors. A nil reg gives unregistered collectors,
// for tests and for callers that do not export metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		publish: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podsecrets_node_publish_total",
			Help: "NodePublishVolume calls by provider, kind (publish, republish or complete) and gRPC code.",
		}, []string{"provider", "kind", "code"}),
		unpublish: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podsecrets_node_unpublish_total",
			Help: "NodeUnpublishVolume calls by gRPC code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podsecrets_node_publish_duration_seconds",
			Help:    "Duration of NodePublishVolume by provider and kind.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"provider", "kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podsecrets_provider_errors_total",
			Help: "Failed provider fetches by provider and gRPC code.",
		}, []string{"provider", "code"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podsecrets_rotation_checks_total",
			Help: "Rotation checks of mounted volumes by provider and result (unchanged, rotated or failed).",
		}, []string{"provider", "result"}),
		revision: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podsecrets_revision_mounts_total",
			Help: "Mounts of classes with versionPolicy Revision by result: first (recorded the versions), recorded (mounted them), fallback (a recorded version was gone) or none (the pod has no revision).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.publish, m.unpublish, m.duration, m.errors, m.checks, m.revision,
			collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Label values of the closed sets the metrics use.
const (
	// noProvider is the provider label of a publish that failed before a
	// provider was chosen.
	noProvider = "none"
	// Kinds of NodePublishVolume: a first publish, a republish of a
	// complete volume (kept as it is), and the completion of a volume a
	// killed driver left incomplete.
	kindPublish   = "publish"
	kindRepublish = "republish"
	kindComplete  = "complete"
	// Results of rotation checks.
	checkUnchanged = "unchanged"
	checkRotated   = "rotated"
	checkFailed    = "failed"
)

func (m *Metrics) observePublish(providerName, kind, code string, took time.Duration) {
	m.publish.WithLabelValues(providerName, kind, code).Inc()
	m.duration.WithLabelValues(providerName, kind).Observe(took.Seconds())
}

func (m *Metrics) observeUnpublish(code string) { m.unpublish.WithLabelValues(code).Inc() }

func (m *Metrics) providerError(providerName, code string) {
	m.errors.WithLabelValues(providerName, code).Inc()
}

func (m *Metrics) rotationCheck(providerName, result string) {
	m.checks.WithLabelValues(providerName, result).Inc()
}

func (m *Metrics) revisionMount(result string) { m.revision.WithLabelValues(result).Inc() }
