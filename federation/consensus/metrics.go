package consensus

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	leader       prometheus.Gauge
	state        *prometheus.GaugeVec
	epoch        *prometheus.GaugeVec
	commands     *prometheus.CounterVec
	applyLatency prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "rdv", Subsystem: "consensus", Name: "leading",
			Help: "1 while this node is the raft leader with a current table (policy loop deciding).",
		}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "rdv", Subsystem: "consensus", Name: "region_state",
			Help: "Applied state of each region: 1 active, 2 draining, 3 failed.",
		}, []string{"region"}),
		epoch: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "rdv", Subsystem: "consensus", Name: "region_epoch",
			Help: "Applied epoch of each region.",
		}, []string{"region"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rdv", Subsystem: "consensus", Name: "commands_total",
			Help: "Commands proposed by this node, by op and result (applied, rejected, error).",
		}, []string{"op", "result"}),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "rdv", Subsystem: "consensus", Name: "apply_seconds",
			Help:    "Time from Apply to commit and leader FSM apply.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
	}
	for _, c := range []prometheus.Collector{m.leader, m.state, m.epoch, m.commands, m.applyLatency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("consensus: register metrics: %w", err)
		}
	}
	return m, nil
}
