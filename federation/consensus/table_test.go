package consensus

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/topology"
)

func TestTableApplyCompareAndSet(t *testing.T) {
	at := time.Date(2026, 11, 29, 1, 2, 3, 0, time.UTC)
	tab := NewTable(regions4)
	tests := []struct {
		name    string
		cmd     Command
		wantErr error
		state   steering.State
		epoch   uint64
	}{
		{"fail AU", Command{Op: OpFail, Region: topology.AU, Epoch: 0, At: at, FailoverTo: []topology.RegionID{topology.JP}}, nil, steering.StateFailed, 1},
		{"duplicate fail at old epoch is stale", Command{Op: OpFail, Region: topology.AU, Epoch: 0, At: at}, ErrStaleEpoch, steering.StateFailed, 1},
		{"fail a failed region", Command{Op: OpFail, Region: topology.AU, Epoch: 1, At: at}, ErrTransition, steering.StateFailed, 1},
		{"rebalance a failed region", Command{Op: OpRebalance, Region: topology.AU, Epoch: 1, At: at}, ErrTransition, steering.StateFailed, 1},
		{"restore AU", Command{Op: OpRestore, Region: topology.AU, Epoch: 1, At: at}, nil, steering.StateActive, 2},
		{"restore active", Command{Op: OpRestore, Region: topology.AU, Epoch: 2, At: at}, ErrTransition, steering.StateActive, 2},
		{"drain AU", Command{Op: OpDrain, Region: topology.AU, Epoch: 2, At: at}, nil, steering.StateDraining, 3},
		{"fail draining AU", Command{Op: OpFail, Region: topology.AU, Epoch: 3, At: at}, nil, steering.StateFailed, 4},
		{"unknown region", Command{Op: OpFail, Region: "SG", Epoch: 0, At: at}, ErrUnknownRegion, 0, 0},
		{"unknown op", Command{Op: "explode", Region: topology.JP, Epoch: 0, At: at}, ErrTransition, steering.StateActive, 0},
	}
	for i, tc := range tests {
		n, err := tab.Apply(uint64(i+1), tc.cmd)
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: err %v, want %v", tc.name, err, tc.wantErr)
		}
		if n.Index != uint64(i+1) {
			t.Fatalf("%s: index %d", tc.name, n.Index)
		}
		if err != nil && !reflect.DeepEqual(n.Regions, tab.Regions) {
			t.Fatalf("%s: rejected command changed the table", tc.name)
		}
		row := n.Regions[tc.cmd.Region]
		if row.State != tc.state || row.Epoch != tc.epoch {
			t.Fatalf("%s: row %+v, want %s epoch %d", tc.name, row, tc.state, tc.epoch)
		}
		tab = n
	}
	var se *StaleEpochError
	if _, err := tab.Apply(99, Command{Op: OpRestore, Region: topology.AU, Epoch: 1}); !errors.As(err, &se) || se.Current != 4 {
		t.Fatalf("StaleEpochError not returned: %v", err)
	}
	// The last active region cannot be failed or drained.
	tab = NewTable([]topology.RegionID{topology.JP, topology.US})
	tab, _ = tab.Apply(1, Command{Op: OpFail, Region: topology.JP})
	if _, err := tab.Apply(2, Command{Op: OpFail, Region: topology.US}); !errors.Is(err, ErrLastActive) {
		t.Fatalf("failed the last active region: %v", err)
	}
	if _, err := tab.Apply(2, Command{Op: OpDrain, Region: topology.US}); !errors.Is(err, ErrLastActive) {
		t.Fatalf("drained the last active region: %v", err)
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	f := newFSM(regions4, nil)
	ch, cancel := f.subscribe()
	defer cancel()
	<-ch // the current table
	cmds := []Command{
		{Op: OpFail, Region: topology.DE, FailoverTo: []topology.RegionID{topology.US, topology.JP}, Reason: "test", Origin: OriginPolicy},
		{Op: OpDrain, Region: topology.AU, Origin: OriginOperator},
		{Op: OpSetRTT, RTT: []RTTEntry{{A: topology.DE, B: topology.US, Micros: 100000}}},
		{Op: OpFail, Region: topology.DE}, // stale: rejected
	}
	for i, c := range cmds {
		b, _ := c.Encode()
		res := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: b}).(applyResult)
		if (i == 3) != (res.err != nil) {
			t.Fatalf("command %d: %v", i, res.err)
		}
	}
	got := <-ch // latest wins: only the last table is waiting
	if got.Index != 4 || got.Regions[topology.DE].State != steering.StateFailed || got.RTTEpoch != 1 {
		t.Fatalf("subscriber got %+v", got)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM(regions4, nil)
	if err := g.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.table(), g.table()) {
		t.Fatalf("restored table differs:\n%+v\n%+v", f.table(), g.table())
	}
	if d, ok := g.table().Matrix().Get(topology.US, topology.DE); !ok || d != 100*time.Millisecond {
		t.Fatalf("RTT matrix lost: %v", g.table().Matrix())
	}
}
