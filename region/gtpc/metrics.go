package gtpc

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	received        *prometheus.CounterVec
	malformed       prometheus.Counter
	dropped         *prometheus.CounterVec
	duplicates      *prometheus.CounterVec
	retransmissions *prometheus.CounterVec
	timeouts        *prometheus.CounterVec
	handlerErrors   *prometheus.CounterVec
	handled         *prometheus.HistogramVec
	panics          prometheus.Counter
	sendErrors      prometheus.Counter
	peerRestarts    *prometheus.CounterVec
	pathFailures    *prometheus.CounterVec
	cached          prometheus.Gauge
	peers           prometheus.Gauge
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	const ns, sub = "rendezvous", "gtpc"
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, labels)
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		received:        cv("received_total", "GTP-C messages received, by version.", "version"),
		malformed:       c("malformed_total", "Datagrams dropped because their GTP-C header is malformed."),
		dropped:         cv("dropped_total", "Messages dropped, by reason.", "reason"),
		duplicates:      cv("duplicate_requests_total", "Duplicate requests (answered from the response cache or dropped while in progress).", "version"),
		retransmissions: cv("retransmissions_total", "Retransmissions of our requests (T3 expiry).", "version"),
		timeouts:        cv("request_timeouts_total", "Our requests that got no response after N3 retransmissions.", "version"),
		handlerErrors:   cv("handler_errors_total", "Requests whose handler returned an error (no response sent).", "version"),
		handled: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "handle_seconds", Help: "Time spent in request handlers.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10)}, []string{"version"}),
		panics:       c("panics_total", "Panics recovered in the reader or a worker."),
		sendErrors:   c("send_errors_total", "UDP write errors."),
		peerRestarts: cv("peer_restarts_total", "Peers whose Recovery value changed.", "version"),
		pathFailures: cv("path_failures_total", "Peers that did not answer N3 Echo Requests.", "version"),
		cached:       g("cached_responses", "Responses held for duplicate requests."),
		peers:        g("peers", "Peers in the path table."),
	}
	for _, col := range []prometheus.Collector{m.received, m.malformed, m.dropped, m.duplicates, m.retransmissions,
		m.timeouts, m.handlerErrors, m.handled, m.panics, m.sendErrors, m.peerRestarts, m.pathFailures, m.cached, m.peers} {
		if err := r.Register(col); err != nil {
			return nil, fmt.Errorf("gtpc: register metrics: %w", err)
		}
	}
	return m, nil
}
