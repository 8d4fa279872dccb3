package region

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/region/hss"
	"github.com/rendezvous-core/rendezvous/region/opapi"
	"github.com/rendezvous-core/rendezvous/topology"
)

// rehomePage is how many serving rows one registry scan reads.
const rehomePage = 200

// rehomer moves devices off failed and draining regions, and back to a
// rebalanced one (DESIGN.md §2 "Region failure"): it follows the applied
// routing table, scans the registry's serving rows of the affected region
// and sends their MME a CLR with Reattach-Required, at a bounded rate (token
// bucket) so that the surviving regions see no attach storm. The device
// re-attaches and steering, reading the same table, puts it elsewhere.
//
// Every node runs one, and each re-homes only the devices whose MME is
// connected to its HSS (hss.ErrNoPeer elsewhere): the CLR must travel the
// MME's own Diameter connection.
type rehomer struct {
	n     *Node
	log   *slog.Logger
	lim   *rate.Limiter
	table <-chan consensus.Table
	unsub func()
	stop  chan struct{}
	wg    sync.WaitGroup

	mu        sync.Mutex // guards following fields
	progress  opapi.Rehoming
	lastState map[topology.RegionID]steering.State
	lastRebal map[topology.RegionID]uint64
}

func newRehomer(n *Node) (*rehomer, error) {
	ch, unsub := n.cons.Subscribe()
	r := &rehomer{
		n:         n,
		log:       n.log.With("component", "rehome"),
		lim:       rate.NewLimiter(rate.Limit(n.cfg.RehomeRate), 1),
		table:     ch,
		unsub:     unsub,
		stop:      make(chan struct{}),
		lastState: map[topology.RegionID]steering.State{},
		lastRebal: map[topology.RegionID]uint64{},
	}
	r.progress.Rate = n.cfg.RehomeRate
	r.wg.Add(1)
	go r.run()
	return r, nil
}

// job is one region's devices to move: off it (failed or draining) or back
// to it (rebalance).
type job struct {
	region topology.RegionID
	toward bool // rebalance: move devices to region
}

func (r *rehomer) run() {
	defer r.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-r.stop
		cancel()
	}()
	var pending []job
	for {
		var tbl consensus.Table
		if len(pending) == 0 {
			select {
			case <-r.stop:
				return
			case tbl = <-r.table:
			}
			pending = append(pending, r.jobs(tbl)...)
			continue
		}
		j := pending[0]
		pending = pending[1:]
		r.runJob(ctx, j)
		// Pick up table changes that arrived meanwhile.
		select {
		case tbl = <-r.table:
			pending = append(pending, r.jobs(tbl)...)
		default:
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// jobs compares the table with the last one seen: a region that became
// failed or draining is moved off; a rebalance counter that increased moves
// devices back. Restore alone moves nobody (DESIGN.md §2).
func (r *rehomer) jobs(tbl consensus.Table) []job {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []job
	for _, region := range tbl.Sorted() {
		row := tbl.Regions[region]
		prev, seen := r.lastState[region]
		if (row.State == steering.StateFailed || row.State == steering.StateDraining) && (!seen || prev != row.State) {
			out = append(out, job{region: region})
		}
		if row.Rebalances > r.lastRebal[region] && seen && row.State == steering.StateActive {
			out = append(out, job{region: region, toward: true})
		}
		r.lastState[region] = row.State
		r.lastRebal[region] = row.Rebalances
	}
	return out
}

func (r *rehomer) runJob(ctx context.Context, j job) {
	if r.n.hss == nil {
		return
	}
	r.log.Info("re-homing starts", "region", j.region, "rebalance", j.toward)
	r.mu.Lock()
	r.progress.Active = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.progress.Active = false
		r.progress.Remaining = 0
		r.mu.Unlock()
	}()
	regions := []topology.RegionID{j.region}
	if j.toward {
		regions = nil
		for _, s := range r.n.cfg.Federation.Deployment.Sites {
			if s.Region != j.region {
				regions = append(regions, s.Region)
			}
		}
	}
	for _, from := range regions {
		var after topology.IMSI
		for {
			if !r.stillWanted(j) {
				r.log.Info("re-homing stopped: the region's state changed", "region", j.region)
				return
			}
			rows, err := r.n.store.ServedIn(ctx, from, after, rehomePage)
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn("re-homing: registry scan failed; retrying", "region", from, "err", err)
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
						continue
					}
				}
				return
			}
			if len(rows) == 0 {
				break
			}
			after = rows[len(rows)-1].IMSI
			mine := r.connected()
			for _, s := range rows {
				if !mine[s.MMEHost] {
					continue // another node holds this MME's connection
				}
				if j.toward && !r.belongsTo(ctx, s, j.region) {
					continue
				}
				r.mu.Lock()
				r.progress.Total++
				r.progress.Remaining++
				r.mu.Unlock()
				if err := r.lim.Wait(ctx); err != nil {
					return
				}
				r.move(ctx, s, j)
			}
		}
	}
	r.log.Info("re-homing done", "region", j.region)
}

// stillWanted reports whether the job still matches the table.
func (r *rehomer) stillWanted(j job) bool {
	row := r.n.cons.Table().Regions[j.region]
	if j.toward {
		return row.State == steering.StateActive
	}
	return row.State == steering.StateFailed || row.State == steering.StateDraining
}

// belongsTo reports whether steering now puts the device in region.
func (r *rehomer) belongsTo(ctx context.Context, s registry.Serving, region topology.RegionID) bool {
	if s.Region == region {
		return false
	}
	sub, err := r.n.store.Subscriber(ctx, s.IMSI)
	if err != nil {
		return false
	}
	apn := ""
	if len(sub.APNs) > 0 {
		apn = sub.APNs[0].Name
	}
	got, _, err := (&committedSteerer{cons: r.n.cons}).Steer(ctx, s.IMSI, sub, s.VisitedPLMN, apn)
	return err == nil && got == region
}

func (r *rehomer) connected() map[string]bool {
	m := map[string]bool{}
	for _, h := range r.n.hss.ConnectedPeers() {
		m[h] = true
	}
	return m
}

func (r *rehomer) move(ctx context.Context, s registry.Serving, j job) {
	err := r.n.hss.CancelLocation(ctx, s.IMSI, hss.SubscriptionWithdrawal, true)
	// A draining region is alive: its own node also deletes the old
	// session (PGW-initiated Delete Bearer, TS 29.274 §7.2.9.2), so that
	// nothing is left behind once the device re-attached elsewhere.
	if err == nil && !j.toward && r.n.self.Region == j.region && r.n.pgw != nil {
		if _, derr := r.n.pgw.DeleteIMSI(ctx, s.IMSI, 0); derr != nil {
			r.log.Debug("re-homing: delete session", "imsi", s.IMSI, "err", derr)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress.Remaining--
	switch {
	case err == nil, errors.Is(err, hss.ErrNotRegistered):
		r.progress.Done++
	default:
		r.progress.Failed++
		r.log.Warn("re-homing: CLR failed", "imsi", s.IMSI, "mme", s.MMEHost, "err", err)
	}
}

// Progress returns the node's re-homing progress.
func (r *rehomer) Progress() opapi.Rehoming {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.progress
}

// Close stops the loop and waits for it.
func (r *rehomer) Close() error {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.unsub()
	r.wg.Wait()
	return nil
}
