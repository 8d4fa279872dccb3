package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/rendezvous-core/rendezvous/topology"
)

// 8 workers in each of 4 regions (one node per region, plus a second JP
// node) allocate SQNs for the same subscribers at once: no SQN is issued
// twice, every SQN carries its region's IND, and each worker's SQNs per IND
// only increase (TS 33.102 C.2.2: SEQ > SEQ_MS[IND]).
func TestSQNConcurrent(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		regions := []topology.RegionID{topology.JP, topology.US, topology.DE, topology.AU, topology.JP}
		var stores []*Store
		for _, r := range regions {
			cfg := testConfig(dsn)
			cfg.Region, cfg.SQNBlock = r, 8
			stores = append(stores, openStore(t, cfg))
		}
		var imsis []topology.IMSI
		for i := 0; i < 3; i++ {
			sub, a := testSubscriber(100+i, topology.JP)
			if err := stores[0].Provision(ctx, sub, a); err != nil {
				t.Fatal(err)
			}
			imsis = append(imsis, sub.IMSI)
		}
		const workers, rounds = 8, 40
		type issued struct {
			imsi   topology.IMSI
			region topology.RegionID
			sqn    uint64
			worker int
		}
		var mu sync.Mutex
		var all []issued
		var wg sync.WaitGroup
		errs := make(chan error, len(stores)*workers)
		for si, s := range stores {
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(si, w int, s *Store) {
					defer wg.Done()
					var mine []issued
					for i := 0; i < rounds; i++ {
						imsi := imsis[(w+i)%len(imsis)]
						n := 1 + (w+i)%3
						got, err := s.NextSQNs(ctx, imsi, s.cfg.Region, n)
						if err != nil {
							errs <- fmt.Errorf("node %d worker %d: %w", si, w, err)
							return
						}
						for _, q := range got {
							mine = append(mine, issued{imsi, s.cfg.Region, q, si*100 + w})
						}
					}
					mu.Lock()
					all = append(all, mine...)
					mu.Unlock()
				}(si, w, s)
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		last := map[string]uint64{} // worker/imsi/IND -> last SQN
		slices := DefaultINDSlices()
		for _, x := range all {
			key := fmt.Sprintf("%s/%d", x.imsi, x.sqn)
			if seen[key] {
				t.Fatalf("SQN %d of %s issued twice", x.sqn, x.imsi)
			}
			seen[key] = true
			ind := uint8(x.sqn & 31)
			if sl := slices[x.region]; ind < sl[0] || ind > sl[1] {
				t.Fatalf("SQN %d from %s has IND %d outside %v", x.sqn, x.region, ind, sl)
			}
			wk := fmt.Sprintf("%d/%s/%d", x.worker, x.imsi, ind)
			if x.sqn <= last[wk] {
				t.Fatalf("worker %d: SQN regression for %s IND %d: %d after %d", x.worker, x.imsi, ind, x.sqn, last[wk])
			}
			last[wk] = x.sqn
		}
		want := 0
		for w := 0; w < workers; w++ {
			for i := 0; i < rounds; i++ {
				want += 1 + (w+i)%3
			}
		}
		if len(all) != want*len(stores) {
			t.Fatalf("%d SQNs issued, want %d", len(all), want*len(stores))
		}
		// Each region's counter is at least every SEQ it issued.
		for _, x := range all {
			var seq int64
			if err := stores[0].r.QueryRow(`SELECT seq FROM sqn WHERE imsi = $1 AND region = $2`, string(x.imsi), string(x.region)).Scan(&seq); err != nil {
				t.Fatal(err)
			}
			if uint64(seq) < x.sqn>>5 {
				t.Fatalf("counter %d below issued SEQ %d", seq, x.sqn>>5)
			}
		}
	})
}

// 8 workers race the Update-Location CAS for each generation: exactly one
// wins, the others get ErrConflict, and the winner's prev is the previous
// winner's row (the MME the HSS sends CLR to).
func TestServingCASRace(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		a := openStore(t, testConfig(dsn))
		b := openStore(t, testConfig(dsn)) // two nodes race
		sub, auth := testSubscriber(200, topology.AU)
		if err := a.Provision(ctx, sub, auth); err != nil {
			t.Fatal(err)
		}
		const workers, generations = 8, 12
		prevHost := ""
		for g := int64(0); g < generations; g++ {
			var wg sync.WaitGroup
			start := make(chan struct{})
			type result struct {
				host string
				prev Serving
				err  error
			}
			results := make([]result, workers)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					s := a
					if w%2 == 1 {
						s = b
					}
					host := fmt.Sprintf("mme%d-g%d", w, g)
					<-start
					prev, err := s.UpdateServing(ctx, Serving{IMSI: sub.IMSI, MMEHost: host, MMERealm: "r", Region: topology.US, Generation: g})
					results[w] = result{host, prev, err}
				}(w)
			}
			close(start)
			wg.Wait()
			winners := 0
			winner := ""
			for _, r := range results {
				switch {
				case r.err == nil:
					winners++
					winner = r.host
					if r.prev.MMEHost != prevHost || r.prev.Generation != g {
						t.Fatalf("generation %d: prev %+v, want host %q generation %d", g, r.prev, prevHost, g)
					}
				case errors.Is(r.err, ErrConflict):
				default:
					t.Fatalf("generation %d: %v", g, r.err)
				}
			}
			if winners != 1 {
				t.Fatalf("generation %d: %d winners, want exactly 1", g, winners)
			}
			cur, err := b.Serving(ctx, sub.IMSI)
			if err != nil || cur.Generation != g+1 || cur.MMEHost != winner {
				t.Fatalf("generation %d: row %+v %v, want %q at %d", g, cur, err, winner, g+1)
			}
			prevHost = winner
		}
	})
}

// 8 workers on two nodes each add their own APNs with read-modify-CAS retry
// loops; the nodes tell each other about revisions (as the federation's
// broadcast would). No update is lost.
func TestNoLostProvisioningUpdate(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		var nodes [2]*Store
		for i := range nodes {
			cfg := testConfig(dsn)
			cfg.OnChange = func(imsi topology.IMSI, rev int64) {
				if o := nodes[1-i]; o != nil {
					o.Invalidate(imsi, rev)
				}
			}
			nodes[i] = openStore(t, cfg)
		}
		sub, auth := testSubscriber(300, topology.DE)
		sub.APNs = nil
		if err := nodes[0].Provision(ctx, sub, auth); err != nil {
			t.Fatal(err)
		}
		base, err := nodes[0].Subscriber(ctx, sub.IMSI)
		if err != nil {
			t.Fatal(err)
		}
		const workers, each = 8, 4
		var wg sync.WaitGroup
		var mu sync.Mutex
		conflicts := 0
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				s := nodes[w%2]
				for k := 0; k < each; k++ {
					for attempt := 0; ; attempt++ {
						if attempt > 500 {
							errs <- fmt.Errorf("worker %d: no progress", w)
							return
						}
						cur, err := s.Subscriber(ctx, sub.IMSI)
						if err != nil {
							errs <- err
							return
						}
						cur.APNs = append(cur.APNs, APN{Name: fmt.Sprintf("w%d-k%d", w, k)})
						err = s.Update(ctx, cur)
						if errors.Is(err, ErrConflict) {
							mu.Lock()
							conflicts++
							mu.Unlock()
							continue
						}
						if err != nil {
							errs <- err
							return
						}
						break
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		nodes[0].Invalidate(sub.IMSI, 1<<62) // read from the database
		final, err := nodes[0].Subscriber(ctx, sub.IMSI)
		if err != nil {
			t.Fatal(err)
		}
		if len(final.APNs) != workers*each {
			t.Fatalf("%d APNs after %d updates: lost updates", len(final.APNs), workers*each)
		}
		names := map[string]bool{}
		for _, a := range final.APNs {
			names[a.Name] = true
		}
		if len(names) != workers*each {
			t.Fatalf("duplicate APNs: %d distinct of %d", len(names), len(final.APNs))
		}
		if final.Revision != base.Revision+workers*each {
			t.Fatalf("revision %d, want %d", final.Revision, base.Revision+workers*each)
		}
		t.Logf("%d CAS conflicts retried", conflicts)
	})
}
