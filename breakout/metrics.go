package breakout

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics exposes the workers' statistics as Prometheus counters with the
// constant label node=<Name>, so several nodes can share a Registerer. The
// workers never touch Prometheus: the collectors sum per-worker atomics.
type metrics struct {
	reg   prometheus.Registerer
	colls []prometheus.Collector
}

func newMetrics(b *Breakout) (*metrics, error) {
	m := &metrics{reg: b.cfg.Registerer}
	sum := func(i int) func() float64 {
		return func() float64 {
			var v uint64
			for _, s := range b.stats {
				v += s.c[i].Load()
			}
			return float64(v)
		}
	}
	node := prometheus.Labels{"node": b.cfg.Name}
	with := func(k, v string) prometheus.Labels {
		l := prometheus.Labels{"node": b.cfg.Name}
		l[k] = v
		return l
	}
	counter := func(name, help string, labels prometheus.Labels, i int) {
		m.colls = append(m.colls, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "rdv", Subsystem: "breakout", Name: name, Help: help, ConstLabels: labels,
		}, sum(i)))
	}
	counter("packets_total", "T-PDUs forwarded, by direction.", with("direction", "up"), statUpPackets)
	counter("packets_total", "T-PDUs forwarded, by direction.", with("direction", "down"), statDownPackets)
	counter("bytes_total", "Inner IP octets forwarded, by direction.", with("direction", "up"), statUpBytes)
	counter("bytes_total", "Inner IP octets forwarded, by direction.", with("direction", "down"), statDownBytes)
	counter("echo_requests_total", "Echo Requests answered (TS 29.281 §7.2.1).", node, statEchoRequests)
	counter("echo_responses_total", "Echo Responses received (TS 29.281 §7.2.2).", node, statEchoResponses)
	counter("error_indications_sent_total", "Error Indications sent for unknown TEIDs (TS 29.281 §7.3.1).", node, statErrIndSent)
	counter("error_indications_limited_total", "Error Indications suppressed by the rate limit.", node, statErrIndLimited)
	counter("error_indications_received_total", "Error Indications received from peers.", node, statErrIndRecv)
	counter("end_markers_total", "End Markers received (TS 29.281 §7.3.2).", node, statEndMarkers)
	for r := dropReason(1); r < numDropReasons; r++ {
		counter("dropped_total", "Packets dropped, by reason.", with("reason", r.String()), statDrop0+int(r))
	}
	m.colls = append(m.colls, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "rdv", Subsystem: "breakout", Name: "tunnels", Help: "Installed tunnels.", ConstLabels: node,
	}, func() float64 { return float64(b.tab.len()) }))
	for i, c := range m.colls {
		if err := m.reg.Register(c); err != nil {
			m.colls = m.colls[:i]
			m.unregister()
			return nil, fmt.Errorf("breakout: register metrics for node %s: %w", b.cfg.Name, err)
		}
	}
	return m, nil
}

func (m *metrics) unregister() {
	for _, c := range m.colls {
		m.reg.Unregister(c)
	}
}
