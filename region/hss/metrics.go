package hss

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's Prometheus metrics (issue 4 Deliver 5).
type metrics struct {
	requests  *prometheus.CounterVec   // command, result
	latency   *prometheus.HistogramVec // command
	outbound  *prometheus.CounterVec   // command, result
	rejected  *prometheus.CounterVec   // reason
	peers     prometheus.Gauge
	inFlight  prometheus.Gauge
	watchdogs *prometheus.CounterVec // event
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rdv", Subsystem: "hss", Name: "requests_total",
			Help: "Diameter requests answered, by command (AIR, ULR, …) and result (2001, exp5001, …).",
		}, []string{"command", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "rdv", Subsystem: "hss", Name: "request_duration_seconds",
			Help:    "Time from a request's arrival to its answer being queued, by command.",
			Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1},
		}, []string{"command"}),
		outbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rdv", Subsystem: "hss", Name: "outbound_requests_total",
			Help: "HSS-initiated requests (CLR, IDR) by command and result (2001, timeout, no_peer, …).",
		}, []string{"command", "result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rdv", Subsystem: "hss", Name: "rejected_total",
			Help: "Messages or connections rejected, by reason.",
		}, []string{"reason"}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "rdv", Subsystem: "hss", Name: "peers",
			Help: "Diameter connections in the Open state.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "rdv", Subsystem: "hss", Name: "in_flight",
			Help: "S6a requests being handled.",
		}),
		watchdogs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rdv", Subsystem: "hss", Name: "watchdog_total",
			Help: "Watchdog events: dwr_sent, dwr_received, expired.",
		}, []string{"event"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.outbound, m.rejected, m.peers, m.inFlight, m.watchdogs} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("hss: register metrics: %w", err)
		}
	}
	return m, nil
}

// resultLabel names a result for the metrics: "2001" for Result-Code,
// "exp5001" for an Experimental-Result-Code.
func resultLabel(code uint32, exp bool) string {
	if exp {
		return "exp" + strconv.FormatUint(uint64(code), 10)
	}
	return strconv.FormatUint(uint64(code), 10)
}
