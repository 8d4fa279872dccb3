package region

import (
	"context"

	"errors"
	"github.com/prometheus/client_golang/prometheus"
	"sync"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/federation/rehome"
	"github.com/rendezvous-core/rendezvous/region/hss"
	"github.com/rendezvous-core/rendezvous/region/opapi"
	"github.com/rendezvous-core/rendezvous/topology"
)

// rehomer wires the federation's re-homing (federation/rehome) to this
// node: the registry's serving rows, the HSS's CLR with Reattach-Required,
// the PGW-initiated delete for drains, and steering for rebalances. It
// follows the applied routing table only (DESIGN.md §2).
type rehomer struct {
	rh     *rehome.Rehomer
	cancel context.CancelFunc
	unsub  func()
	wg     sync.WaitGroup
	rate   float64

	closeOnce sync.Once
	closeErr  error
}

func newRehomer(n *Node, reg prometheus.Registerer) (*rehomer, error) {
	var regions []topology.RegionID
	for _, s := range n.cfg.Federation.Deployment.Sites {
		regions = append(regions, s.Region)
	}
	steerer := n.steer
	cfg := rehome.Config{
		Region:   n.self.Region,
		Regions:  regions,
		Registry: n.store,
		HSS: rehome.HSSFunc(func(ctx context.Context, imsi topology.IMSI, reattach bool) error {
			return n.hss.CancelLocation(ctx, imsi, hss.SubscriptionWithdrawal, reattach)
		}),
		Rate:         n.cfg.RehomeRate,
		NotConnected: func(err error) bool { return errors.Is(err, hss.ErrNoPeer) },
		Gone:         func(err error) bool { return errors.Is(err, hss.ErrNotRegistered) },
		Mine:         func(s registry.Serving) bool { return n.hss.Reaches(s.MMEHost, s.MMERealm) },
		Steer: func(s registry.Serving) (topology.RegionID, bool) {
			ctx := context.Background()
			sub, err := n.store.Subscriber(ctx, s.IMSI)
			if err != nil || len(sub.APNs) == 0 {
				return "", false
			}
			r, _, err := steerer.Steer(ctx, s.IMSI, sub, s.VisitedPLMN, sub.APNs[0].Name)
			return r, err == nil
		},
		Logger:     n.log.With("component", "rehome"),
		Registerer: reg,
	}
	if n.pgw != nil {
		p := n.pgw
		cfg.PGW = rehome.PGWFunc(func(ctx context.Context, imsi topology.IMSI) error {
			_, err := p.DeleteIMSI(ctx, imsi, 0)
			return err
		})
	}
	rh, err := rehome.New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch, unsub := n.cons.Subscribe()
	r := &rehomer{rh: rh, cancel: cancel, unsub: unsub, rate: n.cfg.RehomeRate}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = rh.Follow(ctx, ch) // returns when ctx ends
	}()
	return r, nil
}

// Progress sums the running and last jobs for the operator API.
func (r *rehomer) Progress() opapi.Rehoming {
	st := r.rh.Status()
	p := opapi.Rehoming{Rate: st.Rate}
	for _, j := range st.Jobs {
		if !j.Finished {
			p.Active = true
		}
		p.Total += j.Total
		p.Done += j.Done
		p.Failed += j.Failed
		p.Remaining += j.Remaining
	}
	return p
}

// Close stops following the table, cancels running jobs and waits.
func (r *rehomer) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		r.unsub()
		r.wg.Wait()
		r.closeErr = r.rh.Close()
	})
	return r.closeErr
}
