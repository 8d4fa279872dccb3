package membership

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	members    *prometheus.GaugeVec
	rejoins    prometheus.Counter
	broadcasts prometheus.Counter
	received   prometheus.Counter
	dropped    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "rdv", Subsystem: "membership", Name: "members",
			Help: "Members of the gossip pool in this node's view, by state.",
		}, []string{"state"}),
		rejoins: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rdv", Subsystem: "membership", Name: "rejoin_attempts_total",
			Help: "Joins of seeds missing from the view (re-join loop).",
		}),
		broadcasts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rdv", Subsystem: "membership", Name: "invalidations_sent_total",
			Help: "Registry cache invalidations queued for gossip.",
		}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rdv", Subsystem: "membership", Name: "invalidations_received_total",
			Help: "Registry cache invalidations received.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rdv", Subsystem: "membership", Name: "callbacks_dropped_total",
			Help: "Callbacks dropped because the dispatcher's backlog was full.",
		}),
	}
	for _, c := range []prometheus.Collector{m.members, m.rejoins, m.broadcasts, m.received, m.dropped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("membership: register metrics: %w", err)
		}
	}
	return m, nil
}
